//! The load generator end to end against the in-test stub server.

mod stub;

use std::sync::atomic::Ordering;
use std::time::Duration;

use modelplane_bench::client::{Protocol, Target};
use modelplane_bench::load::Limits;
use modelplane_bench::schedule::Arrivals;
use modelplane_bench::tensor::DataType;
use modelplane_bench::{Input, Load, Plan, run};

fn plan(url: &str, protocol: Protocol, model: &str, load: Load, requests: u64) -> Plan {
    Plan {
        label: "test".into(),
        protocol,
        target: Target {
            url: url.into(),
            model: model.into(),
            version: String::new(),
            timeout: Duration::from_secs(5),
            api_key: None,
        },
        input: Input {
            batch: 3,
            seed: 1,
            ..Input::default()
        },
        load,
        limits: Limits {
            requests,
            duration: Duration::from_secs(20),
        },
        warmup_requests: 0,
    }
}

const FOUR: Load = Load::Closed { concurrency: 4 };

#[tokio::test]
async fn closed_loop_sends_exactly_the_requested_count_as_rest_json() {
    let stub = stub::start().await;
    let mut p = plan(&stub.rest_url, Protocol::RestJson, "mlp", FOUR, 120);
    p.warmup_requests = 10;
    let report = run(&p).await.unwrap();
    assert_eq!(report.requests, 120);
    assert_eq!(report.ok, 120, "{:?}", report.errors);
    assert_eq!(stub.seen.rest_ok.load(Ordering::Relaxed), 130);
    assert_eq!(
        report.scenario.shape,
        vec![3, 4],
        "batch fills the free dim"
    );
    assert_eq!(report.scenario.input, "input__0");
    assert!((report.rows_per_s - 3.0 * report.throughput_rps).abs() < 1e-6);
    assert!(report.latency_us.p50 > 0.0);
    assert!(report.latency_us.p50 <= report.latency_us.p99);
    assert!(report.latency_us.p99 <= report.latency_us.max);
}

#[tokio::test]
async fn rest_binary_requests_pass_the_servers_checks() {
    let stub = stub::start().await;
    let p = plan(&stub.rest_url, Protocol::RestBinary, "mlp", FOUR, 50);
    let report = run(&p).await.unwrap();
    assert_eq!(report.ok, 50, "{:?}", report.errors);
    assert_eq!(stub.seen.rest_ok.load(Ordering::Relaxed), 50);
}

#[tokio::test]
async fn grpc_requests_reach_model_infer_with_raw_contents() {
    let stub = stub::start().await;
    let p = plan(&stub.grpc_url, Protocol::Grpc, "mlp", FOUR, 50);
    let report = run(&p).await.unwrap();
    assert_eq!(report.ok, 50, "{:?}", report.errors);
    assert_eq!(report.scenario.shape, vec![3, 4], "gRPC metadata was read");
    assert_eq!(stub.seen.grpc_ok.load(Ordering::Relaxed), 50);
}

#[tokio::test]
async fn a_wrong_input_is_counted_as_a_400_not_a_success() {
    let stub = stub::start().await;
    let mut p = plan(&stub.rest_url, Protocol::RestJson, "mlp", FOUR, 20);
    p.input.name = Some("input__0".into());
    p.input.datatype = Some(DataType::Fp32);
    p.input.shape = Some(vec![2, 5]);
    let report = run(&p).await.unwrap();
    assert_eq!(report.ok, 0);
    assert_eq!(report.errors.get("400"), Some(&20));
}

#[tokio::test]
async fn failures_are_counted_by_http_and_grpc_status() {
    let stub = stub::start().await;
    let rest = run(&plan(&stub.rest_url, Protocol::RestJson, "busy", FOUR, 30))
        .await
        .unwrap();
    assert_eq!(rest.ok, 0);
    assert_eq!(rest.errors.get("503"), Some(&30));

    let grpc = run(&plan(&stub.grpc_url, Protocol::Grpc, "busy", FOUR, 30))
        .await
        .unwrap();
    assert_eq!(grpc.errors.get("grpc:Unavailable"), Some(&30));
}

#[tokio::test]
async fn requests_past_the_timeout_count_as_timeouts() {
    let stub = stub::start().await;
    for (url, protocol) in [
        (&stub.rest_url, Protocol::RestBinary),
        (&stub.grpc_url, Protocol::Grpc),
    ] {
        let mut p = plan(url, protocol, "slow", FOUR, 4);
        p.target.timeout = stub::SLOW / 4;
        let report = run(&p).await.unwrap();
        assert_eq!(report.errors.get("timeout"), Some(&4), "{protocol:?}");
    }
}

#[tokio::test]
async fn the_time_limit_stops_a_closed_loop_before_its_request_count() {
    let stub = stub::start().await;
    let mut p = plan(&stub.rest_url, Protocol::RestJson, "slow", FOUR, 1_000_000);
    p.limits.duration = Duration::from_millis(350);
    let report = run(&p).await.unwrap();
    // Four workers, 100 ms per request, 350 ms to issue: four rounds at most.
    assert!(report.requests >= 4 && report.requests <= 16, "{report:?}");
    assert!(report.elapsed_s < 1.0, "{report:?}");
}

#[tokio::test]
async fn open_loop_sends_at_the_rate_whatever_the_latency() {
    let stub = stub::start().await;
    let load = Load::Open {
        rate: 200.0,
        arrivals: Arrivals::Uniform,
        max_in_flight: 100,
    };
    let mut p = plan(&stub.rest_url, Protocol::RestJson, "slow", load, 10_000);
    p.limits.duration = Duration::from_millis(500);
    let report = run(&p).await.unwrap();
    // 200 req/s for 0.5 s is 100 sends, even though each takes 100 ms.
    assert_eq!(report.requests, 100, "{report:?}");
    assert_eq!(report.ok, 100, "{:?}", report.errors);
    assert!(report.latency_us.p50 >= 100_000.0, "{report:?}");
}

#[tokio::test]
async fn open_loop_drops_requests_beyond_max_in_flight() {
    let stub = stub::start().await;
    let load = Load::Open {
        rate: 400.0,
        arrivals: Arrivals::Poisson,
        max_in_flight: 2,
    };
    let mut p = plan(&stub.rest_url, Protocol::Grpc, "slow", load, 40);
    p.target.url = stub.grpc_url.clone();
    let report = run(&p).await.unwrap();
    let dropped = report.errors.get("dropped").copied().unwrap_or(0);
    assert_eq!(report.requests, 40);
    assert!(dropped > 20, "{report:?}");
    assert_eq!(report.ok + dropped, 40, "{report:?}");
}
