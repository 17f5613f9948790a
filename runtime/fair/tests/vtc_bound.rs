//! A deterministic simulation of continuous batching under the fair queue: two
//! backlogged tenants, one flooding with long prompts, share a fixed number of slots;
//! every step each running sequence makes one token. Charged as VTC charges (prompt
//! tokens × input weight at dispatch, each generated token × output weight), the
//! service the two received never differs by more than the VTC bound; the same
//! workload served first come first served does, so the check can fail.

use modelplane_fair::{FairQueue, Flow};

const W_IN: u64 = 1;
const W_OUT: u64 = 2;
const SLOTS: usize = 4;
const STEPS: usize = 20_000;

#[derive(Clone, Copy)]
struct Request {
    tenant: usize,
    prompt: u64,
    output: u64,
}

/// A small deterministic generator (xorshift), so the run is the same every time.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Tenant 0 floods with long prompts, tenant 1 sends short ones; both stay backlogged.
fn workload(rng: &mut Rng, tenant: usize) -> Request {
    match tenant {
        0 => Request {
            tenant,
            prompt: 2000 + rng.below(2000),
            output: 16 + rng.below(48),
        },
        _ => Request {
            tenant,
            prompt: 20 + rng.below(60),
            output: 16 + rng.below(48),
        },
    }
}

/// Runs the simulation; returns the largest service gap seen and the bound.
fn run(fair: bool) -> (u64, u64) {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let flows = [Flow::new(0, "a", 1), Flow::new(0, "b", 1)];
    let mut queue = FairQueue::new(10_000);
    let mut fifo = std::collections::VecDeque::new();
    let mut queued = [0usize; 2];
    // Tenant a sends ten requests for each of b's; both are kept backlogged: a
    // tenant whose queue runs low sends more (b a few, a ten times as many).
    let mut top_up = |queue: &mut FairQueue<Request>,
                      fifo: &mut std::collections::VecDeque<Request>,
                      queued: &mut [usize; 2]| {
        for (tenant, batch) in [(0, 40), (1, 4)] {
            if queued[tenant] < batch {
                for _ in 0..batch {
                    let request = workload(&mut rng, tenant);
                    queue.push(&flows[tenant], request);
                    fifo.push_back(request);
                    queued[tenant] += 1;
                }
            }
        }
    };
    let longest_prompt = 4000;
    let longest_output = 64;
    // Sheng et al., Thm 4.4: with U = w_in·L_in + w_out·M the largest cost of one
    // request, two backlogged clients' service differs by at most 2U.
    let unit = W_IN * longest_prompt + W_OUT * longest_output;
    let bound = 2 * unit;

    let mut service = [0u64; 2];
    top_up(&mut queue, &mut fifo, &mut queued);
    let mut running: Vec<(usize, u64)> = Vec::new();
    let mut worst = 0;
    for _ in 0..STEPS {
        top_up(&mut queue, &mut fifo, &mut queued);
        while running.len() < SLOTS {
            let next = if fair {
                queue.pop().map(|(key, request)| {
                    queue.charge(&key, W_IN * request.prompt);
                    request
                })
            } else {
                fifo.pop_front()
            };
            let Some(request) = next else { break };
            queued[request.tenant] = queued[request.tenant].saturating_sub(1);
            service[request.tenant] += W_IN * request.prompt;
            running.push((request.tenant, request.output));
        }
        for (tenant, left) in &mut running {
            service[*tenant] += W_OUT;
            if fair {
                queue.charge(&flows[*tenant].key, W_OUT);
            }
            *left -= 1;
        }
        running.retain(|(_, left)| *left > 0);
        worst = worst.max(service[0].abs_diff(service[1]));
    }
    assert!(
        service.iter().all(|s| *s > 0),
        "both were served: {service:?}"
    );
    (worst, bound)
}

#[test]
fn two_backlogged_tenants_stay_within_the_vtc_bound() {
    let (worst, bound) = run(true);
    println!("fair: largest service gap {worst} tokens, bound {bound}");
    assert!(worst <= bound, "gap {worst} exceeds the VTC bound {bound}");
}

#[test]
fn first_come_first_served_exceeds_the_bound_on_the_same_workload() {
    let (worst, bound) = run(false);
    println!("fifo: largest service gap {worst} tokens, bound {bound}");
    assert!(worst > bound, "FIFO gap {worst} should exceed {bound}");
}
