//! What the canary split adds to the route step of one request, in nanoseconds.
//!
//! ```text
//! cargo run --release -p modelplane-runtime --example route_overhead
//! taskset -c 1 target/release/examples/route_overhead --iterations 500000 --json out.json
//! ```
//!
//! Each case times `serve::route` call by call (`Instant::now()` around it, so the
//! timer's own cost is in every case alike) after an untimed warm-up, over a catalog of
//! one model with two ready versions, and reports p50/p99:
//! - no canary: the default version;
//! - a canary, split by weight (5 %);
//! - a canary with two match rules (headers and tenants) that do not match and a sticky
//!   header the request carries: every rule is evaluated, then the value is hashed;
//! - the same with a request the first rule matches.
//!
//! No tracing subscriber is installed, so recording on the span costs what it costs on
//! a disabled span; the route's counter is the real one.

#[path = "common/timing.rs"]
mod timing;

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue};
use clap::Parser;
use modelplane_config::RuntimeConfig;
use modelplane_runtime::batch::{BatchSettings, Executor, Loader};
use modelplane_runtime::catalog::{Catalog, LoadState, ModelEntry, Version, VersionSlot};
use modelplane_runtime::metrics::Metrics;
use modelplane_runtime::model::{Backend, Signature, TensorSpec};
use modelplane_runtime::serve::{Credential, Identity, Protocol, RequestContext, route};
use modelplane_runtime::tensor::DataType;
use timing::time;

/// Times the route step with and without a canary.
#[derive(Parser)]
struct Args {
    /// Timed calls per case.
    #[arg(long, default_value_t = 200_000)]
    iterations: usize,
    /// Untimed calls per case first.
    #[arg(long, default_value_t = 20_000)]
    warmup: usize,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// A backend that is never run: routing does not reach the model.
struct Unused;

impl Backend for Unused {
    fn forward(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, String> {
        Ok(inputs.iter().map(tch::Tensor::shallow_clone).collect())
    }
    fn device(&self) -> tch::Device {
        tch::Device::Cpu
    }
}

async fn version(metrics: &Metrics, label: &str) -> Arc<Version> {
    let signature = Signature {
        inputs: vec![TensorSpec {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![-1],
        }],
        outputs: Vec::new(),
    };
    let settings = BatchSettings {
        max_batch_size: 1,
        max_queue_delay: Duration::ZERO,
        warmup_iterations: 1,
        intra_op_threads: 1,
    };
    let metrics = metrics.version("m", label);
    let loader: Loader = Box::new(move || Ok((Box::new(Unused) as Box<dyn Backend>, signature)));
    let (executor, signature) = Executor::start(label.into(), settings, metrics.clone(), loader)
        .await
        .expect("the stand-in version starts");
    Arc::new(Version::new(
        "m".into(),
        label.into(),
        signature,
        false,
        None,
        metrics,
        executor,
    ))
}

/// A catalog of model `m` with versions 1 (default) and 2 ready, and `canary` (YAML).
fn catalog(versions: &[Arc<Version>], canary: &str) -> Catalog {
    let yaml = format!(
        "models: [{{name: m, defaultVersion: '1', versions: [{{version: '1', source: {{path: a}}}}, \
         {{version: '2', source: {{path: b}}}}]{canary}}}]"
    );
    let config = RuntimeConfig::from_yaml(&yaml)
        .expect("the benchmark's config parses")
        .models
        .remove(0);
    let slots = versions
        .iter()
        .map(|version| {
            let slot = VersionSlot {
                serving: Some(Arc::clone(version)),
                state: LoadState::Ready,
            };
            (version.label.clone(), slot)
        })
        .collect();
    let mut catalog = Catalog::default();
    let entry = ModelEntry::new(Arc::new(config), slots, None);
    catalog.models.insert("m".into(), entry);
    catalog.initialized = true;
    catalog
}

fn request(headers: &[(&'static str, &'static str)], tenant: &str) -> RequestContext {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        map.insert(*name, HeaderValue::from_static(value));
    }
    let mut ctx = RequestContext::new(Protocol::Rest, "m", None, map, Instant::now())
        .expect("the benchmark's request is valid");
    ctx.identity = Identity::new(Credential::ApiKey, Arc::from(tenant));
    ctx
}

fn main() {
    let args = Args::parse();
    let metrics = Metrics::new();
    let versions = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime")
        .block_on(async { vec![version(&metrics, "1").await, version(&metrics, "2").await] });
    let plain = catalog(&versions, "");
    let weighted = catalog(&versions, ", canary: {candidate: '2', weight: 5}");
    let ruled = catalog(
        &versions,
        ", canary: {candidate: '2', weight: 5, stickyBy: x-user-id, match: [\
         {headers: {x-canary: 'true', x-region: eu}, tenants: [beta]}, {tenants: [qa, staff]}]}",
    );
    let browser = [
        ("x-user-id", "user-4711"),
        ("x-canary", "false"),
        ("x-region", "eu"),
        ("user-agent", "bench/1"),
        ("accept", "application/json"),
    ];
    let anyone = request(&browser, "team-a");
    let tester = request(&[("x-canary", "true"), ("x-region", "eu")], "beta");

    let mut cases = Vec::new();
    let mut case = |name: &str, catalog: &Catalog, ctx: &RequestContext| {
        cases.push(time(name, args.warmup, args.iterations, || {
            black_box(route(black_box(catalog), black_box(ctx)).expect("routed"));
        }));
    };
    case("route: no canary (default version)", &plain, &anyone);
    case("route: canary, weight 5 %", &weighted, &anyone);
    case(
        "route: canary, 2 rules miss + sticky header",
        &ruled,
        &anyone,
    );
    case("route: canary, first rule matches", &ruled, &tester);

    println!(
        "{} timed calls per case after {} untimed; ns per call",
        args.iterations, args.warmup
    );
    println!(
        "{:<46} {:>8} {:>8} {:>9} {:>7}",
        "case", "p50", "p99", "mean", "x p50"
    );
    let base = cases[0].p50_ns.max(1) as f64;
    for c in &cases {
        println!(
            "{:<46} {:>8} {:>8} {:>9.1} {:>7.2}",
            c.name,
            c.p50_ns,
            c.p99_ns,
            c.mean_ns,
            c.p50_ns as f64 / base
        );
    }
    let worst = cases.iter().map(|c| c.p50_ns).max().unwrap_or_default();
    let added = worst.saturating_sub(cases[0].p50_ns);
    println!(
        "the canary split adds at most {added} ns p50 per request; route p50 at most {worst} ns; \
         target ≤ 2000 ns p50: {}",
        if worst <= 2000 { "met" } else { "MISSED" }
    );
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&cases).expect("cases serialize");
        std::fs::write(path, text + "\n").expect("writing the JSON report");
    }
}
