//! The timeline of one streamed answer: when each piece of text arrived, and
//! what the server said it cost in tokens.

use std::time::{Duration, Instant};

/// Token counts the server reported for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// One message of a streamed answer, whatever the protocol: an SSE chunk or a
/// `ModelStreamInferResponse`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Piece {
    /// Generated text in this message; empty for role-only or usage-only chunks.
    pub text: String,
    /// Token counts, present on the message that carries them (the last one).
    pub usage: Option<Usage>,
    /// The server marked this message as the request's last.
    pub last: bool,
}

/// Collects the arrival times of one request's pieces.
#[derive(Debug)]
pub struct Trace {
    issued: Instant,
    first_text: Option<Instant>,
    last_text: Option<Instant>,
    gaps: Vec<Duration>,
    chunks: u64,
    usage: Option<Usage>,
}

impl Trace {
    /// A request issued at `issued`: the send time in a closed loop, the
    /// scheduled time in an open loop (so queueing is charged to it).
    pub fn new(issued: Instant) -> Self {
        Self {
            issued,
            first_text: None,
            last_text: None,
            gaps: Vec::new(),
            chunks: 0,
            usage: None,
        }
    }

    /// Notes a piece received at `at`. Only pieces with text are tokens on the
    /// client's clock; the usage of the last one wins.
    pub fn piece(&mut self, piece: &Piece, at: Instant) {
        if let Some(usage) = piece.usage {
            self.usage = Some(usage);
        }
        if piece.text.is_empty() {
            return;
        }
        self.chunks += 1;
        match self.last_text {
            None => self.first_text = Some(at),
            Some(previous) => self.gaps.push(at.saturating_duration_since(previous)),
        }
        self.last_text = Some(at);
    }

    /// The request ended (stream closed after its last piece) at `at`.
    pub fn finish(self, at: Instant) -> Completed {
        Completed {
            ttft: self
                .first_text
                .map(|t| t.saturating_duration_since(self.issued)),
            gaps: self.gaps,
            e2e: at.saturating_duration_since(self.issued),
            chunks: self.chunks,
            usage: self.usage,
        }
    }
}

/// What one successful streamed request measured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// Time to the first piece with text; `None` when no text came (e.g. the
    /// first token was end-of-sequence).
    pub ttft: Option<Duration>,
    /// Gaps between consecutive pieces with text (inter-token latency when
    /// the server sends one token per piece).
    pub gaps: Vec<Duration>,
    /// Time to the end of the stream.
    pub e2e: Duration,
    /// Pieces with text.
    pub chunks: u64,
    /// The server's token counts, when it sent them.
    pub usage: Option<Usage>,
}

impl Completed {
    /// Output tokens: the server's count, or the pieces with text when the
    /// server sent no usage (the report says how many requests that was).
    pub fn output_tokens(&self) -> u64 {
        self.usage.map_or(self.chunks, |u| u.completion_tokens)
    }

    /// Mean time per output token after the first: `(e2e − ttft) / (tokens − 1)`;
    /// `None` with fewer than two tokens.
    pub fn time_per_output_token(&self) -> Option<Duration> {
        let tokens = self.output_tokens();
        let ttft = self.ttft?;
        if tokens < 2 {
            return None;
        }
        let divisor = u32::try_from(tokens - 1).unwrap_or(u32::MAX);
        Some(self.e2e.saturating_sub(ttft) / divisor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn text(s: &str) -> Piece {
        Piece {
            text: s.into(),
            ..Piece::default()
        }
    }

    #[test]
    fn ttft_and_gaps_count_only_pieces_with_text() {
        let t0 = Instant::now();
        let mut trace = Trace::new(t0);
        trace.piece(&Piece::default(), t0 + ms(5)); // role-only chunk
        trace.piece(&text("Hel"), t0 + ms(40));
        trace.piece(&text("lo"), t0 + ms(60));
        trace.piece(&text("!"), t0 + ms(90));
        let usage = Usage {
            prompt_tokens: 7,
            completion_tokens: 3,
        };
        trace.piece(
            &Piece {
                usage: Some(usage),
                last: true,
                ..Piece::default()
            },
            t0 + ms(95),
        );
        let done = trace.finish(t0 + ms(100));
        assert_eq!(done.ttft, Some(ms(40)));
        assert_eq!(done.gaps, vec![ms(20), ms(30)]);
        assert_eq!(done.e2e, ms(100));
        assert_eq!(done.chunks, 3);
        assert_eq!(done.usage, Some(usage));
    }

    #[test]
    fn output_tokens_come_from_usage_not_from_chunks() {
        let t0 = Instant::now();
        let mut trace = Trace::new(t0);
        trace.piece(&text("two tokens"), t0 + ms(1));
        trace.piece(
            &Piece {
                usage: Some(Usage {
                    prompt_tokens: 1,
                    completion_tokens: 2,
                }),
                ..Piece::default()
            },
            t0 + ms(2),
        );
        let done = trace.finish(t0 + ms(2));
        assert_eq!((done.chunks, done.output_tokens()), (1, 2));
    }

    #[test]
    fn without_usage_the_chunks_are_the_token_count() {
        let t0 = Instant::now();
        let mut trace = Trace::new(t0);
        for i in 1..=4 {
            trace.piece(&text("x"), t0 + ms(i));
        }
        assert_eq!(trace.finish(t0 + ms(5)).output_tokens(), 4);
    }

    #[test]
    fn time_per_output_token_excludes_the_first_token() {
        let done = Completed {
            ttft: Some(ms(100)),
            gaps: Vec::new(),
            e2e: ms(500),
            chunks: 5,
            usage: None,
        };
        assert_eq!(done.time_per_output_token(), Some(ms(100)));
        let one = Completed { chunks: 1, ..done };
        assert_eq!(one.time_per_output_token(), None);
    }

    #[test]
    fn a_stream_without_text_has_no_ttft() {
        let t0 = Instant::now();
        let done = Trace::new(t0).finish(t0 + ms(3));
        assert_eq!((done.ttft, done.chunks, done.e2e), (None, 0, ms(3)));
    }
}
