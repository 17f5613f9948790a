use super::*;

/// A `/metrics` text as the runtime serves it (prometheus-client's encoder): two
/// versions of `mlp`, two tenants, another model, and series the analysis ignores.
const RUNTIME_TEXT: &str = r#"# HELP modelplane_requests Requests, by outcome.
# TYPE modelplane_requests counter
modelplane_requests_total{model="mlp",version="1",tenant="team-a",outcome="success"} 900
modelplane_requests_total{model="mlp",version="1",tenant="team-b",outcome="success"} 95
modelplane_requests_total{model="mlp",version="1",tenant="team-a",outcome="internal"} 5
modelplane_requests_total{model="mlp",version="2",tenant="team-a",outcome="success"} 48
modelplane_requests_total{model="mlp",version="2",tenant="team-a",outcome="deadline_exceeded"} 2
modelplane_requests_total{model="other",version="1",tenant="team-a",outcome="internal"} 1000
# HELP modelplane_request_duration_seconds Request duration.
# TYPE modelplane_request_duration_seconds histogram
# UNIT modelplane_request_duration_seconds seconds
modelplane_request_duration_seconds_sum{model="mlp",version="1"} 12.5
modelplane_request_duration_seconds_count{model="mlp",version="1"} 1000
modelplane_request_duration_seconds_bucket{le="0.01",model="mlp",version="1"} 600
modelplane_request_duration_seconds_bucket{le="0.1",model="mlp",version="1"} 990
modelplane_request_duration_seconds_bucket{le="+Inf",model="mlp",version="1"} 1000
# HELP modelplane_queue_duration_seconds Queue time.
# TYPE modelplane_queue_duration_seconds histogram
modelplane_queue_duration_seconds_bucket{le="+Inf",model="mlp",version="1"} 1000
# HELP modelplane_generate_empty_outputs Empty outputs.
# TYPE modelplane_generate_empty_outputs counter
modelplane_generate_empty_outputs_total{model="mlp",version="2"} 3
modelplane_generate_requests_total{model="mlp",version="2",outcome="stop"} 40 1733300000000 # {trace_id="abc"} 1.0
process_cpu_seconds_total 1.5e+02
# EOF
"#;

#[test]
fn reads_the_model_series_summed_over_tenants() {
    let snapshot = parse(RUNTIME_TEXT, "mlp").expect("parses");
    assert_eq!(snapshot.versions.len(), 2);
    let stable = snapshot.version("1");
    assert_eq!(stable.requests.get("success"), Some(&995));
    assert_eq!(stable.errors(), 5);
    assert_eq!(stable.judged_requests(), 1000);
    assert_eq!(stable.latency.observations(), 1000);
    assert_eq!(stable.latency.count, 1000);
    assert_eq!(stable.latency.sum, 12.5);
    assert_eq!(
        stable.latency.buckets,
        vec![(0.01, 600), (0.1, 990), (f64::INFINITY, 1000)]
    );
    let candidate = snapshot.version("2");
    assert_eq!(candidate.errors(), 2);
    assert_eq!(candidate.empty_outputs, 3);
    assert_eq!(candidate.generations_finished(), 40);
    assert!(candidate.latency.is_empty());
}

#[test]
fn another_model_is_left_out() {
    let snapshot = parse(RUNTIME_TEXT, "other").expect("parses");
    assert_eq!(snapshot.version("1").errors(), 1000);
    assert!(
        parse(RUNTIME_TEXT, "absent")
            .expect("parses")
            .versions
            .is_empty()
    );
}

#[test]
fn histogram_buckets_of_two_tenants_add_up() {
    let text = "\
modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\",tenant=\"a\",le=\"1\"} 3
modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\",tenant=\"a\",le=\"+Inf\"} 4
modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\",tenant=\"b\",le=\"1\"} 1
modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\",tenant=\"b\",le=\"+Inf\"} 6
";
    let latency = parse(text, "m").expect("parses").version("1").latency;
    assert_eq!(latency.buckets, vec![(1.0, 4), (f64::INFINITY, 10)]);
}

