//! What a streaming run measured: time to first token, inter-token latency,
//! time per output token and end-to-end latency in HDR histograms, tokens
//! from the server's usage, errors by status; summarised as a report with
//! throughput and jitter (P99 − P50).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Tally;
use crate::report::{Mode, write_errors, write_heading};
use crate::stream::StreamSample;
use crate::stream::trace::Completed;

/// Longest time the histograms resolve; longer ones are clamped to it.
const MAX_NS: u64 = 600_000_000_000;

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_NS, 3).expect("constant histogram bounds are valid")
}

fn record(h: &mut Histogram<u64>, d: Duration) {
    let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
    h.saturating_record(nanos.max(1));
}

/// Samples of one worker (or, merged, of a run).
#[derive(Debug, Clone)]
pub struct StreamRecorder {
    ttft: Histogram<u64>,
    itl: Histogram<u64>,
    tpot: Histogram<u64>,
    e2e: Histogram<u64>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    output_tokens: u64,
    prompt_tokens: u64,
    chunks: u64,
    without_usage: u64,
    without_text: u64,
}

impl Default for StreamRecorder {
    fn default() -> Self {
        Self {
            ttft: histogram(),
            itl: histogram(),
            tpot: histogram(),
            e2e: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            output_tokens: 0,
            prompt_tokens: 0,
            chunks: 0,
            without_usage: 0,
            without_text: 0,
        }
    }
}

impl StreamRecorder {
    fn completed(&mut self, done: &Completed) {
        self.ok += 1;
        self.output_tokens += done.output_tokens();
        self.chunks += done.chunks;
        match done.usage {
            Some(usage) => self.prompt_tokens += usage.prompt_tokens,
            None => self.without_usage += 1,
        }
        match done.ttft {
            Some(ttft) => record(&mut self.ttft, ttft),
            None => self.without_text += 1,
        }
        for gap in &done.gaps {
            record(&mut self.itl, *gap);
        }
        if let Some(tpot) = done.time_per_output_token() {
            record(&mut self.tpot, tpot);
        }
        record(&mut self.e2e, done.e2e);
    }
}

impl Tally for StreamRecorder {
    type Sample = StreamSample;

    fn observe(&mut self, sample: StreamSample) {
        match sample {
            Ok(done) => self.completed(&done),
            Err(status) => self.fail(&status),
        }
    }

    fn fail(&mut self, status: &str) {
        *self.errors.entry(status.to_owned()).or_default() += 1;
    }

    fn absorb(&mut self, other: &Self) {
        for (mine, theirs) in [
            (&mut self.ttft, &other.ttft),
            (&mut self.itl, &other.itl),
            (&mut self.tpot, &other.tpot),
            (&mut self.e2e, &other.e2e),
        ] {
            mine.add(theirs).expect("histograms share one bound");
        }
        self.ok += other.ok;
        for (status, n) in &other.errors {
            *self.errors.entry(status.clone()).or_default() += n;
        }
        self.output_tokens += other.output_tokens;
        self.prompt_tokens += other.prompt_tokens;
        self.chunks += other.chunks;
        self.without_usage += other.without_usage;
        self.without_text += other.without_text;
    }
}

/// What a streaming run drove.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamScenario {
    pub label: String,
    /// `openai-completions`, `openai-chat` or `grpc-stream`.
    pub protocol: String,
    pub url: String,
    pub model: String,
    pub max_tokens: u32,
    pub temperature: f32,
    /// Distinct prompts, sent round-robin.
    pub prompts: usize,
    #[serde(flatten)]
    pub mode: Mode,
}

/// Percentiles of one measure, in milliseconds; all zero when nothing was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Millis {
    /// Values recorded.
    pub count: u64,
    pub mean: f64,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Millis {
    fn of(h: &Histogram<u64>) -> Self {
        let ms = |nanos: u64| nanos as f64 / 1e6;
        if h.is_empty() {
            return Self {
                count: 0,
                mean: 0.0,
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0,
            };
        }
        Self {
            count: h.len(),
            mean: h.mean() / 1e6,
            p50: ms(h.value_at_quantile(0.50)),
            p90: ms(h.value_at_quantile(0.90)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        }
    }

    /// P99 − P50.
    pub fn jitter(&self) -> f64 {
        self.p99 - self.p50
    }
}

/// Jitter of the two latencies that matter to a reader of a stream, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Jitter {
    /// P99 − P50 of time to first token.
    pub ttft_ms: f64,
    /// P99 − P50 of inter-token latency.
    pub itl_ms: f64,
}

