//! Text generation over the Open Inference Protocol's gRPC messages, the way Triton's
//! decoupled generate models do it: one `text_input` BYTES element in, sampling
//! settings in the request `parameters`, one `ModelStreamInferResponse` per text chunk
//! out, the last marked `triton_final_response` with the finish reason and usage.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, BoxStream, StreamExt};
use modelplane_generate::engine::{
    EngineError, FinishReason, GenerateRequest, GenerationStream, StreamEvent, Usage,
};
use modelplane_generate::sampling::SamplingParams;

use super::pb::infer_parameter::ParameterChoice;
use super::pb::model_infer_response::InferOutputTensor;
use super::pb::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse,
};
use crate::catalog::Version;
use crate::error::InferError;
use crate::model::{TEXT_INPUT, TEXT_OUTPUT};

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

/// A generation admitted by the engine, with what its responses need.
pub struct Generation {
    version: Arc<Version>,
    id: String,
    started: Instant,
    events: GenerationStream,
}

/// Parses the request, tokenizes its prompt (on the blocking pool: a prompt may be
/// megabytes) and submits it to the version's engine; a refusal is counted in the
/// version's request metrics.
pub async fn submit(
    version: Arc<Version>,
    request: &ModelInferRequest,
    deadline: Instant,
) -> Result<Generation, InferError> {
    let started = Instant::now();
    match admit(&version, request, deadline).await {
        Ok(events) => Ok(Generation {
            version,
            id: request.id.clone(),
            started,
            events,
        }),
        Err(err) => {
            version.record(started, &Err::<(), _>(err.clone()));
            Err(err)
        }
    }
}

async fn admit(
    version: &Version,
    request: &ModelInferRequest,
    deadline: Instant,
) -> Result<GenerationStream, InferError> {
    let engine = version.engine()?;
    let prompt = text_input(request)?;
    let settings = Settings::from_parameters(&request.parameters)?;
    let codec = Arc::clone(engine.codec());
    let ids = tokio::task::spawn_blocking(move || codec.encode(&prompt, true))
        .await
        .map_err(|err| InferError::Internal(format!("the tokenizer task failed: {err}")))?
        .map_err(|err| InferError::BadRequest(err.to_string()))?;
    let max_tokens =
        crate::limits::max_tokens(settings.max_tokens, ids.len(), engine.shape().context)
            .map_err(|err| InferError::BadRequest(err.to_string()))?;
    let request_out = GenerateRequest {
        max_tokens,
        prompt: ids,
        sampling: settings.sampling,
        stop: settings.stop,
        deadline: Some(deadline),
    };
    Ok(engine.submit(request_out)?)
}

impl Generation {
    /// One response per text chunk, then a final one with the finish reason and
    /// usage (or the error). Dropping the stream cancels the generation.
    pub fn into_responses(self) -> BoxStream<'static, ModelStreamInferResponse> {
        stream::unfold(Some(self), |state| async move {
            let mut generation = state?;
            loop {
                let event = generation.events.next().await;
                let (response, last) = match event {
                    Some(StreamEvent::Delta { text, .. }) if text.is_empty() => continue,
                    Some(StreamEvent::Delta { text, .. }) => (generation.chunk(text), false),
                    Some(StreamEvent::Finished { reason, usage }) => {
                        generation.record(Ok(()));
                        (generation.finished(String::new(), reason, usage), true)
                    }
                    Some(StreamEvent::Failed(err)) => (generation.failed(engine_error(err)), true),
                    None => (generation.failed(stopped()), true),
                };
                return Some((response, (!last).then_some(generation)));
            }
        })
        .boxed()
    }

    /// Waits for the whole text: the unary `ModelInfer` answer.
    pub async fn collect(mut self) -> Result<ModelInferResponse, InferError> {
        let mut text = String::new();
        let outcome = loop {
            match self.events.next().await {
                Some(StreamEvent::Delta { text: chunk, .. }) => text.push_str(&chunk),
                Some(StreamEvent::Finished { reason, usage }) => break Ok((reason, usage)),
                Some(StreamEvent::Failed(err)) => break Err(engine_error(err)),
                None => break Err(stopped()),
            }
        };
        let result = outcome.map(|(reason, usage)| {
            let mut response = self.response(text);
            add_finish(&mut response, reason, usage);
            response
        });
        self.record(result.as_ref().map(|_| ()).map_err(Clone::clone));
        result
    }

    fn response(&self, text: String) -> ModelInferResponse {
        ModelInferResponse {
            model_name: self.version.model.clone(),
            model_version: self.version.label.clone(),
            id: self.id.clone(),
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

    fn chunk(&self, text: String) -> ModelStreamInferResponse {
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(self.response(text)),
        }
    }

    fn finished(
        &self,
        text: String,
        reason: FinishReason,
        usage: Usage,
    ) -> ModelStreamInferResponse {
        let mut response = self.response(text);
        add_finish(&mut response, reason, usage);
        response.parameters.insert(FINAL.to_owned(), boolean(true));
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(response),
        }
    }

    fn failed(&self, err: InferError) -> ModelStreamInferResponse {
        self.record(Err(err.clone()));
        final_error(&self.id, &err)
    }

    fn record(&self, result: Result<(), InferError>) {
        self.version.record(self.started, &result);
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

fn engine_error(err: EngineError) -> InferError {
    match err {
        EngineError::DeadlineExceeded => {
            InferError::DeadlineExceeded("deadline exceeded while generating".to_owned())
        }
        EngineError::Step(err) => InferError::Internal(format!("model step failed: {}", err.0)),
    }
}

fn stopped() -> InferError {
    InferError::Internal("the generation engine stopped".to_owned())
}

/// The prompt: the one element of the `text_input` BYTES input, typed or raw
/// (Triton's layout: a 4-byte little-endian length, then the bytes).
fn text_input(request: &ModelInferRequest) -> Result<String, InferError> {
    let bad = |message: String| InferError::BadRequest(message);
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
            assert_eq!(err.grpc_code(), tonic::Code::InvalidArgument);
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
        assert!(matches!(text_input(&two), Err(InferError::BadRequest(_))));
        let short = text_request(None, vec![vec![9, 0, 0, 0, b'x']]);
        assert!(matches!(text_input(&short), Err(InferError::BadRequest(_))));
    }
}
