//! The executor: one thread per model version that owns the libtorch module and its
//! request queue, forms batches and runs them. libtorch never runs on the async runtime.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use modelplane_fair::{FairQueue, Fairness, Flow, Pushed};
use tokio::sync::oneshot;

use super::policy::{Batchable, dispatch_wait, take_batch};
use super::run::{batch_input, output_data, output_name, split_outputs, warm_up};
use crate::error::InferError;
use crate::metrics::VersionMetrics;
use crate::model::{Backend, Signature};
use crate::tensor::TensorData;

/// The answer to one job: its outputs in signature order, or why it failed.
pub type JobResult = Result<Vec<TensorData>, InferError>;

/// One request waiting for a forward.
pub struct Job {
    /// Inputs in signature order.
    pub inputs: Vec<TensorData>,
    /// Rows on dimension 0 (1 when the model is not batched).
    pub rows: u64,
    /// When the job entered the queue.
    pub enqueued: Instant,
    /// After this the job is answered with a deadline error and never runs.
    pub deadline: Instant,
    /// Where the answer goes; a closed receiver means the client went away.
    pub reply: oneshot::Sender<JobResult>,
    /// Its tenant's flow in the fair queue, and how its rows are charged.
    pub fair: Fairness,
}

impl Batchable for Job {
    fn rows(&self) -> u64 {
        self.rows
    }

    fn compatible(&self, other: &Self) -> bool {
        self.inputs.len() == other.inputs.len()
            && self
                .inputs
                .iter()
                .zip(&other.inputs)
                .all(|(a, b)| a.datatype == b.datatype && a.shape.get(1..) == b.shape.get(1..))
    }

    fn flow(&self) -> &Flow {
        &self.fair.flow
    }

    fn cost(&self) -> u64 {
        self.fair.input_cost(self.rows)
    }
}

/// How an executor forms batches.
#[derive(Clone, Debug)]
pub struct BatchSettings {
    /// Most rows per forward; 1 runs every request alone.
    pub max_batch_size: u64,
    /// How long an idle model waits for a partial batch.
    pub max_queue_delay: Duration,
    /// Forwards run on zero inputs before the version reports ready.
    pub warmup_iterations: u32,
    /// libtorch intra-op threads of the executor thread.
    pub intra_op_threads: usize,
}

/// Loads a model on the executor thread.
pub type Loader = Box<dyn FnOnce() -> Result<(Box<dyn Backend>, Signature), String> + Send>;

/// The async side of an executor: submits jobs to its thread.
///
/// Dropping it closes the queue: the thread finishes the jobs already queued, then
/// exits and frees the model.
pub struct Executor {
    jobs: Sender<Job>,
    queued: Arc<AtomicUsize>,
    capacity: Arc<AtomicUsize>,
    metrics: VersionMetrics,
}

impl Executor {
    /// Starts a thread that loads the model, warms it up and then serves; resolves
    /// with the completed signature once the version is ready.
    pub async fn start(
        thread_name: String,
        settings: BatchSettings,
        metrics: VersionMetrics,
        load: Loader,
    ) -> Result<(Self, Signature), String> {
        let (jobs, receiver) = mpsc::channel();
        let (ready_tx, ready_rx) = oneshot::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let worker_queued = Arc::clone(&queued);
        let capacity = Arc::new(AtomicUsize::new(1));
        let worker_capacity = Arc::clone(&capacity);
        let worker_metrics = metrics.clone();
        std::thread::Builder::new()
            .name(thread_name)
            .spawn(move || {
                let _no_grad = tch::no_grad_guard();
                // OpenMP thread counts are per calling thread: set them on the
                // thread that runs forward, not only where the process started.
                tch::set_num_threads(i32::try_from(settings.intra_op_threads).unwrap_or(1));
                let loaded = load().and_then(|(backend, signature)| {
                    let signature =
                        warm_up(backend.as_ref(), &signature, settings.warmup_iterations)?;
                    Ok((backend, signature))
                });
                let (backend, signature) = match loaded {
                    Ok(loaded) => loaded,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                if ready_tx.send(Ok(signature.clone())).is_ok() {
                    let worker = Worker {
                        receiver,
                        pending: FairQueue::new(1),
                        capacity: worker_capacity,
                        backend,
                        signature,
                        settings,
                        queued: worker_queued,
                        metrics: worker_metrics,
                    };
                    worker.run();
                }
            })
            .map_err(|err| format!("cannot start executor thread: {err}"))?;
        let signature = ready_rx
            .await
            .map_err(|_| "executor thread died while loading".to_owned())??;
        Ok((
            Self {
                jobs,
                queued,
                capacity,
                metrics,
            },
            signature,
        ))
    }

    /// Queues a job in the fair queue of at most `max_queue` jobs. The executor thread
    /// places it: when the queue is full it refuses the job, or sheds another tenant's
    /// newest (the lowest band first, then the flow holding the most), answering the
    /// one left out with [`InferError::Overloaded`]. Beyond twice `max_queue` jobs not
    /// yet placed (a burst while a forward runs) it is refused here.
    pub fn submit(&self, job: Job, max_queue: usize) -> Result<(), InferError> {
        self.capacity.store(max_queue.max(1), Ordering::Release);
        let before = self.queued.fetch_add(1, Ordering::AcqRel);
        if before >= max_queue.saturating_mul(2) {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(InferError::Overloaded(format!(
                "queue is full ({max_queue} requests waiting)"
            )));
        }
        self.metrics.queue_length.set(gauge_value(before + 1));
        self.jobs.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            InferError::NotReady("model version is shutting down".to_owned())
        })
    }
}