/// The summary a streaming run prints and writes as JSON.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StreamReport {
    pub scenario: StreamScenario,
    /// Requests counted, successful or not (warm-up excluded).
    pub requests: u64,
    pub ok: u64,
    pub errors: BTreeMap<String, u64>,
    /// From the first send to the end of the last request in flight.
    pub elapsed_s: f64,
    /// Successful requests per second.
    pub throughput_rps: f64,
    /// Output tokens of successful requests (the server's usage counts).
    pub output_tokens: u64,
    pub output_tokens_per_s: f64,
    pub prompt_tokens: u64,
    /// Text chunks received (pieces with text).
    pub chunks: u64,
    /// Successful requests whose server sent no usage: their output tokens
    /// are their chunks and their prompt tokens are missing.
    pub requests_without_usage: u64,
    /// Successful requests that streamed no text (so have no TTFT).
    pub requests_without_text: u64,
    /// Time to first token, from issue to the first chunk with text.
    pub ttft_ms: Millis,
    /// Inter-token latency: gaps between consecutive text chunks.
    pub itl_ms: Millis,
    /// Time per output token of each request: (e2e − ttft) / (tokens − 1).
    pub tpot_ms: Millis,
    /// End-to-end latency, from issue to the end of the stream.
    pub e2e_ms: Millis,
    pub jitter: Jitter,
}

impl StreamReport {
    /// Summarises `recorder` over `elapsed`.
    pub fn new(scenario: StreamScenario, recorder: &StreamRecorder, elapsed: Duration) -> Self {
        let elapsed_s = elapsed.as_secs_f64();
        let per_s = |n: u64| {
            if elapsed_s > 0.0 {
                n as f64 / elapsed_s
            } else {
                0.0
            }
        };
        let ttft_ms = Millis::of(&recorder.ttft);
        let itl_ms = Millis::of(&recorder.itl);
        Self {
            scenario,
            requests: recorder.ok + recorder.errors.values().sum::<u64>(),
            ok: recorder.ok,
            errors: recorder.errors.clone(),
            elapsed_s,
            throughput_rps: per_s(recorder.ok),
            output_tokens: recorder.output_tokens,
            output_tokens_per_s: per_s(recorder.output_tokens),
            prompt_tokens: recorder.prompt_tokens,
            chunks: recorder.chunks,
            requests_without_usage: recorder.without_usage,
            requests_without_text: recorder.without_text,
            ttft_ms,
            itl_ms,
            tpot_ms: Millis::of(&recorder.tpot),
            e2e_ms: Millis::of(&recorder.e2e),
            jitter: Jitter {
                ttft_ms: ttft_ms.jitter(),
                itl_ms: itl_ms.jitter(),
            },
        }
    }
}

fn line(f: &mut fmt::Formatter<'_>, name: &str, m: &Millis) -> fmt::Result {
    writeln!(
        f,
        "  {name:<5} ms: p50 {:.1}  p90 {:.1}  p99 {:.1}  max {:.1}  (mean {:.1}, n {})",
        m.p50, m.p90, m.p99, m.max, m.mean, m.count
    )
}

