//! Streaming generation benchmarks end to end against the fake generation
//! server: SSE and gRPC streams, closed and open loop, token counts from
//! usage, TTFT and inter-token latency against the server's known timing.

mod llm_stub;

use std::process::Command;
use std::time::Duration;

use modelplane_bench::Load;
use modelplane_bench::client::Target;
use modelplane_bench::load::Limits;
use modelplane_bench::schedule::Arrivals;
use modelplane_bench::stream::prompts::Prompts;
use modelplane_bench::stream::{self, Generation, StreamPlan, StreamProtocol, StreamReport};

fn plan(url: &str, protocol: StreamProtocol, model: &str, load: Load, requests: u64) -> StreamPlan {
    StreamPlan {
        label: "test".into(),
        protocol,
        target: Target {
            url: url.into(),
            model: model.into(),
            version: String::new(),
            timeout: Duration::from_secs(10),
            api_key: None,
        },
        generation: Generation {
            prompts: Prompts::builtin(),
            max_tokens: 5,
            temperature: 0.0,
        },
        load,
        limits: Limits {
            requests,
            duration: Duration::from_secs(20),
        },
        warmup_requests: 0,
        seed: 1,
    }
}

const FOUR: Load = Load::Closed { concurrency: 4 };

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// The stub's timing shows in the report: TTFT at least FIRST, gaps at least
/// GAP at the median, with slack above for a busy machine.
fn assert_timing_matches_the_stub(report: &StreamReport) {
    let (first, gap) = (ms(llm_stub::FIRST), ms(llm_stub::GAP));
    let ttft = &report.ttft_ms;
    assert!(ttft.p50 >= first && ttft.p50 < first + 400.0, "{ttft:?}");
    let itl = &report.itl_ms;
    assert!(itl.p50 >= 0.8 * gap && itl.p50 < gap + 200.0, "{itl:?}");
    assert!(ttft.p50 <= ttft.p99 && itl.p50 <= itl.p99);
    assert!((report.jitter.ttft_ms - (ttft.p99 - ttft.p50)).abs() < 1e-9);
    let e2e_floor = first + 4.0 * gap;
    assert!(report.e2e_ms.p50 >= 0.9 * e2e_floor, "{:?}", report.e2e_ms);
}

#[tokio::test]
async fn chat_stream_counts_tokens_from_usage_and_measures_ttft_and_itl() {
    let stub = llm_stub::start().await;
    let p = plan(&stub.http_url, StreamProtocol::OpenAiChat, "echo", FOUR, 12);
    let report = stream::run(&p).await.unwrap();
    assert_eq!(
        (report.requests, report.ok),
        (12, 12),
        "{:?}",
        report.errors
    );
    assert_eq!(report.output_tokens, 60);
    assert_eq!(report.chunks, 60, "the role-only delta is not a token");
    assert_eq!(report.requests_without_usage, 0);
    assert_eq!(report.ttft_ms.count, 12);
    assert_eq!(report.itl_ms.count, 48, "four gaps a request");
    assert!(report.prompt_tokens > 12 * 5, "{}", report.prompt_tokens);
    assert_timing_matches_the_stub(&report);
    let tokens_per_s = report.output_tokens as f64 / report.elapsed_s;
    assert!((report.output_tokens_per_s - tokens_per_s).abs() < 1e-6);
}