#[test]
fn escaped_label_values_are_read() {
    let text = "modelplane_requests_total{model=\"a\\\"b\\\\c\\nd\",version=\"1\",outcome=\"success\"} 7\n";
    let snapshot = parse(text, "a\"b\\c\nd").expect("parses");
    assert_eq!(snapshot.version("1").judged_requests(), 7);
}

#[test]
fn bad_lines_are_refused_with_their_number() {
    let cases = [
        ("modelplane_requests_total{model=\"m\"", "no , or }"),
        ("modelplane_requests_total{model=\"m", "unterminated"),
        ("modelplane_requests_total{model=m} 1", "not quoted"),
        (
            "modelplane_requests_total{model=\"m\",version=\"1\",outcome=\"success\"} many",
            "not a number",
        ),
        (
            "modelplane_requests_total{model=\"m\",version=\"1\",outcome=\"success\"}1",
            "no space",
        ),
        (
            "modelplane_requests_total{model=\"m\",version=\"1\",outcome=\"success\"} -1",
            "non-negative",
        ),
        (
            "modelplane_requests_total{model=\"m\",outcome=\"success\"} 1",
            "no version",
        ),
        (
            "modelplane_requests_total{model=\"m\",version=\"1\"} 1",
            "no outcome",
        ),
        (
            "modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\",le=\"x\"} 1",
            "le",
        ),
        (
            "modelplane_request_duration_seconds_bucket{model=\"m\",version=\"1\"} 1",
            "without le",
        ),
        ("{model=\"m\"} 1", "not a metric name"),
        ("modelplane_requests_total 1 2 3", "after the timestamp"),
    ];
    for (line, reason) in cases {
        let text = format!("# HELP x y\n{line}\n");
        let error = parse(&text, "m").expect_err(line);
        assert_eq!(error.line, 2, "{line}");
        assert!(error.reason.contains(reason), "{line}: {error}");
        assert!(error.to_string().contains("metrics line 2"), "{error}");
    }
}

#[test]
fn long_lines_are_clipped_in_errors() {
    let line = format!("modelplane_requests_total{{model=\"{}", "x".repeat(500));
    let error = parse(&line, "m").expect_err("unterminated");
    assert!(error.text.chars().count() <= 121, "{}", error.text.len());
}

#[test]
fn windows_line_ends_and_special_values_are_accepted() {
    let text = "modelplane_requests_total{model=\"m\",version=\"1\",outcome=\"success\"} 2\r\n\
                modelplane_request_duration_seconds_sum{model=\"m\",version=\"1\"} NaN\r\n";
    let snapshot = parse(text, "m").expect("parses");
    assert_eq!(snapshot.version("1").judged_requests(), 2);
}

/// Fuzz: any text either parses or fails with a line number inside the text; never panics.
#[test]
fn arbitrary_text_never_panics() {
    let alphabet: Vec<char> = "ab_{}=\",\\ #\n\t0.9e+-Inf:le\u{e9}".chars().collect();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    for _ in 0..20_000 {
        let mut text = String::from("modelplane_requests_total{model=\"m\",");
        let len = (state % 60) as usize;
        for _ in 0..len {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            text.push(alphabet[(state % alphabet.len() as u64) as usize]);
        }
        if let Err(error) = parse(&text, "m") {
            assert!(error.line >= 1 && error.line <= text.split('\n').count());
        }
    }
}

/// `/metrics` of a real modelplane-runtime (`examples/runtime/local.yaml`) after 5
/// successful and 3 malformed MLP requests and one 4-token chat completion.
const CAPTURED: &str = include_str!("testdata/runtime_metrics.txt");

#[test]
fn a_real_runtime_exposition_is_read_whole() {
    let mlp = parse(CAPTURED, "mlp").expect("parses").version("1");
    assert_eq!(mlp.requests.get("success"), Some(&5));
    assert_eq!(mlp.judged_requests(), 8);
    assert_eq!(mlp.errors(), 0);
    assert_eq!(mlp.latency.observations(), 8);
    let chat = parse(CAPTURED, "smollm2").expect("parses").version("1");
    assert_eq!(chat.generations_finished(), 1);
    assert_eq!(chat.empty_outputs, 0);
    assert_eq!(chat.time_to_first_token.observations(), 1);
    assert!(!chat.time_per_output_token.is_empty());
}
