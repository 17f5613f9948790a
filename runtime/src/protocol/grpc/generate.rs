//! Text generation over the Open Inference Protocol's gRPC messages, the way Triton's
//! decoupled generate models do it: one `text_input` BYTES element in, sampling
//! settings in the request `parameters`, one `ModelStreamInferResponse` per text chunk
//! out, the last marked `triton_final_response` with the finish reason and usage.

use std::collections::HashMap;
use std::sync::Arc;

use futures::stream::{self, BoxStream, StreamExt};
use modelplane_generate::engine::{FinishReason, Usage};
use modelplane_generate::sampling::SamplingParams;

use super::pb::infer_parameter::ParameterChoice;
use super::pb::model_infer_response::InferOutputTensor;
use super::pb::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse,
};
use crate::error::InferError;
use crate::model::{TEXT_INPUT, TEXT_OUTPUT};
use crate::serve::{self, Call, Event, GenerateInput};

/// The request parameters a generate model understands.
pub const PARAMETERS: [&str; 7] = [
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "repetition_penalty",
    "stop",
];

/// Parameters under this prefix belong to Triton's client and are ignored.
const TRITON_PREFIX: &str = "triton_";

/// A generation admitted by the engine, with the request id its responses carry.
pub struct Generation {
    generation: serve::Generation,
    id: String,
}

/// Reads the prompt and settings, tokenizes the prompt (on the blocking pool: a
/// prompt may be megabytes) and submits it on the request path.
pub async fn submit(call: Call, request: &ModelInferRequest) -> Result<Generation, InferError> {
    let generation = call
        .generate(async |target| {
            let engine = target.version.engine()?;
            let prompt = text_input(request)?;
            let settings = Settings::from_parameters(&request.parameters)?;
            let codec = Arc::clone(engine.codec());
            let ids = tokio::task::spawn_blocking(move || codec.encode(&prompt, true))
                .await
                .map_err(|err| InferError::Internal(format!("the tokenizer task failed: {err}")))?
                .map_err(|err| InferError::BadField {
                    param: TEXT_INPUT,
                    message: err.to_string(),
                })?;
            Ok(GenerateInput {
                prompt: ids,
                max_tokens: settings.max_tokens,
                sampling: settings.sampling,
                stop: settings.stop,
                prompt_field: TEXT_INPUT,
            })
        })
        .await?;
    Ok(Generation {
        generation,
        id: request.id.clone(),
    })
}

impl Generation {
    /// One response per text chunk, then a final one with the finish reason and
    /// usage (or the error). Dropping the stream cancels the generation.
    pub fn into_responses(self) -> BoxStream<'static, ModelStreamInferResponse> {
        stream::unfold(Some(self), |state| async move {
            let mut generation = state?;
            let response = match generation.generation.next().await? {
                Event::Text(text) => return Some((generation.chunk(text), Some(generation))),
                Event::Finished { reason, usage } => generation.finished(reason, usage),
                Event::Failed(err) => final_error(&generation.id, &err),
            };
            Some((response, None))
        })
        .boxed()
    }

    /// Waits for the whole text: the unary `ModelInfer` answer.
    pub async fn collect(self) -> Result<ModelInferResponse, InferError> {
        let id = self.id;
        let target = self.generation.target().clone();
        let done = self.generation.collect().await?;
        let mut response = response(&target.version.model, &target.version.label, &id, done.text);
        add_finish(&mut response, done.reason, done.usage);
        Ok(response)
    }

    fn chunk(&self, text: String) -> ModelStreamInferResponse {
        let version = &self.generation.target().version;
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response(&version.model, &version.label, &self.id, text)),
        }
    }

    fn finished(&self, reason: FinishReason, usage: Usage) -> ModelStreamInferResponse {
        let version = &self.generation.target().version;
        let mut response = response(&version.model, &version.label, &self.id, String::new());
        add_finish(&mut response, reason, usage);
        response.parameters.insert(FINAL.to_owned(), boolean(true));
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response),
        }
    }
}

