//! Batching decisions as pure functions: which queued requests run together, and how
//! long an idle model waits for more.

use std::time::{Duration, Instant};

use modelplane_fair::{FairQueue, Flow};

/// A queued request as the batching policy sees it.
pub trait Batchable {
    /// Rows this request contributes on dimension 0.
    fn rows(&self) -> u64;
    /// Whether the two can be concatenated on dimension 0 (same datatypes and
    /// same non-batch dimensions, input by input).
    fn compatible(&self, other: &Self) -> bool;
    /// The flow (tenant) it is queued in.
    fn flow(&self) -> &Flow;
    /// What running it is charged to its flow, in weighted tokens.
    fn cost(&self) -> u64;
}

/// Takes the next batch from the fair queue, charging each request to its flow.
///
/// The request first in fair order always goes (even alone above `max_rows`: it runs
/// by itself); then, flow by flow in fair order and in arrival order within a flow,
/// every compatible request that still fits in `max_rows`. Incompatible requests keep
/// their place for a later batch. With one flow this is arrival order.
pub fn take_batch<T: Batchable>(pending: &mut FairQueue<T>, max_rows: u64) -> Vec<T> {
    let Some((key, head)) = pending.pop() else {
        return Vec::new();
    };
    pending.charge(&key, head.cost());
    let mut rows = head.rows();
    let mut batch = vec![head];
    while rows < max_rows {
        let first = &batch[0];
        let Some((key, next)) =
            pending.pop_where(|job| rows + job.rows() <= max_rows && first.compatible(job))
        else {
            break;
        };
        pending.charge(&key, next.cost());
        rows += next.rows();
        batch.push(next);
    }
    batch
}

/// How much longer an idle model should wait for a partial batch to fill; `None`
/// dispatches now.
///
/// Waiting only makes sense when a delay is configured and the queued rows do not
/// yet fill a batch; the oldest request never waits past `oldest + delay`.
pub fn dispatch_wait(
    oldest: Instant,
    now: Instant,
    delay: Duration,
    queued_rows: u64,
    max_rows: u64,
) -> Option<Duration> {
    if delay.is_zero() || queued_rows >= max_rows {
        return None;
    }
    (oldest + delay)
        .checked_duration_since(now)
        .filter(|left| !left.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Req {
        id: u32,
        rows: u64,
        width: i64,
        flow: Flow,
    }

    impl Batchable for Req {
        fn rows(&self) -> u64 {
            self.rows
        }
        fn compatible(&self, other: &Self) -> bool {
            self.width == other.width
        }
        fn flow(&self) -> &Flow {
            &self.flow
        }
        fn cost(&self) -> u64 {
            self.rows
        }
    }

    fn queue_of(reqs: &[(u32, u64, i64, &str)]) -> FairQueue<Req> {
        let mut queue = FairQueue::new(64);
        for &(id, rows, width, tenant) in reqs {
            let flow = Flow::new(0, tenant, 1);
            let req = Req {
                id,
                rows,
                width,
                flow: flow.clone(),
            };
            assert_eq!(queue.push(&flow, req), modelplane_fair::Pushed::Queued);
        }
        queue
    }

    fn queue(reqs: &[(u32, u64, i64)]) -> FairQueue<Req> {
        let reqs: Vec<_> = reqs.iter().map(|&(i, r, w)| (i, r, w, "")).collect();
        queue_of(&reqs)
    }

    fn ids(batch: &[Req]) -> Vec<u32> {
        batch.iter().map(|r| r.id).collect()
    }

    #[test]
    fn compatible_requests_fill_a_batch_in_arrival_order() {
        let mut pending = queue(&[(1, 1, 4), (2, 2, 4), (3, 1, 4), (4, 1, 4)]);
        assert_eq!(ids(&take_batch(&mut pending, 4)), [1, 2, 3]);
        assert_eq!(ids(&take_batch(&mut pending, 4)), [4]);
    }

    #[test]
    fn incompatible_requests_keep_their_place() {
        let mut pending = queue(&[(1, 1, 4), (2, 1, 8), (3, 1, 4), (4, 1, 8)]);
        assert_eq!(ids(&take_batch(&mut pending, 8)), [1, 3]);
        assert_eq!(ids(&take_batch(&mut pending, 8)), [2, 4]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_request_larger_than_the_batch_runs_alone() {
        let mut pending = queue(&[(1, 10, 4), (2, 1, 4)]);
        assert_eq!(ids(&take_batch(&mut pending, 4)), [1]);
        assert_eq!(ids(&take_batch(&mut pending, 4)), [2]);
    }

    #[test]
    fn a_request_that_does_not_fit_is_skipped_for_a_smaller_one() {
        let mut pending = queue(&[(1, 3, 4), (2, 2, 4), (3, 1, 4)]);
        assert_eq!(ids(&take_batch(&mut pending, 4)), [1, 3]);
    }

    #[test]
    fn empty_queue_gives_an_empty_batch() {
        assert!(take_batch::<Req>(&mut FairQueue::new(4), 4).is_empty());
    }

    #[test]
    fn a_flooding_tenant_does_not_fill_every_batch() {
        // a queued 8 rows first, b 2 after: b's rows still make the first batch of 4
        // once a has been charged for its first two.
        let mut pending = queue_of(&[
            (1, 1, 4, "a"),
            (2, 1, 4, "a"),
            (3, 1, 4, "a"),
            (4, 1, 4, "a"),
            (5, 1, 4, "a"),
            (6, 1, 4, "b"),
            (7, 1, 4, "b"),
        ]);
        let first = ids(&take_batch(&mut pending, 4));
        assert!(first.contains(&6) && first.contains(&7), "{first:?}");
    }

    #[test]
    fn no_delay_dispatches_at_once() {
        let now = Instant::now();
        assert_eq!(dispatch_wait(now, now, Duration::ZERO, 1, 8), None);
    }

    #[test]
    fn partial_batch_waits_until_the_oldest_request_reaches_the_delay() {
        let start = Instant::now();
        let delay = Duration::from_millis(5);
        let now = start + Duration::from_millis(2);
        assert_eq!(
            dispatch_wait(start, now, delay, 3, 8),
            Some(Duration::from_millis(3))
        );
        assert_eq!(dispatch_wait(start, start + delay, delay, 3, 8), None);
        assert_eq!(dispatch_wait(start, start + delay * 2, delay, 3, 8), None);
    }

    #[test]
    fn full_batch_does_not_wait() {
        let now = Instant::now();
        assert_eq!(
            dispatch_wait(now, now, Duration::from_millis(5), 8, 8),
            None
        );
    }
}
