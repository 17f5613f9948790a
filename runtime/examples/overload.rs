//! Overload, measured end to end over REST on loopback against a runtime started in
//! this process, on the example MLP (`python examples/make_models.py` makes it):
//!
//! 1. **Shed latency under a flood**: the version's `maxInFlight` places are held by
//!    requests waiting out a long batch delay; `--clients` clients then send
//!    `--flood` requests as fast as they can. Every one is shed with 503. Their latency
//!    is set against the loopback floor: the same clients calling `/v2/health/live`.
//! 2. **Adaptive vs fixed limit at 4× capacity**: `--loop-clients` closed-loop clients for
//!    `--seconds` against the model with a fixed `maxInFlight` of 256, then with
//!    `limits.adaptive`, alternated for `--rounds` rounds: answers per second, p50/p99
//!    of the answered, requests shed, and the medians' ratios.
//!
//! ```text
//! cargo run --release -p modelplane-runtime --example overload -- --json out.json
//! ```

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use modelplane_config::RuntimeConfig;
use modelplane_runtime::{ConfigSource, Running};

/// Measures shedding and the adaptive limit under overload.
#[derive(Parser)]
struct Args {
    /// The example MLP's folder (model.pt and signature.json).
    #[arg(long, default_value = "examples/models/mlp/1")]
    model: PathBuf,
    /// Concurrent clients.
    #[arg(long, default_value_t = 16)]
    clients: usize,
    /// Requests of the flood (and of the floor), over all clients.
    #[arg(long, default_value_t = 20_000)]
    flood: usize,
    /// Closed-loop clients of part 2, one point each: 4× and 16× the batch of 8 the
    /// model runs at once.
    #[arg(long, value_delimiter = ',', default_value = "32,128")]
    loop_clients: Vec<usize>,
    /// Seconds of each closed-loop run of part 2.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Rounds of (fixed, adaptive) in part 2; the medians are compared.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// `limits.adaptive` of the adaptive run (YAML).
    #[arg(long, default_value = "{window: 200ms}")]
    adaptive: String,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

#[derive(serde::Serialize)]
struct Latencies {
    name: String,
    requests: usize,
    statuses: std::collections::BTreeMap<u16, usize>,
    p50_us: f64,
    p99_us: f64,
    max_us: f64,
}

#[derive(serde::Serialize)]
struct ClosedLoop {
    name: String,
    clients: usize,
    answered_per_s: f64,
    shed: usize,
    p50_ms: f64,
    p99_ms: f64,
}

fn config(model: &std::path::Path, extra: &str) -> RuntimeConfig {
    let yaml = format!(
        "server: {{http: '127.0.0.1:0', grpc: '127.0.0.1:0', cacheDir: '{cache}', intraOpThreads: 1}}
models:
- name: mlp
  {extra}
  versions:
  - version: '1'
    source: {{path: '{path}'}}
",
        cache = std::env::temp_dir().join("modelplane-overload").display(),
        path = model.join("model.pt").display()
    );
    RuntimeConfig::from_yaml(&yaml).expect("the benchmark's config is valid")
}

async fn start(config: RuntimeConfig) -> Running {
    let running = modelplane_runtime::start(ConfigSource::Inline(Box::new(config)))
        .await
        .expect("the runtime starts");
    let ready = format!("http://{}/v2/health/ready", running.http_addr);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !reqwest::get(&ready)
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(
            Instant::now() < deadline,
            "the runtime is not ready within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    running
}

fn body() -> Arc<Vec<u8>> {
    let data = vec![0.5f32; 784];
    let body = serde_json::json!({"inputs": [{"name": "input", "shape": [1, 784], "datatype": "FP32", "data": data}]});
    Arc::new(serde_json::to_vec(&body).expect("json"))
}

/// `requests` calls spread over `clients` tasks, each timed; `post` sends the body.
async fn timed(
    name: &str,
    url: String,
    post: Option<Arc<Vec<u8>>>,
    clients: usize,
    requests: usize,
) -> Latencies {
    let per_client = requests.div_ceil(clients);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (url, post) = (url.clone(), post.clone());
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let mut seen = Vec::with_capacity(per_client);
                for _ in 0..per_client {
                    let t0 = Instant::now();
                    let request = match &post {
                        Some(body) => client
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body.as_ref().clone()),
                        None => client.get(&url),
                    };
                    let status = match request.send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    seen.push((t0.elapsed(), status));
                }
                seen
            })
        })
        .collect();
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("client task"));
    }
    let mut statuses = std::collections::BTreeMap::new();
    for (_, status) in &all {
        *statuses.entry(*status).or_insert(0) += 1;
    }
    let mut us: Vec<f64> = all.iter().map(|(d, _)| d.as_secs_f64() * 1e6).collect();
    us.sort_by(f64::total_cmp);
    let at = |q: f64| us[((us.len() as f64 - 1.0) * q).round() as usize];
    Latencies {
        name: name.to_owned(),
        requests: us.len(),
        statuses,
        p50_us: at(0.5),
        p99_us: at(0.99),
        max_us: us.last().copied().unwrap_or_default(),
    }
}

