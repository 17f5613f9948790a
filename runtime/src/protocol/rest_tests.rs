use super::*;
use crate::model::TensorSpec;

fn signature() -> Signature {
    Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![-1, 2],
        }],
        outputs: vec![
            TensorSpec {
                name: "y".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            },
            TensorSpec {
                name: "z".into(),
                datatype: DataType::Int64,
                shape: vec![-1],
            },
        ],
    }
}

fn limits() -> Limits {
    Limits {
        max_elements: 64,
        ..Limits::default()
    }
}

fn parse(body: &[u8], header: Option<&str>) -> Result<RestRequest, InferError> {
    parse_request(
        &Bytes::copy_from_slice(body),
        header,
        &signature(),
        &limits(),
        true,
    )
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

fn binary_body(values: &[f32], rows: i64) -> (Vec<u8>, String) {
    let json = format!(
        r#"{{"inputs":[{{"name":"x","shape":[{rows},2],"datatype":"FP32","parameters":{{"binary_data_size":{}}}}}]}}"#,
        values.len() * 4
    );
    let mut body = json.clone().into_bytes();
    body.extend(f32_bytes(values));
    (body, json.len().to_string())
}

#[test]
fn json_tensor_request_is_decoded() {
    let body =
        br#"{"id":"r1","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3,4]}]}"#;
    let request = parse(body, None).expect("valid");
    assert_eq!(request.id.as_deref(), Some("r1"));
    assert_eq!(request.rows, 2);
    assert_eq!(
        request.inputs[0].data.as_ref(),
        f32_bytes(&[1.0, 2.0, 3.0, 4.0])
    );
    assert_eq!(request.outputs, OutputSelection::default());
}

#[test]
fn binary_tensor_request_is_sliced_from_the_body() {
    let (body, header) = binary_body(&[1.0, 2.0], 1);
    let request = parse(&body, Some(&header)).expect("valid");
    assert_eq!(request.inputs[0].data.as_ref(), f32_bytes(&[1.0, 2.0]));
}

#[test]
fn truncated_binary_section_is_a_bad_request() {
    let (mut body, header) = binary_body(&[1.0, 2.0], 1);
    body.truncate(body.len() - 3);
    let err = parse(&body, Some(&header)).expect_err("truncated");
    assert!(
        matches!(&err, InferError::BadRequest(m) if m.contains("truncated")),
        "{err:?}"
    );
}

#[test]
fn unclaimed_trailing_bytes_are_a_bad_request() {
    let (mut body, header) = binary_body(&[1.0, 2.0], 1);
    body.extend([0, 0, 0, 0]);
    assert!(
        matches!(parse(&body, Some(&header)), Err(InferError::BadRequest(m)) if m.contains("not claimed"))
    );
}

#[test]
fn header_length_beyond_the_body_is_a_bad_request() {
    let (body, _) = binary_body(&[1.0, 2.0], 1);
    let header = (body.len() + 1).to_string();
    assert!(matches!(
        parse(&body, Some(&header)),
        Err(InferError::BadRequest(_))
    ));
    assert!(matches!(
        parse(&body, Some("abc")),
        Err(InferError::BadRequest(_))
    ));
}

#[test]
fn binary_size_must_match_the_shape() {
    let (body, header) = binary_body(&[1.0, 2.0, 3.0, 4.0], 1);
    assert!(
        matches!(parse(&body, Some(&header)), Err(InferError::BadRequest(m)) if m.contains("binary_data_size"))
    );
}

#[test]
fn malformed_json_is_a_bad_request() {
    for body in [&b"{"[..], b"[]", b"{\"inputs\": 3}", b"\xff\xfe", b""] {
        assert!(
            matches!(parse(body, None), Err(InferError::BadRequest(_))),
            "{body:?}"
        );
    }
}

#[test]
fn wrong_element_count_is_a_bad_request() {
    let body = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[1,2,3]}]}"#;
    assert!(
        matches!(parse(body, None), Err(InferError::BadRequest(m)) if m.contains("3 elements"))
    );
}

#[test]
fn output_selection_honours_binary_flags() {
    let body = br#"{"parameters":{"binary_data_output":true},"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],
        "outputs":[{"name":"z","parameters":{"binary_data":false}},{"name":"y"}]}"#;
    let request = parse(body, None).expect("valid");
    assert!(request.outputs.all_binary);
    assert_eq!(
        request.outputs.requested,
        [("z".to_owned(), false), ("y".to_owned(), true)]
    );
}

