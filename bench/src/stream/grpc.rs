//! gRPC streaming generation: one `ModelStreamInfer` call per request, with a
//! `text_input` BYTES tensor and the sampling settings as request parameters;
//! the server answers with one `ModelStreamInferResponse` per text chunk
//! (output `text_output`) and marks the last with `triton_final_response`,
//! carrying `prompt_tokens` and `completion_tokens`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tonic::transport::Channel;

use crate::proto::grpc_inference_service_client::GrpcInferenceServiceClient;
use crate::proto::infer_parameter::ParameterChoice;
use crate::proto::model_infer_request::InferInputTensor;
use crate::proto::{
    InferParameter, InferTensorContents, ModelInferRequest, ModelInferResponse,
    ModelStreamInferResponse,
};
use crate::stream::prompts::Prompts;
use crate::stream::trace::{Piece, Trace, Usage};
use crate::stream::{Generation, StreamSample};

/// Name of the prompt input.
pub const TEXT_INPUT: &str = "text_input";
/// Name of the generated-text output.
pub const TEXT_OUTPUT: &str = "text_output";
/// Response parameter that marks a request's last response.
pub const FINAL: &str = "triton_final_response";

fn int64(value: i64) -> InferParameter {
    InferParameter {
        parameter_choice: Some(ParameterChoice::Int64Param(value)),
    }
}

