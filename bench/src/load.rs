//! The two ways of driving load: a closed loop of fixed concurrency and an
//! open loop at a fixed rate. Both stop at a request count or a time limit,
//! whichever comes first, and wait for the requests in flight.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::client::Client;
use crate::report::{Outcome, Recorder};
use crate::schedule::Schedule;

/// When a run stops issuing requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Most requests issued.
    pub requests: u64,
    /// Latest time, from the start, at which a request is issued.
    pub duration: Duration,
}

/// What a loop measured and how long it took, in-flight requests included.
#[derive(Debug)]
pub struct Measured {
    pub recorder: Recorder,
    pub elapsed: Duration,
}

/// `concurrency` workers, each sending its next request as soon as the last
/// is answered. Latency runs from send to the last byte of the answer.
pub async fn closed_loop(client: &Client, concurrency: usize, limits: Limits) -> Measured {
    let start = Instant::now();
    let deadline = start + limits.duration;
    let issued = Arc::new(AtomicU64::new(0));
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let mut client = client.clone();
        let issued = Arc::clone(&issued);
        workers.spawn(async move {
            let mut recorder = Recorder::new();
            while issued.fetch_add(1, Ordering::Relaxed) < limits.requests
                && Instant::now() < deadline
            {
                let sent = Instant::now();
                let outcome = client.infer().await;
                recorder.record(outcome, sent.elapsed());
            }
            recorder
        });
    }
    let mut recorder = Recorder::new();
    while let Some(done) = workers.join_next().await {
        match done {
            Ok(worker) => recorder.merge(&worker),
            Err(e) => recorder.record(failed_task(&e), Duration::ZERO),
        }
    }
    Measured {
        recorder,
        elapsed: start.elapsed(),
    }
}

/// Sends requests at the times `schedule` gives, whether or not earlier ones
/// were answered. Latency runs from the scheduled send time, so a server that
/// falls behind is charged for the wait (no coordinated omission). When
/// `max_in_flight` requests are outstanding, a due request is not sent and
/// counts as `dropped`.
pub async fn open_loop(
    client: &Client,
    schedule: Schedule,
    max_in_flight: usize,
    limits: Limits,
) -> Measured {
    let start = Instant::now();
    let mut recorder = Recorder::new();
    let mut in_flight = JoinSet::new();
    let count = usize::try_from(limits.requests).unwrap_or(usize::MAX);
    for at in schedule.take(count).take_while(|at| *at < limits.duration) {
        let due = start + at;
        loop {
            tokio::select! {
                biased;
                Some(done) = in_flight.join_next() => record_task(&mut recorder, done),
                () = tokio::time::sleep_until(due) => break,
            }
        }
        if in_flight.len() >= max_in_flight {
            recorder.record(Outcome::Failed("dropped".into()), Duration::ZERO);
            continue;
        }
        let mut client = client.clone();
        in_flight.spawn(async move {
            let outcome = client.infer().await;
            (outcome, due.elapsed())
        });
    }
    while let Some(done) = in_flight.join_next().await {
        record_task(&mut recorder, done);
    }
    Measured {
        recorder,
        elapsed: start.elapsed(),
    }
}

fn record_task(recorder: &mut Recorder, done: Result<(Outcome, Duration), JoinError>) {
    match done {
        Ok((outcome, latency)) => recorder.record(outcome, latency),
        Err(e) => recorder.record(failed_task(&e), Duration::ZERO),
    }
}

fn failed_task(e: &JoinError) -> Outcome {
    Outcome::Failed(if e.is_panic() { "panic" } else { "cancelled" }.into())
}