fn response(model: &str, version: &str, id: &str, text: String) -> ModelInferResponse {
    ModelInferResponse {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        id: id.to_owned(),
        outputs: vec![InferOutputTensor {
            name: TEXT_OUTPUT.to_owned(),
            datatype: "BYTES".to_owned(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![text.into_bytes().into()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Triton's marker of the last response of a decoupled request.
pub const FINAL: &str = "triton_final_response";

/// The last (and only) response of a request that failed.
pub fn final_error(id: &str, err: &InferError) -> ModelStreamInferResponse {
    let mut response = ModelInferResponse {
        id: id.to_owned(),
        ..Default::default()
    };
    response.parameters.insert(FINAL.to_owned(), boolean(true));
    ModelStreamInferResponse {
        error_message: err.to_string(),
        infer_response: Some(response),
    }
}

fn add_finish(response: &mut ModelInferResponse, reason: FinishReason, usage: Usage) {
    let p = &mut response.parameters;
    p.insert(
        "finish_reason".to_owned(),
        param(ParameterChoice::StringParam(reason.as_str().to_owned())),
    );
    p.insert(
        "prompt_tokens".to_owned(),
        param(ParameterChoice::Int64Param(usage.prompt_tokens.into())),
    );
    p.insert(
        "completion_tokens".to_owned(),
        param(ParameterChoice::Int64Param(usage.completion_tokens.into())),
    );
}

fn param(choice: ParameterChoice) -> InferParameter {
    InferParameter {
        parameter_choice: Some(choice),
    }
}

fn boolean(value: bool) -> InferParameter {
    param(ParameterChoice::BoolParam(value))
}

/// The prompt: the one element of the `text_input` BYTES input, typed or raw
/// (Triton's layout: a 4-byte little-endian length, then the bytes).
fn text_input(request: &ModelInferRequest) -> Result<String, InferError> {
    let bad = |message: String| InferError::BadField {
        param: TEXT_INPUT,
        message,
    };
    let [input] = request.inputs.as_slice() else {
        return Err(bad(format!(
            "a generate model takes exactly one input, {TEXT_INPUT:?} (BYTES, shape [1]); got {}",
            request.inputs.len()
        )));
    };
    if input.name != TEXT_INPUT || input.datatype != "BYTES" || input.shape != [1] {
        return Err(bad(format!(
            "a generate model takes input {TEXT_INPUT:?} BYTES shape [1], not {:?} {} {:?}",
            input.name, input.datatype, input.shape
        )));
    }
    let bytes = match (request.raw_input_contents.first(), &input.contents) {
        (Some(raw), _) => raw_bytes_element(raw).map_err(bad)?,
        (None, Some(contents)) if contents.bytes_contents.len() == 1 => {
            contents.bytes_contents[0].to_vec()
        }
        _ => {
            return Err(bad(format!(
                "input {TEXT_INPUT:?} needs one element in contents.bytes_contents or raw_input_contents"
            )));
        }
    };
    String::from_utf8(bytes).map_err(|_| bad(format!("input {TEXT_INPUT:?} is not UTF-8 text")))
}

fn raw_bytes_element(raw: &[u8]) -> Result<Vec<u8>, String> {
    let (length, rest) = raw
        .split_first_chunk::<4>()
        .ok_or("raw BYTES contents shorter than their 4-byte length prefix")?;
    let length = u32::from_le_bytes(*length) as usize;
    if rest.len() != length {
        return Err(format!(
            "raw BYTES contents hold {} bytes after a length prefix of {length}: send one element",
            rest.len()
        ));
    }
    Ok(rest.to_vec())
}

/// Generation settings read from a request's parameters.
#[derive(Debug, PartialEq)]
pub struct Settings {
    /// Tokens to generate at most; `None`: [`crate::limits::DEFAULT_MAX_TOKENS`].
    pub max_tokens: Option<u32>,
    /// How to pick tokens.
    pub sampling: SamplingParams,
    /// Stop sequences.
    pub stop: Vec<String>,
}

impl Settings {
    /// Reads and validates the parameters; unknown names are refused, except Triton's
    /// own `triton_*` ones (its clients send `triton_enable_empty_final_response`).
    pub fn from_parameters(params: &HashMap<String, InferParameter>) -> Result<Self, InferError> {
        let mut settings = Self {
            max_tokens: None,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
        };
        for (name, value) in params {
            let value = value.parameter_choice.as_ref();
            let s = &mut settings;
            match name.as_str() {
                "max_tokens" => s.max_tokens = Some(positive_u32(name, value)?),
                "temperature" => s.sampling.temperature = number(name, value)? as f32,
                "top_p" => s.sampling.top_p = number(name, value)? as f32,
                "repetition_penalty" => s.sampling.repetition_penalty = number(name, value)? as f32,
                "top_k" => s.sampling.top_k = Some(non_negative(name, value)?),
                "seed" => s.sampling.seed = Some(seed(name, value)?),
                "stop" => s.stop = vec![string(name, value)?],
                _ if name.starts_with(TRITON_PREFIX) => {}
                _ => {
                    return Err(InferError::InvalidParameter {
                        param: name.clone(),
                        message: format!("unknown parameter; known: {}", PARAMETERS.join(", ")),
                    });
                }
            }
        }
        settings.sampling.validate()?;
        Ok(settings)
    }
}

fn invalid(name: &str, message: &str) -> InferError {
    InferError::InvalidParameter {
        param: name.to_owned(),
        message: message.to_owned(),
    }
}

fn number(name: &str, value: Option<&ParameterChoice>) -> Result<f64, InferError> {
    let number = match value {
        Some(ParameterChoice::DoubleParam(v)) => *v,
        Some(ParameterChoice::Int64Param(v)) => *v as f64,
        Some(ParameterChoice::Uint64Param(v)) => *v as f64,
        _ => return Err(invalid(name, "must be a number (double_param)")),
    };
    if number.is_finite() {
        Ok(number)
    } else {
        Err(invalid(name, "must be a finite number"))
    }
}

fn integer(name: &str, value: Option<&ParameterChoice>) -> Result<i128, InferError> {
    match value {
        Some(ParameterChoice::Int64Param(v)) => Ok(i128::from(*v)),
        Some(ParameterChoice::Uint64Param(v)) => Ok(i128::from(*v)),
        _ => Err(invalid(name, "must be an integer (int64_param)")),
    }
}

fn positive_u32(name: &str, value: Option<&ParameterChoice>) -> Result<u32, InferError> {
    match u32::try_from(integer(name, value)?) {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(invalid(name, "must be an integer of at least 1")),
    }
}

fn non_negative(name: &str, value: Option<&ParameterChoice>) -> Result<u32, InferError> {
    u32::try_from(integer(name, value)?).map_err(|_| invalid(name, "must be an integer ≥ 1"))
}

fn seed(name: &str, value: Option<&ParameterChoice>) -> Result<u64, InferError> {
    u64::try_from(integer(name, value)?).map_err(|_| invalid(name, "must be an integer ≥ 0"))
}

fn string(name: &str, value: Option<&ParameterChoice>) -> Result<String, InferError> {
    match value {
        Some(ParameterChoice::StringParam(s)) if !s.is_empty() => Ok(s.clone()),
        _ => Err(invalid(name, "must be a non-empty string (string_param)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::grpc::pb::model_infer_request::InferInputTensor;

    fn params(entries: &[(&str, ParameterChoice)]) -> HashMap<String, InferParameter> {
        entries
            .iter()
            .map(|(name, choice)| ((*name).to_owned(), param(choice.clone())))
            .collect()
    }

    #[test]
    fn sampling_parameters_are_read_with_their_types() {
        let settings = Settings::from_parameters(&params(&[
            ("max_tokens", ParameterChoice::Int64Param(5)),
            ("temperature", ParameterChoice::DoubleParam(0.5)),
            ("top_k", ParameterChoice::Uint64Param(40)),
            ("seed", ParameterChoice::Int64Param(7)),
            ("stop", ParameterChoice::StringParam("\n".into())),
            (
                "triton_enable_empty_final_response",
                ParameterChoice::BoolParam(true),
            ),
        ]))
        .expect("valid");
        assert_eq!(settings.max_tokens, Some(5));
        assert_eq!(settings.sampling.temperature, 0.5);
        assert_eq!(settings.sampling.top_k, Some(40));
        assert_eq!(settings.sampling.seed, Some(7));
        assert_eq!(settings.stop, vec!["\n".to_owned()]);
    }

    #[test]
    fn invalid_parameters_name_the_parameter() {
        for (name, choice) in [
            ("max_tokens", ParameterChoice::Int64Param(0)),
            ("max_tokens", ParameterChoice::StringParam("5".into())),
            ("temperature", ParameterChoice::DoubleParam(-1.0)),
            ("top_p", ParameterChoice::DoubleParam(1.5)),
            ("top_k", ParameterChoice::Int64Param(-1)),
            ("stop", ParameterChoice::StringParam(String::new())),
            ("temprature", ParameterChoice::DoubleParam(0.0)),
        ] {
            let err =
                Settings::from_parameters(&params(&[(name, choice)])).expect_err("must be refused");
            let InferError::InvalidParameter { param, .. } = &err else {
                panic!("{name}: {err:?}");
            };
            assert_eq!(param, name);
            assert_eq!(super::super::grpc_code(&err), tonic::Code::InvalidArgument);
        }
    }

    fn text_request(contents: Option<Vec<&str>>, raw: Vec<Vec<u8>>) -> ModelInferRequest {
        ModelInferRequest {
            inputs: vec![InferInputTensor {
                name: TEXT_INPUT.into(),
                datatype: "BYTES".into(),
                shape: vec![1],
                contents: contents.map(|texts| InferTensorContents {
                    bytes_contents: texts
                        .into_iter()
                        .map(|t| t.as_bytes().to_vec().into())
                        .collect(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            raw_input_contents: raw.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn the_prompt_comes_typed_or_raw() {
        let typed = text_request(Some(vec!["Hello"]), Vec::new());
        assert_eq!(text_input(&typed).expect("typed"), "Hello");
        let mut raw = 2u32.to_le_bytes().to_vec();
        raw.extend(b"Hi");
        assert_eq!(
            text_input(&text_request(None, vec![raw])).expect("raw"),
            "Hi"
        );
        let two = text_request(Some(vec!["a", "b"]), Vec::new());
        assert!(matches!(text_input(&two), Err(InferError::BadField { .. })));
        let short = text_request(None, vec![vec![9, 0, 0, 0, b'x']]);
        assert!(matches!(
            text_input(&short),
            Err(InferError::BadField { .. })
        ));
    }
}
