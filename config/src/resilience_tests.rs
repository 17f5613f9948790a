use crate::{ConfigError, FallbackHop, FixedValue, RuntimeConfig};

/// A config of a tensor model `m` (with `extra` under it), a tensor model `small` and
/// a generate model `chat` (with `chat_extra` under it).
fn config(extra: &str, chat_extra: &str) -> Result<RuntimeConfig, ConfigError> {
    RuntimeConfig::from_yaml(&format!(
        "
models:
  - name: m
    versions: [{{version: '1', source: {{path: /m.pt}}}}]
    {extra}
  - name: small
    versions: [{{version: '1', source: {{path: /small.pt}}}}]
  - name: chat
    task: generate
    versions: [{{version: '1', source: {{path: /chat}}}}]
    {chat_extra}
"
    ))
}

fn refusal(extra: &str, chat_extra: &str) -> String {
    match config(extra, chat_extra) {
        Ok(_) => panic!("accepted: {extra} {chat_extra}"),
        Err(err) => err.to_string(),
    }
}

#[test]
fn a_chain_parses_in_order_and_turns_on_the_default_breaker() {
    let config = config(
        "fallback:
      - model: small
      - grpc: {address: 'http://other.ns.svc:8081', model: m, timeout: 2s}
      - response: {outputs: [{name: y, datatype: FP32, shape: [2], data: [0.5, 1]}]}",
        "",
    )
    .expect("valid");
    let m = &config.models[0];
    let labels: Vec<String> = m.fallback.iter().map(FallbackHop::label).collect();
    assert_eq!(labels, ["model:small", "grpc:m", "response"]);
    let breaker = m.breaker().expect("a fallback turns the breaker on");
    assert_eq!(breaker.error_percent, 50);
    assert_eq!(breaker.probes, 3);
    assert!(
        config.models[1].breaker().is_none(),
        "no breaker unless asked"
    );
    let FallbackHop::Response(fixed) = &m.fallback[2] else {
        panic!("last hop is the response")
    };
    let (datatype, bytes) = fixed.outputs[0].to_bytes().expect("encodes");
    assert_eq!(datatype.to_string(), "FP32");
    assert_eq!(bytes, [0.5f32.to_le_bytes(), 1f32.to_le_bytes()].concat());
    let text = config.to_yaml().expect("renders");
    assert_eq!(
        RuntimeConfig::from_yaml(&text).expect("parses back"),
        config
    );
}

#[test]
fn breaker_thresholds_are_checked_by_field() {
    for (breaker, expected) in [
        (
            "{errorPercent: 0}",
            "models[m].breaker.errorPercent: 0 is not a percentage",
        ),
        (
            "{minErrorPercent: 101}",
            "models[m].breaker.minErrorPercent: 101",
        ),
        (
            "{probes: 0}",
            "models[m].breaker.probes: must be greater than zero",
        ),
        (
            "{window: 0s}",
            "models[m].breaker.window: must be greater than zero",
        ),
        (
            "{openFor: 1m, maxOpenFor: 30s}",
            "models[m].breaker.maxOpenFor: 30s is shorter",
        ),
    ] {
        let message = refusal(&format!("breaker: {breaker}"), "");
        assert!(message.contains(expected), "{breaker}: {message}");
    }
    let explicit = config("breaker: {errorPercent: 20, baselineFactor: 0}", "").expect("valid");
    assert_eq!(
        explicit.models[0].breaker().map(|b| b.error_percent),
        Some(20)
    );
}