impl fmt::Display for StreamReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = &self.scenario;
        write_heading(f, &s.label, &s.protocol, &s.url, &s.mode)?;
        writeln!(
            f,
            "  model {}, {} prompts, max_tokens {}, temperature {}",
            s.model, s.prompts, s.max_tokens, s.temperature
        )?;
        writeln!(
            f,
            "  {} requests ({} ok) in {:.2} s: {:.2} req/s, {:.1} output tokens/s ({} tokens, {} chunks)",
            self.requests,
            self.ok,
            self.elapsed_s,
            self.throughput_rps,
            self.output_tokens_per_s,
            self.output_tokens,
            self.chunks
        )?;
        line(f, "TTFT", &self.ttft_ms)?;
        line(f, "ITL", &self.itl_ms)?;
        line(f, "TPOT", &self.tpot_ms)?;
        line(f, "E2E", &self.e2e_ms)?;
        writeln!(
            f,
            "  jitter (p99 − p50) ms: TTFT {:.1}, ITL {:.1}",
            self.jitter.ttft_ms, self.jitter.itl_ms
        )?;
        if self.requests_without_usage > 0 {
            writeln!(
                f,
                "  {} requests had no usage from the server: their tokens are counted as chunks",
                self.requests_without_usage
            )?;
        }
        write_errors(f, &self.errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::trace::Usage;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn scenario() -> StreamScenario {
        StreamScenario {
            label: "t".into(),
            protocol: "openai-chat".into(),
            url: "http://127.0.0.1:1".into(),
            model: "m".into(),
            max_tokens: 8,
            temperature: 0.0,
            prompts: 3,
            mode: Mode::Closed { concurrency: 2 },
        }
    }

    fn done(ttft: u64, gaps: &[u64], tokens: u64) -> StreamSample {
        let e2e = ttft + gaps.iter().sum::<u64>();
        Ok(Completed {
            ttft: Some(ms(ttft)),
            gaps: gaps.iter().map(|g| ms(*g)).collect(),
            e2e: ms(e2e),
            chunks: gaps.len() as u64 + 1,
            usage: Some(Usage {
                prompt_tokens: 10,
                completion_tokens: tokens,
            }),
        })
    }

    fn close(got: f64, want: f64) -> bool {
        (got - want).abs() <= want * 0.002
    }

    #[test]
    fn percentiles_and_jitter_of_ttft_and_itl() {
        let mut r = StreamRecorder::default();
        // TTFT 1..=100 ms; each request has gaps of 10 ms, and one has a 500 ms stall.
        for t in 1..=100 {
            r.observe(done(t, &[10, 10], 3));
        }
        r.observe(done(50, &[500], 2));
        let report = StreamReport::new(scenario(), &r, Duration::from_secs(10));
        assert!(close(report.ttft_ms.p50, 50.0), "{:?}", report.ttft_ms);
        assert!(close(report.ttft_ms.p99, 99.0), "{:?}", report.ttft_ms);
        assert!(close(report.jitter.ttft_ms, 49.0), "{:?}", report.jitter);
        assert!(close(report.itl_ms.p50, 10.0), "{:?}", report.itl_ms);
        assert!(close(report.itl_ms.max, 500.0), "{:?}", report.itl_ms);
        assert_eq!(report.itl_ms.count, 201);
        assert!(close(report.tpot_ms.p50, 10.0), "{:?}", report.tpot_ms);
    }

    #[test]
    fn throughput_counts_usage_tokens_of_successful_requests() {
        let mut r = StreamRecorder::default();
        for _ in 0..4 {
            r.observe(done(5, &[1, 1], 25)); // 3 chunks, 25 tokens by usage
        }
        r.observe(Err("503".into()));
        let report = StreamReport::new(scenario(), &r, Duration::from_secs(2));
        assert_eq!((report.requests, report.ok), (5, 4));
        assert_eq!(report.output_tokens, 100);
        assert_eq!(report.chunks, 12);
        assert_eq!(report.prompt_tokens, 40);
        assert!((report.output_tokens_per_s - 50.0).abs() < 1e-9);
        assert!((report.throughput_rps - 2.0).abs() < 1e-9);
        assert_eq!(report.errors["503"], 1);
    }

    #[test]
    fn requests_without_usage_or_text_are_counted_apart() {
        let mut r = StreamRecorder::default();
        r.observe(Ok(Completed {
            ttft: None,
            gaps: vec![],
            e2e: ms(3),
            chunks: 0,
            usage: None,
        }));
        let report = StreamReport::new(scenario(), &r, Duration::from_secs(1));
        assert_eq!(
            (
                report.ok,
                report.requests_without_usage,
                report.requests_without_text
            ),
            (1, 1, 1)
        );
        assert_eq!(report.ttft_ms.count, 0);
        assert_eq!(report.e2e_ms.count, 1);
    }

    #[test]
    fn merged_workers_add_up() {
        let mut a = StreamRecorder::default();
        let mut b = StreamRecorder::default();
        a.observe(done(10, &[5], 2));
        b.observe(done(30, &[5, 5], 3));
        b.fail("dropped");
        a.absorb(&b);
        let report = StreamReport::new(scenario(), &a, Duration::from_secs(1));
        assert_eq!(
            (report.ok, report.output_tokens, report.ttft_ms.count),
            (2, 5, 2)
        );
        assert_eq!(report.errors["dropped"], 1);
        assert!(close(report.ttft_ms.max, 30.0));
    }

    #[test]
    fn json_report_has_the_measures_and_a_flat_mode() {
        let mut r = StreamRecorder::default();
        r.observe(done(10, &[5], 2));
        let v = serde_json::to_value(StreamReport::new(scenario(), &r, Duration::from_secs(1)))
            .unwrap();
        assert_eq!(v["scenario"]["mode"], "closed");
        assert_eq!(v["scenario"]["concurrency"], 2);
        for key in ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"] {
            assert!(v[key]["p99"].is_number(), "{key}");
        }
        assert!(v["jitter"]["ttft_ms"].is_number());
        let text = StreamReport::new(scenario(), &r, Duration::from_secs(1)).to_string();
        assert!(
            text.contains("output tokens/s") && text.contains("jitter"),
            "{text}"
        );
    }
}
