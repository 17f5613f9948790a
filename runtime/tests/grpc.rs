//! The gRPC protocol end to end with the generated client.

mod common;

use common::*;
use modelplane_runtime::Running;
use modelplane_runtime::protocol::grpc::pb;
use pb::model_infer_request::InferInputTensor;

async fn server() -> (tempfile::TempDir, Running) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 3.0)]);
    let running = start_inline(&affine_config(&path, "batching: {maxBatchSize: 8}")).await;
    (dir, running)
}

fn raw_request(rows: &[[f32; 4]], id: &str) -> pb::ModelInferRequest {
    pb::ModelInferRequest {
        model_name: "affine".into(),
        id: id.into(),
        inputs: vec![InferInputTensor {
            name: "x".into(),
            datatype: "FP32".into(),
            shape: vec![rows.len() as i64, 4],
            ..Default::default()
        }],
        raw_input_contents: vec![
            rows.iter()
                .flatten()
                .flat_map(|v| v.to_le_bytes())
                .collect::<Vec<u8>>()
                .into(),
        ],
        ..Default::default()
    }
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect()
}

#[tokio::test]
async fn health_and_metadata_answer() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    assert!(
        client
            .server_live(pb::ServerLiveRequest {})
            .await
            .expect("live")
            .into_inner()
            .live
    );
    assert!(
        client
            .server_ready(pb::ServerReadyRequest {})
            .await
            .expect("ready")
            .into_inner()
            .ready
    );
    let ready = client
        .model_ready(pb::ModelReadyRequest {
            name: "affine".into(),
            version: "1".into(),
        })
        .await;
    assert!(ready.expect("model ready").into_inner().ready);
    let meta = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "affine".into(),
            version: String::new(),
        })
        .await
        .expect("metadata")
        .into_inner();
    assert_eq!(meta.platform, "pytorch_libtorch");
    assert_eq!(meta.inputs[0].shape, [-1, 4]);
    let missing = client
        .model_metadata(pb::ModelMetadataRequest {
            name: "nope".into(),
            version: String::new(),
        })
        .await;
    assert_eq!(
        missing.expect_err("unknown model").code(),
        tonic::Code::NotFound
    );
    running.shutdown().await;
}

#[tokio::test]
async fn raw_and_typed_inputs_infer() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let rows = [[1.0, 2.0, 3.0, 4.0]];
    let response = client
        .model_infer(raw_request(&rows, "a"))
        .await
        .expect("infer")
        .into_inner();
    assert_eq!(
        (response.id.as_str(), response.model_version.as_str()),
        ("a", "1")
    );
    assert_eq!(
        response
            .outputs
            .iter()
            .map(|o| o.name.as_str())
            .collect::<Vec<_>>(),
        ["y", "s"]
    );
    assert_eq!(f32s(&response.raw_output_contents[0]), affine(&rows, 3.0));

    let mut typed = raw_request(&rows, "b");
    typed.raw_input_contents.clear();
    typed.inputs[0].contents = Some(pb::InferTensorContents {
        fp32_contents: rows[0].to_vec(),
        ..Default::default()
    });
    typed.outputs = vec![pb::model_infer_request::InferRequestedOutputTensor {
        name: "s".into(),
        ..Default::default()
    }];
    let response = client
        .model_infer(typed)
        .await
        .expect("typed infer")
        .into_inner();
    assert_eq!(response.outputs.len(), 1);
    assert_eq!(f32s(&response.raw_output_contents[0]), [10.0]);
    running.shutdown().await;
}

#[tokio::test]
async fn errors_map_to_grpc_codes() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let mut wrong_shape = raw_request(&[[0.0; 4]], "");
    wrong_shape.inputs[0].shape = vec![2, 4];
    let cases = [
        (wrong_shape, tonic::Code::InvalidArgument),
        (
            pb::ModelInferRequest {
                model_name: "nope".into(),
                ..Default::default()
            },
            tonic::Code::NotFound,
        ),
        (
            pb::ModelInferRequest {
                model_version: "7".into(),
                ..raw_request(&[[0.0; 4]], "")
            },
            tonic::Code::NotFound,
        ),
    ];
    for (request, code) in cases {
        assert_eq!(
            client.model_infer(request).await.expect_err("fails").code(),
            code
        );
    }
    running.shutdown().await;
}

#[tokio::test]
async fn stream_answers_each_request_in_order_and_reports_errors_in_band() {
    let (_dir, running) = server().await;
    let mut client = grpc_client(&running).await;
    let mut bad = raw_request(&[[0.0; 4]], "bad");
    bad.inputs[0].datatype = "FP64".into();
    let requests = vec![
        raw_request(&[[1.0; 4]], "0"),
        bad,
        raw_request(&[[2.0; 4]], "2"),
    ];
    let mut responses = client
        .model_stream_infer(futures::stream::iter(requests))
        .await
        .expect("stream")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(message) = responses.message().await.expect("message") {
        let response = message.infer_response.expect("response");
        seen.push((response.id.clone(), message.error_message.is_empty()));
        if message.error_message.is_empty() {
            let expected = if response.id == "0" { 4.0 } else { 7.0 };
            assert_eq!(f32s(&response.raw_output_contents[0])[0], expected);
        } else {
            assert!(
                message.error_message.contains("datatype"),
                "{}",
                message.error_message
            );
        }
    }
    assert_eq!(
        seen,
        [
            ("0".to_owned(), true),
            ("bad".to_owned(), false),
            ("2".to_owned(), true)
        ]
    );
    running.shutdown().await;
}
