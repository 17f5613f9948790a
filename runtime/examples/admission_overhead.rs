//! What per-tenant admission and fair queuing add to one request, in nanoseconds.
//!
//! ```text
//! cargo run --release -p modelplane-runtime --example admission_overhead
//! taskset -c 1 target/release/examples/admission_overhead --iterations 500000 --json out.json
//! ```
//!
//! Each case is timed call by call (`Instant::now()` around it, so the timer's own
//! cost is in every case alike) after an untimed warm-up, and reported as p50/p99:
//! - the request path's admit step without tenancy (`TenantPermit::unlimited()`, dropped)
//!   against `Tenancy::admit_as` for a tenant with every budget set (requests/s with
//!   burst, tokens/min, max concurrent; none ever refuses here) and the permit dropped,
//!   and the same plus the generation path's token reservation and settlement;
//! - the queue: a `VecDeque` push/pop (FIFO) against `modelplane_fair::FairQueue`
//!   push, pop and charge with 2 and with 100 backlogged flows.

#[path = "common/timing.rs"]
mod timing;

use std::collections::VecDeque;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

use timing::{Case, time};

use clap::Parser;
use modelplane_config::RuntimeConfig;
use modelplane_fair::{FairQueue, Flow};
use modelplane_runtime::tenancy::{Tenancy, TenantPermit};

/// Times admission and fair-queue operations.
#[derive(Parser)]
struct Args {
    /// Timed calls per case.
    #[arg(long, default_value_t = 200_000)]
    iterations: usize,
    /// Untimed calls per case first.
    #[arg(long, default_value_t = 20_000)]
    warmup: usize,
    /// Requests already queued in each flow of the fair-queue cases.
    #[arg(long, default_value_t = 4)]
    backlog: usize,
    /// Write the results here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn tenancy() -> Tenancy {
    // Budgets large enough that no call is refused: every check runs, none fails.
    let config = RuntimeConfig::from_yaml(
        "tenants:\n\
         - {name: a, priority: 1, requests: {perSecond: 1000000000, burst: 1000000000, \
            tokensPerMinute: 1000000000000000, maxConcurrent: 1000000}}\n\
         - {name: b, priority: 1, requests: {perSecond: 100, burst: 200}}\n",
    )
    .expect("the benchmark's tenant config parses");
    Tenancy::new(&config.tenants, &config.fairness, "anonymous")
}

fn fair_queue_case(name: &str, args: &Args, flows: usize) -> Case {
    let keys: Vec<Flow> = (0..flows)
        .map(|i| Flow::new(0, format!("tenant-{i}"), 1))
        .collect();
    let mut queue: FairQueue<u64> = FairQueue::new(flows * (args.backlog + 1) + 16);
    for round in 0..args.backlog {
        for flow in &keys {
            queue.push(flow, round as u64);
        }
    }
    let mut next = 0usize;
    time(name, args.warmup, args.iterations, || {
        let flow = &keys[next % flows];
        next += 1;
        black_box(queue.push(flow, next as u64));
        if let Some((key, item)) = queue.pop() {
            // A prompt of 100 to 400 tokens.
            queue.charge(&key, 100 + (item % 4) * 100);
            black_box(item);
        }
    })
}

fn main() {
    let args = Args::parse();
    let tenancy = tenancy();
    let mut cases = Vec::new();

    cases.push(time(
        "admit: no tenancy (TenantPermit::unlimited)",
        args.warmup,
        args.iterations,
        || {
            drop(black_box(TenantPermit::unlimited()));
        },
    ));
    cases.push(time(
        "admit: Tenancy::admit_as, all budgets set",
        args.warmup,
        args.iterations,
        || {
            let permit = tenancy.admit_as("a", "a", None, Instant::now());
            drop(black_box(permit.expect("within budget")));
        },
    ));
    cases.push(time(
        "admit + reserve 300 tokens + settle (generation)",
        args.warmup,
        args.iterations,
        || {
            let now = Instant::now();
            let mut permit = tenancy
                .admit_as("a", "a", None, now)
                .expect("within budget");
            permit.reserve(300, now).expect("within budget");
            permit.spent(250);
            drop(black_box(permit));
        },
    ));
    cases.push(time(
        "admit: unknown tenant (no budget, label other)",
        args.warmup,
        args.iterations,
        || {
            let permit = tenancy.admit_as("zz", "zz", None, Instant::now());
            drop(black_box(permit.expect("no budget")));
        },
    ));

    let mut fifo: VecDeque<u64> = (0..(2 * args.backlog) as u64).collect();
    let mut n = 0u64;
    cases.push(time(
        "queue: VecDeque push + pop (FIFO)",
        args.warmup,
        args.iterations,
        || {
            n += 1;
            fifo.push_back(black_box(n));
            black_box(fifo.pop_front());
        },
    ));
    cases.push(fair_queue_case(
        "queue: FairQueue push + pop + charge, 2 flows",
        &args,
        2,
    ));
    cases.push(fair_queue_case(
        "queue: FairQueue push + pop + charge, 100 flows",
        &args,
        100,
    ));

    println!(
        "{} timed calls per case after {} untimed; ns per call",
        args.iterations, args.warmup
    );
    println!("{:<52} {:>8} {:>8} {:>9}", "case", "p50", "p99", "mean");
    for c in &cases {
        println!(
            "{:<52} {:>8} {:>8} {:>9.1}",
            c.name, c.p50_ns, c.p99_ns, c.mean_ns
        );
    }
    let diff = |a: usize, b: usize| {
        (
            cases[a].p50_ns as i64 - cases[b].p50_ns as i64,
            cases[a].p99_ns as i64 - cases[b].p99_ns as i64,
        )
    };
    let (admit50, admit99) = diff(1, 0);
    let (gen50, gen99) = diff(2, 0);
    println!(
        "tenancy admission adds {admit50} ns p50 / {admit99} ns p99 per request \
         ({gen50} / {gen99} ns with the token reservation); target ≤ 5000 ns p50: {}",
        if gen50.max(admit50) <= 5000 {
            "met"
        } else {
            "MISSED"
        }
    );
    for (i, flows) in [(5, 2), (6, 100)] {
        let (d50, d99) = diff(i, 4);
        println!("fair queue with {flows} flows adds {d50} ns p50 / {d99} ns p99 over FIFO");
    }
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&cases).expect("cases serialize");
        std::fs::write(path, text + "\n").expect("writing the JSON report");
    }
}