#[test]
fn unknown_requested_output_is_a_bad_request() {
    let body = br#"{"inputs":[{"name":"x","shape":[1,2],"datatype":"FP32","data":[1,2]}],"outputs":[{"name":"w"}]}"#;
    assert!(
        matches!(parse(body, None), Err(InferError::BadRequest(m)) if m.contains("unknown output"))
    );
}

fn outputs() -> Vec<TensorData> {
    vec![
        TensorData {
            name: "y".into(),
            datatype: DataType::Fp32,
            shape: vec![1, 2],
            data: f32_bytes(&[0.5, 1.5]).into(),
        },
        TensorData {
            name: "z".into(),
            datatype: DataType::Int64,
            shape: vec![1],
            data: 7i64.to_le_bytes().to_vec().into(),
        },
    ]
}

#[test]
fn json_response_lists_every_output_with_data() {
    let response = encode_response(
        "m",
        "1",
        Some("r1"),
        &outputs(),
        &OutputSelection::default(),
    )
    .expect("encodes");
    assert_eq!(response.header_length, None);
    let value: serde_json::Value = serde_json::from_slice(&response.body).expect("json");
    assert_eq!(
        value,
        serde_json::json!({"model_name":"m","model_version":"1","id":"r1","outputs":[
            {"name":"y","datatype":"FP32","shape":[1,2],"data":[0.5,1.5]},
            {"name":"z","datatype":"INT64","shape":[1],"data":[7]}]})
    );
}

#[test]
fn binary_response_appends_requested_outputs_after_the_json() {
    let selection = OutputSelection {
        requested: vec![("z".into(), true), ("y".into(), false)],
        all_binary: false,
    };
    let response = encode_response("m", "1", None, &outputs(), &selection).expect("encodes");
    let split = response.header_length.expect("binary part");
    let value: serde_json::Value =
        serde_json::from_slice(&response.body[..split]).expect("json header");
    assert_eq!(value["outputs"][0]["parameters"]["binary_data_size"], 8);
    assert_eq!(value["outputs"][0].get("data"), None);
    assert_eq!(value["outputs"][1]["data"], serde_json::json!([0.5, 1.5]));
    assert_eq!(&response.body[split..], 7i64.to_le_bytes());
}

/// A bounded, seeded fuzz loop over the REST parser (the `cargo fuzz` target runs the
/// same entry point unbounded): mutated bodies never panic and only ever produce
/// client errors.
#[test]
fn mutated_bodies_never_panic_and_fail_as_client_errors() {
    let mut rng = fastrand::Rng::with_seed(0x6d6f_6465_6c70);
    let (binary, header) = binary_body(&[1.0, 2.0, 3.0, 4.0], 2);
    let seeds: [(&[u8], Option<&str>); 2] = [
        (br#"{"id":"a","inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]}],"outputs":[{"name":"y"}]}"#, None),
        (&binary, Some(&header)),
    ];
    for _ in 0..10_000 {
        let (seed, header) = seeds[rng.usize(..seeds.len())];
        let mut body = seed.to_vec();
        for _ in 0..rng.usize(1..4) {
            mutate(&mut rng, &mut body);
        }
        let header = header.map(|h| {
            if rng.u8(..8) == 0 {
                rng.usize(..body.len() + 2).to_string()
            } else {
                h.to_owned()
            }
        });
        match parse(&body, header.as_deref()) {
            Ok(request) => assert_eq!(request.inputs.len(), 1),
            Err(InferError::BadRequest(_) | InferError::TooLarge(_)) => {}
            Err(other) => panic!("unexpected error class {other:?} for {body:?}"),
        }
    }
}

fn mutate(rng: &mut fastrand::Rng, body: &mut Vec<u8>) {
    if body.is_empty() {
        body.push(rng.u8(..));
        return;
    }
    let at = rng.usize(..body.len());
    match rng.u8(..4) {
        0 => body[at] = rng.u8(..),
        1 => {
            body.remove(at);
        }
        2 => body.insert(at, b"{}[],:\"0-9e.x"[rng.usize(..13)]),
        _ => body.truncate(at),
    }
}