fn gauge_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The thread side: owns the model and the pending jobs.
struct Worker {
    receiver: Receiver<Job>,
    pending: FairQueue<Job>,
    capacity: Arc<AtomicUsize>,
    backend: Box<dyn Backend>,
    signature: Signature,
    settings: BatchSettings,
    queued: Arc<AtomicUsize>,
    metrics: VersionMetrics,
}

/// How long an idle executor keeps polling its queue (yielding the core between polls)
/// before it blocks. A request that follows closely (a client at concurrency 1 sends its
/// next one a loopback round trip after the answer) then finds the thread awake and the
/// model's weights still in cache, instead of paying a futex wake-up and cold caches.
const IDLE_SPIN: Duration = Duration::from_micros(200);

impl Worker {
    fn run(mut self) {
        loop {
            if self.pending.is_empty() {
                match self.next_job() {
                    Some(job) => self.place(job),
                    None => return,
                }
            }
            self.drain_channel();
            self.wait_for_batch();
            self.answer_expired(Instant::now());
            let batch = take_batch(&mut self.pending, self.settings.max_batch_size);
            if batch.is_empty() {
                continue;
            }
            let left = self.queued.fetch_sub(batch.len(), Ordering::AcqRel) - batch.len();
            self.metrics.queue_length.set(gauge_value(left));
            self.execute(batch);
        }
    }

    /// The next job: polled for [`IDLE_SPIN`], then waited for; `None` once the queue
    /// is closed and empty.
    fn next_job(&self) -> Option<Job> {
        let spin_until = Instant::now() + IDLE_SPIN;
        while Instant::now() < spin_until {
            match self.receiver.try_recv() {
                Ok(job) => return Some(job),
                Err(TryRecvError::Disconnected) => return None,
                Err(TryRecvError::Empty) => std::thread::yield_now(),
            }
        }
        self.receiver.recv().ok()
    }

    fn drain_channel(&mut self) {
        loop {
            match self.receiver.try_recv() {
                Ok(job) => self.place(job),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => return,
            }
        }
    }

    /// Puts a job in the fair queue; a job left out (it, or another tenant's newest
    /// shed for it) is answered at once.
    fn place(&mut self, job: Job) {
        let capacity = self.capacity.load(Ordering::Acquire);
        self.pending.set_capacity(capacity);
        let flow = job.fair.flow.clone();
        let (left_out, why) = match self.pending.push(&flow, job) {
            Pushed::Queued => return,
            Pushed::Shed(job) => (
                job,
                "shed: the queue is full and a request of a higher band or a tenant \
                 holding fewer places took this one's place",
            ),
            Pushed::Refused(job) => (job, "the queue is full"),
        };
        let _ = left_out.reply.send(Err(InferError::Overloaded(format!(
            "{why} ({capacity} requests waiting, limits.maxQueue)"
        ))));
        let left = self.queued.fetch_sub(1, Ordering::AcqRel) - 1;
        self.metrics.queue_length.set(gauge_value(left));
    }