#[test]
fn hops_that_cannot_stand_in_are_refused_with_the_hop_named() {
    for (extra, chat, expected) in [
        (
            "fallback: [{model: m}]",
            "",
            "fallback[0].model: a model cannot fall back to itself",
        ),
        (
            "fallback: [{model: nope}]",
            "",
            "fallback[0].model: \"nope\" is not a model",
        ),
        (
            "fallback: [{model: chat}]",
            "",
            "fallback[0].model: \"chat\" serves task Generate",
        ),
        (
            "fallback: [{grpc: {address: 'other:8081', model: m}}]",
            "",
            "fallback[0].grpc.address: \"other:8081\" is not http(s)",
        ),
        (
            "",
            "fallback: [{grpc: {address: 'http://o:1', model: chat}}]",
            "models[chat].fallback[0].grpc: a generate model falls back",
        ),
        (
            "fallback: [{response: {text: hi}}]",
            "",
            "fallback[0].response.outputs: a tensor model's fixed response",
        ),
        (
            "",
            "fallback: [{response: {outputs: [{name: y, datatype: FP32, shape: [1], data: [1]}]}}]",
            "models[chat].fallback[0].response.text",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: FP32, shape: [3], data: [1]}]}}]",
            "",
            "fallback[0].response.outputs[0]: shape [3] holds 3 elements, data has 1",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: INT8, shape: [1], data: [300]}]}}]",
            "",
            "data[0]: 300 is out of range of INT8",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: INT32, shape: [1], data: [1.5]}]}}]",
            "",
            "data[0]: 1.5 is not a whole number for INT32",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: FLOAT, shape: [1], data: [1]}]}}]",
            "",
            "datatype \"FLOAT\" is not an OIP datatype",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: BOOL, shape: [1], data: [1]}]}}]",
            "",
            "data[0]: BOOL takes no number in a fixed response",
        ),
        (
            "fallback: [{response: {outputs: [{name: y, datatype: FP32, shape: [1], data: [1]}]}}, {model: small}]",
            "",
            "fallback[0].response: a fixed response always answers: it must be the last hop",
        ),
    ] {
        let message = refusal(extra, chat);
        assert!(message.contains(expected), "{extra}{chat}: {message}");
    }
}

#[test]
fn a_fixed_response_encodes_every_element_kind() {
    let config = config(
        "fallback:
      - response:
          outputs:
          - {name: label, datatype: BYTES, shape: [2], data: [cat, '']}
          - {name: ok, datatype: BOOL, shape: [1], data: [true]}
          - {name: id, datatype: INT64, shape: [1], data: [-7]}",
        "fallback: [{response: {text: 'The assistant is busy; try again soon.'}}]",
    )
    .expect("valid");
    let FallbackHop::Response(fixed) = &config.models[0].fallback[0] else {
        panic!("a response")
    };
    let bytes: Vec<Vec<u8>> = fixed
        .outputs
        .iter()
        .map(|t| t.to_bytes().expect("encodes").1)
        .collect();
    assert_eq!(
        bytes[0],
        [&3u32.to_le_bytes()[..], b"cat", &0u32.to_le_bytes()].concat()
    );
    assert_eq!(bytes[1], [1]);
    assert_eq!(bytes[2], (-7i64).to_le_bytes());
    assert_eq!(fixed.outputs[1].data, [FixedValue::Bool(true)]);
}

#[test]
fn adaptive_limits_are_checked_against_max_in_flight() {
    let ok = config(
        "limits: {maxInFlight: 64, adaptive: {maxLimit: 32, window: 250ms}}",
        "",
    )
    .expect("valid");
    let adaptive = ok.models[0].limits.adaptive.as_ref().expect("adaptive");
    assert_eq!((adaptive.max_limit, adaptive.initial_limit), (Some(32), 16));
    for (limits, expected) in [
        (
            "{maxInFlight: 8, adaptive: {maxLimit: 9}}",
            "models[m].limits.adaptive.maxLimit: 9 is above limits.maxInFlight 8",
        ),
        (
            "{adaptive: {minLimit: 0}}",
            "limits.adaptive.minLimit: must be greater than zero",
        ),
        (
            "{maxInFlight: 4, adaptive: {minLimit: 5}}",
            "limits.adaptive.minLimit: 5 is above the maximum 4",
        ),
        (
            "{adaptive: {maxChangePercent: 0}}",
            "limits.adaptive.maxChangePercent: 0 is not a percentage",
        ),
        (
            "{adaptive: {window: 0s}}",
            "limits.adaptive.window: must be greater than zero",
        ),
    ] {
        let message = refusal(&format!("limits: {limits}"), "");
        assert!(message.contains(expected), "{limits}: {message}");
    }
}