#[tokio::test]
async fn every_prompt_of_the_set_is_sent_in_turn() {
    let stub = llm_stub::start().await;
    let builtin = Prompts::builtin().all().to_vec();
    let n = builtin.len() as u64;
    let p = plan(
        &stub.http_url,
        StreamProtocol::OpenAiCompletions,
        "echo",
        FOUR,
        n,
    );
    let report = stream::run(&p).await.unwrap();
    assert_eq!(report.ok, n, "{:?}", report.errors);
    let mut seen = stub.seen.lock().unwrap().clone();
    let mut expected = builtin;
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn tokens_are_the_servers_count_not_the_chunks() {
    let stub = llm_stub::start().await;
    let mut p = plan(
        &stub.http_url,
        StreamProtocol::OpenAiCompletions,
        "pairs",
        FOUR,
        8,
    );
    p.generation.max_tokens = 6;
    let report = stream::run(&p).await.unwrap();
    assert_eq!(report.ok, 8, "{:?}", report.errors);
    assert_eq!(report.chunks, 24, "three chunks of two tokens each");
    assert_eq!(report.output_tokens, 48);
}

#[tokio::test]
async fn grpc_stream_reads_text_chunks_up_to_the_final_response() {
    let stub = llm_stub::start().await;
    let p = plan(&stub.grpc_url, StreamProtocol::GrpcStream, "echo", FOUR, 12);
    let report = stream::run(&p).await.unwrap();
    assert_eq!(report.ok, 12, "{:?}", report.errors);
    assert_eq!((report.output_tokens, report.chunks), (60, 60));
    assert_eq!(report.requests_without_usage, 0);
    assert_timing_matches_the_stub(&report);
}

#[tokio::test]
async fn failures_are_counted_by_status() {
    let stub = llm_stub::start().await;
    let cases = [
        (&stub.http_url, StreamProtocol::OpenAiChat, "fail", "503"),
        (
            &stub.http_url,
            StreamProtocol::OpenAiChat,
            "truncate",
            "truncated",
        ),
        (
            &stub.grpc_url,
            StreamProtocol::GrpcStream,
            "fail",
            "grpc:Unavailable",
        ),
    ];
    for (url, protocol, model, status) in cases {
        let report = stream::run(&plan(url, protocol, model, FOUR, 6))
            .await
            .unwrap();
        assert_eq!(report.ok, 0, "{model}");
        assert_eq!(
            report.errors.get(status),
            Some(&6),
            "{model}: {:?}",
            report.errors
        );
        assert_eq!(report.output_tokens, 0);
    }
}

#[tokio::test]
async fn a_stream_past_the_timeout_counts_as_a_timeout() {
    let stub = llm_stub::start().await;
    let mut p = plan(&stub.http_url, StreamProtocol::OpenAiChat, "stall", FOUR, 4);
    p.target.timeout = Duration::from_millis(200);
    let report = stream::run(&p).await.unwrap();
    assert_eq!(
        report.errors.get("timeout"),
        Some(&4),
        "{:?}",
        report.errors
    );
    assert!(report.elapsed_s < 5.0);
}

#[tokio::test]
async fn open_loop_issues_at_the_rate_and_charges_ttft_from_the_schedule() {
    let stub = llm_stub::start().await;
    let load = Load::Open {
        rate: 40.0,
        arrivals: Arrivals::Uniform,
        max_in_flight: 64,
    };
    let mut p = plan(
        &stub.http_url,
        StreamProtocol::OpenAiChat,
        "echo",
        load,
        10_000,
    );
    p.limits.duration = Duration::from_millis(500);
    let report = stream::run(&p).await.unwrap();
    // 40 req/s for 0.5 s is 20 sends, each streaming for ≈ 80 ms.
    assert_eq!(report.requests, 20, "{report:?}");
    assert_eq!(report.ok, 20, "{:?}", report.errors);
    assert_timing_matches_the_stub(&report);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_streams_chat_and_writes_the_json_report() {
    let stub = llm_stub::start().await;
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("chat.json");
    let prompts = dir.path().join("prompts.jsonl");
    std::fs::write(&prompts, "\"first prompt\"\nsecond prompt here\nthird\n").unwrap();
    let args: Vec<String> = [
        "--url",
        &stub.http_url,
        "--protocol",
        "openai-chat",
        "--model",
        "echo",
        "--concurrency",
        "2",
        "--requests",
        "4",
        "--max-tokens",
        "3",
        "--prompts",
        prompts.to_str().unwrap(),
        "--warmup-requests",
        "1",
        "--label",
        "cli",
        "--json",
        json.to_str().unwrap(),
    ]
    .map(String::from)
    .to_vec();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_modelplane-bench"))
            .args(args)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("4 requests (4 ok)"), "{stdout}");
    assert!(
        stdout.contains("TTFT") && stdout.contains("jitter"),
        "{stdout}"
    );

    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(report["ok"], 4);
    assert_eq!(report["output_tokens"], 12);
    assert_eq!(report["scenario"]["protocol"], "openai-chat");
    assert_eq!(report["scenario"]["prompts"], 3);
    assert_eq!(report["scenario"]["max_tokens"], 3);
    assert!(report["ttft_ms"]["p50"].as_f64().unwrap() >= ms(llm_stub::FIRST));
    assert!(report["jitter"]["itl_ms"].is_number());
    let seen = stub.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 5, "one warm-up request, then four measured");
    // The measured run starts over at the first prompt: first, second, third, first.
    let mut measured: Vec<&str> = seen[1..].iter().map(String::as_str).collect();
    measured.sort_unstable();
    let (first, second) = ("first prompt", "second prompt here");
    assert_eq!(measured, [first, first, second, "third"]);
}