    /// Waits (bounded by the queue delay) for more rows while a batch is partial.
    fn wait_for_batch(&mut self) {
        loop {
            let Some(oldest) = self.pending.iter().map(|job| job.enqueued).min() else {
                return;
            };
            let rows = self.pending.iter().map(|job| job.rows).sum();
            let wait = dispatch_wait(
                oldest,
                Instant::now(),
                self.settings.max_queue_delay,
                rows,
                self.settings.max_batch_size,
            );
            let Some(wait) = wait else { return };
            match self.receiver.recv_timeout(wait) {
                Ok(job) => self.place(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Answers jobs whose deadline passed (they never reach the model) and drops
    /// jobs whose client went away.
    fn answer_expired(&mut self, now: Instant) {
        let removed = self
            .pending
            .drain_where(|job| job.reply.is_closed() || job.deadline <= now);
        if removed.is_empty() {
            return;
        }
        let count = removed.len();
        for job in removed {
            if job.reply.is_closed() {
                continue;
            }
            let waited = now.duration_since(job.enqueued);
            let err =
                format!("deadline exceeded after {waited:?} in the queue; the request did not run");
            let _ = job.reply.send(Err(InferError::DeadlineExceeded(err)));
        }
        let left = self.queued.fetch_sub(count, Ordering::AcqRel) - count;
        self.metrics.queue_length.set(gauge_value(left));
    }

    fn execute(&mut self, batch: Vec<Job>) {
        let started = Instant::now();
        for job in &batch {
            self.metrics
                .queue_duration
                .observe(started.duration_since(job.enqueued).as_secs_f64());
        }
        let rows: Vec<u64> = batch.iter().map(|job| job.rows).collect();
        let result = self.forward(&batch, &rows);
        self.metrics
            .compute_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .batch_size
            .observe(rows.iter().sum::<u64>() as f64);
        match result {
            Ok(per_job) => {
                for (job, outputs) in batch.into_iter().zip(per_job) {
                    let _ = job.reply.send(Ok(outputs));
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "forward failed");
                for job in batch {
                    let _ = job
                        .reply
                        .send(Err(InferError::Internal(format!("forward failed: {err}"))));
                }
            }
        }
    }

    fn forward(&self, batch: &[Job], rows: &[u64]) -> Result<Vec<Vec<TensorData>>, String> {
        let device = self.backend.device();
        let inputs = (0..self.signature.inputs.len())
            .map(|index| {
                let parts: Vec<&TensorData> = batch.iter().map(|job| &job.inputs[index]).collect();
                batch_input(&parts, device)
            })
            .collect::<Result<Vec<_>, String>>()?;
        let outputs = self.backend.forward(&inputs)?;
        let outputs = outputs
            .iter()
            .enumerate()
            .map(|(index, tensor)| output_data(output_name(&self.signature, index), tensor))
            .collect::<Result<Vec<_>, String>>()?;
        split_outputs(outputs, rows)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use bytes::Bytes;

    use super::*;
    use crate::metrics::Metrics;
    use crate::model::TensorSpec;
    use crate::tensor::DataType;

    /// Doubles its input after an optional pause, counting forwards.
    struct Doubler {
        forwards: Arc<AtomicUsize>,
        pause: Duration,
    }

    impl Backend for Doubler {
        fn forward(&self, inputs: &[tch::Tensor]) -> Result<Vec<tch::Tensor>, String> {
            self.forwards.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(self.pause);
            Ok(vec![&inputs[0] * 2.0])
        }
        fn device(&self) -> tch::Device {
            tch::Device::Cpu
        }
    }

    async fn start(
        max_batch_size: u64,
        delay: Duration,
        pause: Duration,
    ) -> (Executor, Arc<AtomicUsize>) {
        let forwards = Arc::new(AtomicUsize::new(0));
        let backend = Doubler {
            forwards: Arc::clone(&forwards),
            pause,
        };
        let signature = Signature {
            inputs: vec![TensorSpec {
                name: "x".into(),
                datatype: DataType::Fp32,
                shape: vec![-1, 2],
            }],
            outputs: Vec::new(),
        };
        let settings = BatchSettings {
            max_batch_size,
            max_queue_delay: delay,
            warmup_iterations: 1,
            intra_op_threads: 1,
        };
        let metrics = Metrics::new().version("m", "1");
        let loader: Loader =
            Box::new(move || Ok((Box::new(backend) as Box<dyn Backend>, signature)));
        let (executor, signature) = Executor::start("test".into(), settings, metrics, loader)
            .await
            .expect("starts");
        assert_eq!(
            signature.outputs[0].name, "output__0",
            "outputs are probed at warm-up"
        );
        assert_eq!(signature.outputs[0].shape, [-1, 2]);
        forwards.store(0, Ordering::SeqCst);
        (executor, forwards)
    }

    fn job(value: f32, deadline: Instant) -> (Job, oneshot::Receiver<JobResult>) {
        let (reply, answer) = oneshot::channel();
        let data: Vec<u8> = [value, value]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let input = TensorData {
            name: "x".into(),
            datatype: DataType::Fp32,
            shape: vec![1, 2],
            data: Bytes::from(data),
        };
        (
            Job {
                inputs: vec![input],
                rows: 1,
                enqueued: Instant::now(),
                deadline,
                reply,
                fair: Fairness::default(),
            },
            answer,
        )
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn expired_jobs_are_answered_without_running() {
        let (executor, forwards) = start(4, Duration::ZERO, Duration::ZERO).await;
        let (expired, answer) = job(1.0, Instant::now());
        executor.submit(expired, 8).expect("queued");
        let result = answer.await.expect("answered");
        assert!(
            matches!(result, Err(InferError::DeadlineExceeded(_))),
            "{result:?}"
        );
        assert_eq!(forwards.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn queued_jobs_run_as_one_batch_and_get_their_own_rows_back() {
        let (executor, forwards) = start(4, Duration::from_millis(200), Duration::ZERO).await;
        let answers: Vec<_> = (1..=4)
            .map(|i| {
                let (job, answer) = job(i as f32, later());
                executor.submit(job, 8).expect("queued");
                answer
            })
            .collect();
        for (i, answer) in answers.into_iter().enumerate() {
            let outputs = answer.await.expect("answered").expect("ok");
            let expected: Vec<u8> = [2.0 * (i + 1) as f32; 2]
                .iter()
                .flat_map(|v| v.to_le_bytes())
                .collect();
            assert_eq!(outputs[0].shape, [1, 2]);
            assert_eq!(outputs[0].data.as_ref(), expected);
        }
        assert_eq!(
            forwards.load(Ordering::SeqCst),
            1,
            "four rows fill one batch of four"
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_new_jobs() {
        let (executor, _) = start(1, Duration::ZERO, Duration::from_millis(300)).await;
        let mut answers = Vec::new();
        let mut refused = 0;
        for _ in 0..4 {
            let (job, answer) = job(1.0, later());
            match executor.submit(job, 1) {
                Ok(()) => answers.push(answer),
                Err(InferError::Overloaded(_)) => refused += 1,
                Err(other) => panic!("{other}"),
            }
        }
        for answer in answers {
            let result = answer.await.expect("answered");
            refused += usize::from(matches!(result, Err(InferError::Overloaded(_))));
        }
        assert!(
            refused >= 1,
            "a slow model and a queue of one refuse some of four quick jobs"
        );
    }

    #[tokio::test]
    async fn beyond_twice_the_queue_unplaced_jobs_are_refused_at_once() {
        let (executor, _) = start(1, Duration::ZERO, Duration::from_millis(300)).await;
        let mut refused = 0;
        let mut answers = Vec::new();
        for _ in 0..8 {
            let (job, answer) = job(1.0, later());
            answers.push(answer);
            refused += usize::from(matches!(
                executor.submit(job, 2),
                Err(InferError::Overloaded(_))
            ));
        }
        assert!(
            refused >= 3,
            "at most 4 (twice maxQueue) wait unplaced: {refused}"
        );
    }

    #[tokio::test]
    async fn a_full_queue_sheds_the_flooding_tenant_for_another() {
        let (executor, _) = start(1, Duration::ZERO, Duration::from_millis(200)).await;
        let tenant = |name: &str| Fairness {
            flow: Flow::new(0, name, 1),
            ..Fairness::default()
        };
        let mut flood = Vec::new();
        for _ in 0..5 {
            let (mut job, answer) = job(1.0, later());
            job.fair = tenant("flood");
            executor.submit(job, 4).expect("placed");
            flood.push(answer);
        }
        let (mut calm, calm_answer) = job(2.0, later());
        calm.fair = tenant("calm");
        executor.submit(calm, 4).expect("placed");
        assert!(
            calm_answer.await.expect("answered").is_ok(),
            "the other tenant's request takes a flooding one's place"
        );
        let mut shed = 0;
        for answer in flood {
            shed += usize::from(matches!(
                answer.await.expect("answered"),
                Err(InferError::Overloaded(_))
            ));
        }
        assert!(shed >= 1, "the flood gave up a place");
    }
}