/// The request for one prompt. The temperature travels only when it is not
/// greedy (the server's default).
pub fn request(
    model: &str,
    version: &str,
    prompt: &str,
    generation: &Generation,
) -> ModelInferRequest {
    let mut parameters = HashMap::from([(
        "max_tokens".to_owned(),
        int64(i64::from(generation.max_tokens)),
    )]);
    if generation.temperature != 0.0 {
        parameters.insert(
            "temperature".into(),
            InferParameter {
                parameter_choice: Some(ParameterChoice::DoubleParam(f64::from(
                    generation.temperature,
                ))),
            },
        );
    }
    ModelInferRequest {
        model_name: model.to_owned(),
        model_version: version.to_owned(),
        parameters,
        inputs: vec![InferInputTensor {
            name: TEXT_INPUT.into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![prompt.as_bytes().to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// The piece one response carries, or the in-band error it reports.
pub fn parse_response(message: &ModelStreamInferResponse) -> Result<Piece, String> {
    if !message.error_message.is_empty() {
        return Err(message.error_message.clone());
    }
    let Some(response) = &message.infer_response else {
        return Ok(Piece::default());
    };
    let int = |name: &str| match response.parameters.get(name)?.parameter_choice {
        Some(ParameterChoice::Int64Param(v)) => u64::try_from(v).ok(),
        _ => None,
    };
    let usage = match (int("prompt_tokens"), int("completion_tokens")) {
        (Some(prompt_tokens), Some(completion_tokens)) => Some(Usage {
            prompt_tokens,
            completion_tokens,
        }),
        _ => None,
    };
    let last = matches!(
        response
            .parameters
            .get(FINAL)
            .and_then(|p| p.parameter_choice.as_ref()),
        Some(ParameterChoice::BoolParam(true))
    );
    Ok(Piece {
        text: text_output(response)?,
        usage,
        last,
    })
}

/// The `text_output` elements, joined: from typed contents, or from the raw
/// buffer (BYTES elements each prefixed with a little-endian u32 length).
fn text_output(response: &ModelInferResponse) -> Result<String, String> {
    let Some(index) = response.outputs.iter().position(|o| o.name == TEXT_OUTPUT) else {
        return Ok(String::new());
    };
    let mut bytes = Vec::new();
    if let Some(contents) = &response.outputs[index].contents {
        contents
            .bytes_contents
            .iter()
            .for_each(|b| bytes.extend_from_slice(b));
    }
    if let Some(mut raw) = response.raw_output_contents.get(index).map(Vec::as_slice) {
        while !raw.is_empty() {
            let (len, rest) = raw.split_first_chunk::<4>().ok_or("bad raw BYTES length")?;
            let len = u32::from_le_bytes(*len) as usize;
            let element = rest.get(..len).ok_or("raw BYTES element past the end")?;
            bytes.extend_from_slice(element);
            raw = &rest[len..];
        }
    }
    String::from_utf8(bytes).map_err(|_| "text_output is not UTF-8".to_owned())
}

/// Sends one prompt per `ModelStreamInfer` call over a shared channel.
#[derive(Debug, Clone)]
pub struct GrpcStreamProbe {
    client: GrpcInferenceServiceClient<Channel>,
    requests: Arc<[ModelInferRequest]>,
    prompts: Prompts,
    timeout: Duration,
}

impl GrpcStreamProbe {
    /// Prepares one request per prompt on a connected channel.
    pub fn new(
        client: GrpcInferenceServiceClient<Channel>,
        model: &str,
        version: &str,
        generation: &Generation,
        timeout: Duration,
    ) -> Self {
        let requests = generation
            .prompts
            .all()
            .iter()
            .map(|p| request(model, version, p, generation))
            .collect();
        Self {
            client,
            requests,
            prompts: generation.prompts.clone(),
            timeout,
        }
    }

    /// One request, from the call to its last response; failures are labelled
    /// `grpc:<Code>`, `stream-error` (an in-band error), `timeout`.
    pub async fn send(&mut self, issued: Instant) -> StreamSample {
        let request = self.requests[self.prompts.take()].clone();
        match tokio::time::timeout(self.timeout, self.exchange(request, issued)).await {
            Ok(sample) => sample,
            Err(_) => Err("timeout".into()),
        }
    }

    async fn exchange(&mut self, request: ModelInferRequest, issued: Instant) -> StreamSample {
        let status = |s: tonic::Status| format!("grpc:{:?}", s.code());
        let outbound = tokio_stream::once(request);
        let mut responses = self
            .client
            .model_stream_infer(outbound)
            .await
            .map_err(status)?
            .into_inner();
        let mut trace = Trace::new(issued.into_std());
        while let Some(message) = responses.message().await.map_err(status)? {
            let piece = parse_response(&message).map_err(|_| "stream-error".to_owned())?;
            trace.piece(&piece, std::time::Instant::now());
            if piece.last {
                break;
            }
        }
        Ok(trace.finish(std::time::Instant::now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::model_infer_response::InferOutputTensor;

    fn generation(temperature: f32) -> Generation {
        Generation {
            prompts: Prompts::builtin(),
            max_tokens: 16,
            temperature,
        }
    }

    fn response(parameters: Vec<(&str, ParameterChoice)>) -> ModelInferResponse {
        ModelInferResponse {
            parameters: parameters
                .into_iter()
                .map(|(k, v)| {
                    (
                        k.to_owned(),
                        InferParameter {
                            parameter_choice: Some(v),
                        },
                    )
                })
                .collect(),
            ..Default::default()
        }
    }

    fn wrap(infer_response: ModelInferResponse) -> ModelStreamInferResponse {
        ModelStreamInferResponse {
            error_message: String::new(),
            infer_response: Some(infer_response),
        }
    }

    #[test]
    fn the_request_carries_the_prompt_as_bytes_and_max_tokens() {
        let r = request("smollm2", "", "Hi there", &generation(0.0));
        assert_eq!(r.inputs[0].name, "text_input");
        assert_eq!(r.inputs[0].datatype, "BYTES");
        assert_eq!(r.inputs[0].shape, vec![1]);
        let contents = r.inputs[0].contents.as_ref().unwrap();
        assert_eq!(contents.bytes_contents, vec![b"Hi there".to_vec()]);
        assert_eq!(
            r.parameters["max_tokens"].parameter_choice,
            Some(ParameterChoice::Int64Param(16))
        );
        assert!(
            !r.parameters.contains_key("temperature"),
            "greedy is the default"
        );
        let hot = request("m", "", "x", &generation(0.7));
        assert_eq!(
            hot.parameters["temperature"].parameter_choice,
            Some(ParameterChoice::DoubleParam(f64::from(0.7f32)))
        );
    }

    #[test]
    fn text_comes_from_typed_or_raw_bytes_contents() {
        let mut typed = response(vec![]);
        typed.outputs = vec![InferOutputTensor {
            name: TEXT_OUTPUT.into(),
            datatype: "BYTES".into(),
            shape: vec![1],
            contents: Some(InferTensorContents {
                bytes_contents: vec![b"Paris".to_vec()],
                ..Default::default()
            }),
            ..Default::default()
        }];
        assert_eq!(parse_response(&wrap(typed.clone())).unwrap().text, "Paris");

        let mut raw = typed;
        raw.outputs[0].contents = None;
        raw.raw_output_contents =
            vec![[&3u32.to_le_bytes()[..], b"Par", &2u32.to_le_bytes(), b"is"].concat()];
        assert_eq!(parse_response(&wrap(raw.clone())).unwrap().text, "Paris");

        raw.raw_output_contents[0].truncate(5);
        assert!(parse_response(&wrap(raw)).is_err());
    }

    #[test]
    fn the_final_response_carries_usage_and_the_last_mark() {
        let last = response(vec![
            (FINAL, ParameterChoice::BoolParam(true)),
            ("prompt_tokens", ParameterChoice::Int64Param(12)),
            ("completion_tokens", ParameterChoice::Int64Param(30)),
        ]);
        let piece = parse_response(&wrap(last)).unwrap();
        assert!(piece.last);
        assert!(piece.text.is_empty());
        assert_eq!(
            piece.usage,
            Some(Usage {
                prompt_tokens: 12,
                completion_tokens: 30
            })
        );
        let middle = parse_response(&wrap(response(vec![]))).unwrap();
        assert_eq!((middle.last, middle.usage), (false, None));
    }

    #[test]
    fn an_in_band_error_fails_the_request() {
        let message = ModelStreamInferResponse {
            error_message: "prompt too long".into(),
            infer_response: None,
        };
        assert_eq!(parse_response(&message), Err("prompt too long".into()));
    }
}
