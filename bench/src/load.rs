//! The two ways of driving load: a closed loop of fixed concurrency and an
//! open loop at a fixed rate. Both stop at a request count or a time limit,
//! whichever comes first, and wait for the requests in flight.
//!
//! They are generic over what a request is ([`Probe`]: one OIP inference, one
//! streamed generation) and over what is kept of it ([`Tally`]).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::schedule::Schedule;

/// When a run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests issued.
    pub requests: u64,
    /// Latest time, from the start, at which a request is issued.
    pub duration: Duration,
}

/// Sends one request; each worker owns a clone.
pub trait Probe: Clone + Send + 'static {
    /// What one request measured, success or failure.
    type Sample: Send + 'static;

    /// Sends one request and waits for the whole answer. `issued` is when the
    /// request counts as sent: now in a closed loop, its scheduled time in an
    /// open loop (so a server that falls behind is charged for the wait).
    fn send(&mut self, issued: Instant) -> impl Future<Output = Self::Sample> + Send;
}

/// Accumulates samples; one per worker, merged at the end.
pub trait Tally: Default + Send + 'static {
    type Sample;

    /// Counts one request.
    fn observe(&mut self, sample: Self::Sample);

    /// Counts a request that produced no sample, labelled by why
    /// (`dropped`, `panic`, `cancelled`).
    fn fail(&mut self, status: &str);

    /// Adds another worker's counts to this one.
    fn absorb(&mut self, other: &Self);
}

/// What a loop measured and how long it took, in-flight requests included.
#[derive(Debug)]
pub struct Measured<T> {
    pub tally: T,
    pub elapsed: Duration,
}

/// `concurrency` workers, each sending its next request as soon as the last
/// is answered.
pub async fn closed_loop<P, T>(probe: &P, concurrency: usize, limits: Limits) -> Measured<T>
where
    P: Probe,
    T: Tally<Sample = P::Sample>,
{
    let start = Instant::now();
    let deadline = start + limits.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let mut probe = probe.clone();
        let issued = Arc::clone(&issued);
        workers.spawn(async move {
            let mut tally = T::default();
            while issued.fetch_add(1, Ordering::Relaxed) < limits.requests
                && Instant::now() < deadline
            {
                let sample = probe.send(Instant::now()).await;
                tally.observe(sample);
            }
            tally
        });
    }
    let mut tally = T::default();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(worker) => tally.absorb(&worker),
            Err(e) => tally.fail(failed_task(&e)),
        }
    }
    Measured {
        tally,
        elapsed: start.elapsed(),
    }
}

/// Sends requests at the times `schedule` gives, whether or not earlier ones
/// were answered (no coordinated omission: each is issued at its scheduled
/// time). When `max_in_flight` requests are outstanding, a due request is not
/// sent and counts as `dropped`.
pub async fn open_loop<P, T>(
    probe: &P,
    schedule: Schedule,
    max_in_flight: usize,
    limits: Limits,
) -> Measured<T>
where
    P: Probe,
    T: Tally<Sample = P::Sample>,
{
    let start = Instant::now();
    let mut tally = T::default();
    let mut in_flight = JoinSet::new();
    let count = usize::try_from(limits.requests).unwrap_or(usize::MAX);
    for at in schedule.take(count).take_while(|at| *at < limits.duration) {
        let due = start + at;
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.join_next() => record_task(&mut tally, done),
                () = tokio::time::sleep_until(due) => break,
            }
        }
        if in_flight.len() >= max_in_flight {
            tally.fail("dropped");
            continue;
        }
        let mut probe = probe.clone();
        in_flight.spawn(async move { probe.send(due).await });
    }
    while let Some(done) = in_flight.join_next().await {
        record_task(&mut tally, done);
    }
    Measured {
        tally,
        elapsed: start.elapsed(),
    }
}

fn record_task<T: Tally>(tally: &mut T, done: Result<T::Sample, JoinError>) {
    match done {
        Ok(sample) => tally.observe(sample),
        Err(e) => tally.fail(failed_task(&e)),
    }
}

fn failed_task(e: &JoinError) -> &'static str {
    if e.is_panic() { "panic" } else { "cancelled" }
}
