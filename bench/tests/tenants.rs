//! `modelplane-bench tenants`: group specs, the service curves rebuilt from
//! streamed requests, the gap between two curves against the VTC bound, the
//! per-group counts, and a run against a stub that tells API keys apart.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use clap::Parser;
use modelplane_bench::Load;
use modelplane_bench::schedule::Arrivals;
use modelplane_bench::stream::trace::{Completed, Usage};
use modelplane_bench::tenants::{
    Credit, GroupReport, GroupSpec, Judged, TenantsArgs, Weights, credits, max_gap, run, vtc_bound,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const WEIGHTS: Weights = Weights {
    input: 1,
    output: 2,
};

#[test]
fn an_open_loop_group_spec_parses_with_defaults() {
    let g: GroupSpec = "name=a,key=secret-a,rate=500".parse().unwrap();
    assert_eq!(g.name, "a");
    assert_eq!(g.api_key.as_deref(), Some("secret-a"));
    assert_eq!(
        g.load,
        Load::Open {
            rate: 500.0,
            arrivals: Arrivals::Uniform,
            max_in_flight: 1024
        }
    );
    assert_eq!((g.requests, g.duration, g.max_tokens), (None, None, None));
}

#[test]
fn a_closed_loop_group_spec_takes_every_field() {
    let g: GroupSpec =
        "name=b, key=kb, concurrency=8, requests=100, duration=15s, prompts=/tmp/p.jsonl, max_tokens=32, seed=7"
            .parse()
            .unwrap();
    assert_eq!(g.load, Load::Closed { concurrency: 8 });
    assert_eq!(g.requests, Some(100));
    assert_eq!(g.duration, Some(Duration::from_secs(15)));
    assert_eq!(
        g.prompts.as_deref(),
        Some(std::path::Path::new("/tmp/p.jsonl"))
    );
    assert_eq!((g.max_tokens, g.seed), (Some(32), Some(7)));
    let p: GroupSpec = "name=c,rate=2.5,arrivals=poisson,max-in-flight=4"
        .parse()
        .unwrap();
    assert_eq!(p.api_key, None);
    assert_eq!(
        p.load,
        Load::Open {
            rate: 2.5,
            arrivals: Arrivals::Poisson,
            max_in_flight: 4
        }
    );
}

#[test]
fn bad_group_specs_say_what_is_wrong() {
    let err = |s: &str| s.parse::<GroupSpec>().unwrap_err();
    assert!(err("key=k,rate=1").contains("name= is required"));
    assert!(err("name=a").contains("rate= (open loop) or concurrency="));
    assert!(err("name=a,rate=1,concurrency=2").contains("exclude each other"));
    assert!(err("name=a,rate=-3").contains("not a positive number"));
    assert!(err("name=a,rate=1,arrivals=bursty").contains("uniform or poisson"));
    assert!(err("name=a,concurrency=2,arrivals=poisson").contains("need rate="));
    assert!(err("name=a,rate=1,colour=red").contains("unknown field \"colour\""));
    assert!(err("name=a,rate=1,rate=2").contains("given twice"));
    assert!(err("name=a,rate").contains("not key=value"));
    assert!(err("name=a,concurrency=x").contains("not a whole number"));
    assert!(err("name=a,rate=1,duration=soon").contains("duration="));
}

#[test]
fn the_command_line_needs_distinct_group_names() {
    let args = |groups: &[&str]| {
        let mut argv = vec!["modelplane-bench tenants", "--model", "m"];
        for g in groups {
            argv.extend(["--group", g]);
        }
        TenantsArgs::try_parse_from(argv)
    };
    assert!(args(&[]).is_err(), "at least one group");
    let plan = args(&["name=a,rate=10", "name=b,concurrency=2"])
        .unwrap()
        .plan()
        .unwrap();
    assert_eq!(plan.groups.len(), 2);
    assert_eq!(plan.weights, WEIGHTS);
    assert_eq!(plan.timeout, Duration::from_secs(10));
    let twice = args(&["name=a,rate=10", "name=a,rate=5"])
        .unwrap()
        .plan()
        .unwrap_err();
    assert!(twice.contains("given twice"), "{twice}");
}

fn completed(ttft: Option<u64>, gaps: &[u64], chunks: u64, usage: Option<(u64, u64)>) -> Completed {
    let e2e = ttft.unwrap_or(0) + gaps.iter().sum::<u64>() + 5;
    Completed {
        ttft: ttft.map(ms),
        gaps: gaps.iter().copied().map(ms).collect(),
        e2e: ms(e2e),
        chunks,
        usage: usage.map(|(prompt_tokens, completion_tokens)| Usage {
            prompt_tokens,
            completion_tokens,
        }),
    }
}

#[test]
fn a_stream_credits_its_prompt_at_the_first_token_and_each_token_as_it_comes() {
    let done = completed(Some(100), &[10, 20], 3, Some((40, 3)));
    let c = credits(ms(1000), &done);
    let at: Vec<u64> = c.iter().map(|c| c.at.as_millis() as u64).collect();
    assert_eq!(at, vec![1100, 1110, 1130]);
    assert_eq!(
        c[0],
        Credit {
            at: ms(1100),
            input: 40,
            output: 1
        }
    );
    assert_eq!(c.iter().map(|c| c.output).sum::<u64>(), 3);
    assert_eq!(c.iter().map(|c| c.cost(WEIGHTS)).sum::<u64>(), 40 + 2 * 3);
}

#[test]
fn usage_beyond_the_pieces_is_credited_at_the_end_and_no_text_credits_everything_then() {
    // Two pieces, five tokens by the server's count: three more at the end.
    let done = completed(Some(50), &[10], 2, Some((7, 5)));
    let c = credits(Duration::ZERO, &done);
    assert_eq!(
        c.last().unwrap(),
        &Credit {
            at: done.e2e,
            input: 0,
            output: 3
        }
    );
    assert_eq!(c.iter().map(|c| c.output).sum::<u64>(), 5);
    // The first token was end-of-sequence: no text, all at the end.
    let silent = completed(None, &[], 0, Some((9, 1)));
    assert_eq!(
        credits(ms(3), &silent),
        vec![Credit {
            at: ms(3) + silent.e2e,
            input: 9,
            output: 1
        }]
    );
    // No usage: the pieces are the tokens, the prompt is unknown.
    let bare = completed(Some(5), &[1, 1], 3, None);
    let c = credits(Duration::ZERO, &bare);
    assert_eq!(
        c.iter()
            .map(|c| (c.input, c.output))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        (0, 3)
    );
}

fn credit(at: u64, input: u64, output: u64) -> Credit {
    Credit {
        at: ms(at),
        input,
        output,
    }
}

#[test]
fn the_gap_is_the_largest_difference_of_the_cumulative_curves_within_the_window() {
    let a = [credit(10, 100, 0), credit(30, 0, 10), credit(90, 1000, 0)];
    let b = [credit(20, 10, 0), credit(40, 50, 20)];
    // a: 100@10, 120@30; b: 10@20, 100@40 → diffs 100, 90, 110, 20; a@90 is outside.
    let gap = max_gap(("a", &a), ("b", &b), WEIGHTS, Duration::ZERO, ms(50));
    assert_eq!(gap.max_gap_tokens, 110);
    // Over any interval: the difference ranged from 0 to 110.
    assert_eq!(gap.any_interval_gap_tokens, 110);
    assert_eq!(gap.ahead, "a");
    assert!((gap.at_s - 0.030).abs() < 1e-9);
    assert_eq!((gap.a_tokens, gap.b_tokens), (120, 100));
    // The other way round, a is still the one ahead; with the late credit a runs away.
    let swapped = max_gap(("b", &b), ("a", &a), WEIGHTS, Duration::ZERO, ms(50));
    assert_eq!((swapped.max_gap_tokens, swapped.ahead.as_str()), (110, "a"));
    let whole = max_gap(("a", &a), ("b", &b), WEIGHTS, Duration::ZERO, ms(100));
    assert_eq!(whole.max_gap_tokens, 1020);
    // From 15 ms on, a's first credit is left out: b 10@20, a 20@30, b 90@40.
    let late = max_gap(("a", &a), ("b", &b), WEIGHTS, ms(15), ms(50));
    assert_eq!((late.max_gap_tokens, late.ahead.as_str()), (80, "b"));
    assert_eq!((late.a_tokens, late.b_tokens), (20, 100));
    assert_eq!(late.any_interval_gap_tokens, 90);
}

#[test]
fn the_gap_over_any_interval_is_the_range_of_the_difference() {
    // a leads by 100, then b catches up and leads by 50: some interval saw 150.
    let a = [credit(10, 100, 0)];
    let b = [credit(20, 150, 0)];
    let gap = max_gap(("a", &a), ("b", &b), WEIGHTS, Duration::ZERO, ms(30));
    assert_eq!(gap.max_gap_tokens, 100);
    assert_eq!(gap.any_interval_gap_tokens, 150);
}

#[test]
fn credits_at_one_instant_settle_together() {
    let a = [credit(10, 500, 0)];
    let b = [credit(10, 500, 0)];
    let gap = max_gap(("a", &a), ("b", &b), WEIGHTS, Duration::ZERO, ms(20));
    assert_eq!((gap.max_gap_tokens, gap.ahead.as_str()), (0, ""));
}

#[test]
fn the_vtc_bound_is_twice_the_largest_request_cost() {
    assert_eq!(vtc_bound(WEIGHTS, 200, 32), 2 * (200 + 2 * 32));
    assert_eq!(
        vtc_bound(
            Weights {
                input: 3,
                output: 1
            },
            10,
            5
        ),
        70
    );
}

fn judged() -> Judged {
    Judged {
        measure: "e2e",
        count: 0,
        p50_ms: 0.0,
        p90_ms: 0.0,
        p99_ms: 0.0,
        max_ms: 0.0,
    }
}

#[test]
fn group_counts_give_success_and_429_rates() {
    let errors = BTreeMap::from([("429".to_owned(), 90), ("503".to_owned(), 2)]);
    let g = GroupReport::new("a", 8, &errors, judged());
    assert_eq!((g.requests, g.ok, g.rate_limited), (100, 8, 90));
    assert!((g.success_pct - 8.0).abs() < 1e-9);
    assert!((g.rate_limited_pct - 90.0).abs() < 1e-9);
    let idle = GroupReport::new("b", 0, &BTreeMap::new(), judged());
    assert_eq!((idle.success_pct, idle.rate_limited_pct), (100.0, 0.0));
}

/// A stub OIP endpoint: key `ka` is always over budget (429), `kb` is served,
/// anything else is unauthenticated.
async fn stub() -> String {
    async fn infer(headers: HeaderMap) -> (StatusCode, &'static str) {
        match headers.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer ka") => (StatusCode::TOO_MANY_REQUESTS, r#"{"error":"over budget"}"#),
            Some("Bearer kb") => (StatusCode::OK, r#"{"model_name":"m","outputs":[]}"#),
            _ => (StatusCode::UNAUTHORIZED, r#"{"error":"who"}"#),
        }
    }
    let app = Router::new().route("/v2/models/m/infer", post(infer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

#[tokio::test]
async fn groups_run_together_each_with_its_key() {
    let url = stub().await;
    let argv = [
        "modelplane-bench tenants",
        "--url",
        &url,
        "--protocol",
        "rest-json",
        "--model",
        "m",
        "--input-name",
        "x",
        "--datatype",
        "FP32",
        "--shape",
        "1,4",
        "--duration",
        "10s",
        "--group",
        "name=a,key=ka,rate=400,requests=40",
        "--group",
        "name=b,key=kb,concurrency=2,requests=10",
        "--group",
        "name=anon,rate=100,requests=3",
    ];
    let plan = TenantsArgs::try_parse_from(argv).unwrap().plan().unwrap();
    let report = run(&plan).await.unwrap();
    let by_name = |n: &str| report.groups.iter().find(|g| g.name == n).unwrap();
    let (a, b, anon) = (by_name("a"), by_name("b"), by_name("anon"));
    assert_eq!((a.requests, a.ok, a.rate_limited), (40, 0, 40));
    assert!((a.rate_limited_pct - 100.0).abs() < 1e-9);
    assert_eq!((b.requests, b.ok, b.rate_limited), (10, 10, 0));
    assert_eq!(b.latency.measure, "e2e");
    assert_eq!(b.latency.count, 10);
    assert_eq!(anon.errors.get("401"), Some(&3));
    assert!(
        report.service.is_empty(),
        "tensor runs have no service curves"
    );
    let text = report.to_string();
    assert!(text.contains("a: 40 requests, 0 ok"), "{text}");
}