/// Part 1: the floor, then the flood against a version whose places are all held.
async fn shed(args: &Args) -> Vec<Latencies> {
    let running = start(config(
        &args.model,
        "batching: {maxBatchSize: 64, maxQueueDelay: 30s}\n  limits: {maxInFlight: 8}",
    ))
    .await;
    let infer = format!("http://{}/v2/models/mlp/infer", running.http_addr);
    let held: Vec<_> = (0..8)
        .map(|_| {
            let url = infer.clone();
            let body = body();
            tokio::spawn(async move {
                let _ = reqwest::Client::new()
                    .post(url)
                    .header("content-type", "application/json")
                    .body(body.as_ref().clone())
                    .send()
                    .await;
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let live = format!("http://{}/v2/health/live", running.http_addr);
    let floor = timed(
        "floor: GET /v2/health/live",
        live,
        None,
        args.clients,
        args.flood,
    )
    .await;
    let flood = timed(
        "flood: POST infer, every place held (503)",
        infer,
        Some(body()),
        args.clients,
        args.flood,
    )
    .await;
    for task in held {
        task.abort();
    }
    running.shutdown().await;
    vec![floor, flood]
}

/// Part 2: closed-loop clients for `seconds` against `extra`'s limits.
async fn closed_loop(args: &Args, clients: usize, name: &str, extra: &str) -> ClosedLoop {
    let running = start(config(&args.model, extra)).await;
    let url = format!("http://{}/v2/models/mlp/infer", running.http_addr);
    let until = Instant::now() + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let url = url.clone();
            let body = body();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let (mut answered, mut shed) = (Vec::new(), 0usize);
                while Instant::now() < until {
                    let t0 = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.as_ref().clone())
                        .send()
                        .await;
                    match response {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            answered.push(t0.elapsed());
                        }
                        Ok(r) => {
                            let _ = r.bytes().await;
                            shed += 1;
                            // A shed client backs off as Retry-After asks, briefly.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        Err(_) => shed += 1,
                    }
                }
                (answered, shed)
            })
        })
        .collect();
    let (mut answered, mut shed) = (Vec::new(), 0);
    for task in tasks {
        let (a, s) = task.await.expect("client task");
        answered.extend(a);
        shed += s;
    }
    running.shutdown().await;
    answered.sort();
    let ms = |q: f64| {
        answered
            .get(((answered.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    ClosedLoop {
        name: name.to_owned(),
        clients,
        answered_per_s: answered.len() as f64 / args.seconds as f64,
        shed,
        p50_ms: ms(0.5),
        p99_ms: ms(0.99),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let latencies = shed(&args).await;
    for l in &latencies {
        println!(
            "{:<46} n={:>6} p50 {:>8.1} µs  p99 {:>8.1} µs  max {:>9.1} µs  {:?}",
            l.name, l.requests, l.p50_us, l.p99_us, l.max_us, l.statuses
        );
    }
    println!(
        "shed p99 / floor p99: {:.2}×",
        latencies[1].p99_us / latencies[0].p99_us
    );
    let batching = "batching: {maxBatchSize: 8, maxQueueDelay: 1ms}";
    let fixed_yaml = format!("{batching}\n  limits: {{maxInFlight: 256}}");
    let adaptive_yaml = format!(
        "{batching}\n  limits: {{maxInFlight: 256, adaptive: {}}}",
        args.adaptive
    );
    // Alternated, so that a machine growing busier or quieter weighs on both alike.
    let mut runs = Vec::new();
    for &clients in &args.loop_clients {
        for round in 1..=args.rounds {
            for (name, yaml) in [
                ("fixed maxInFlight 256", &fixed_yaml),
                ("adaptive (limits.adaptive)", &adaptive_yaml),
            ] {
                let name = format!("{name}, {clients} clients, round {round}");
                let run = closed_loop(&args, clients, &name, yaml).await;
                println!(
                    "{:<50} answered {:>8.1}/s  p50 {:>7.2} ms  p99 {:>7.2} ms  shed {}",
                    run.name, run.answered_per_s, run.p50_ms, run.p99_ms, run.shed
                );
                runs.push(run);
            }
        }
        let median = |adaptive: bool, value: fn(&ClosedLoop) -> f64| {
            let mut values: Vec<f64> = runs
                .iter()
                .filter(|r| r.clients == clients && r.name.starts_with("adaptive") == adaptive)
                .map(value)
                .collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        println!(
            "{clients} clients, median of {} rounds, adaptive / fixed: throughput {:.2}×, p50 {:.2}×, p99 {:.2}×",
            args.rounds,
            median(true, |r| r.answered_per_s) / median(false, |r| r.answered_per_s),
            median(true, |r| r.p50_ms) / median(false, |r| r.p50_ms),
            median(true, |r| r.p99_ms) / median(false, |r| r.p99_ms)
        );
    }
    if let Some(path) = &args.json {
        let out = serde_json::json!({"shed": latencies, "closed_loop": runs});
        std::fs::write(path, serde_json::to_vec_pretty(&out).expect("json")).expect("write json");
    }
}
