//! The scheduling policy: which rows the next iteration feeds to `step`, and in how
//! many calls. Pure: it sees the running sequences as plain numbers and returns a plan.
//!
//! Every iteration decodes one token for each sequence whose prompt is in the cache,
//! and advances prompts by chunks of at most `prefill_chunk` tokens within a
//! `max_batch_tokens` budget (decode rows count against it first, as in vLLM's
//! scheduler). Chunks exist to bound how long prompts stall running decodes: with
//! no decode running, a prompt is fed up to the whole budget at once, so a lone
//! request's first token costs one call, not one per chunk. Decode rows are not
//! padded to a chunk's length (contract §4): they go in their own `T = 1` call
//! unless the padding that mixing would cost is at most `mix_padding_tokens`.

use super::EngineSettings;

/// What the scheduler knows of one running sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SequenceView {
    /// Tokens already written to the sequence's cache slot.
    pub fed: u32,
    /// Prompt tokens; the sequence decodes once `fed >= prompt_len`.
    pub prompt_len: u32,
}

impl SequenceView {
    fn is_decoding(self) -> bool {
        self.fed >= self.prompt_len
    }
}

/// One row of a planned call: feed `len` tokens of `sequence` from position `start`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct PlannedRow {
    /// Index of the sequence in the slice given to [`plan`].
    pub sequence: usize,
    /// Position of the row's first token (= `fed`).
    pub start: u32,
    /// Tokens in the row.
    pub len: u32,
}

/// The rows of one `step` call.
pub(super) type Call = Vec<PlannedRow>;

/// The calls of the next iteration, decode call first; empty when nothing runs.
pub(super) fn plan(running: &[SequenceView], settings: &EngineSettings) -> Vec<Call> {
    let decode: Call = running
        .iter()
        .enumerate()
        .filter(|(_, view)| view.is_decoding())
        .map(|(sequence, view)| PlannedRow {
            sequence,
            start: view.fed,
            len: 1,
        })
        .collect();
    let prefill = plan_prefill(running, settings, decode.len());
    let longest = prefill.iter().map(|row| row.len).max().unwrap_or(1);
    let padding = u64::try_from(decode.len())
        .unwrap_or(u64::MAX)
        .saturating_mul(u64::from(longest - 1));
    match (decode.is_empty(), prefill.is_empty()) {
        (true, true) => Vec::new(),
        (false, true) => vec![decode],
        (true, false) => vec![prefill],
        (false, false) if padding <= u64::from(settings.mix_padding_tokens) => {
            let mut mixed = decode;
            mixed.extend(prefill);
            vec![mixed]
        }
        (false, false) => vec![decode, prefill],
    }
}

/// Prompt chunks in admission order within what the decode rows left of the budget.
/// The oldest prompt always advances by one chunk, so a batch full of decodes
/// cannot starve the requests still reading their prompt.
fn plan_prefill(running: &[SequenceView], settings: &EngineSettings, decode_rows: usize) -> Call {
    let chunk = if decode_rows == 0 {
        settings.max_batch_tokens.max(settings.prefill_chunk)
    } else {
        settings.prefill_chunk
    }
    .max(1);
    let decode_tokens = u32::try_from(decode_rows).unwrap_or(u32::MAX);
    let mut budget = settings.max_batch_tokens.saturating_sub(decode_tokens);
    let mut rows = Call::new();
    for (sequence, view) in running.iter().enumerate() {
        if view.is_decoding() {
            continue;
        }
        let wanted = chunk.min(view.prompt_len - view.fed);
        let len = if rows.is_empty() {
            wanted
        } else {
            wanted.min(budget)
        };
        if len == 0 {
            break;
        }
        budget = budget.saturating_sub(len);
        rows.push(PlannedRow {
            sequence,
            start: view.fed,
            len,
        });
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(
        prefill_chunk: u32,
        max_batch_tokens: u32,
        mix_padding_tokens: u32,
    ) -> EngineSettings {
        EngineSettings {
            prefill_chunk,
            max_batch_tokens,
            mix_padding_tokens,
            ..EngineSettings::default()
        }
    }

    fn view(fed: u32, prompt_len: u32) -> SequenceView {
        SequenceView { fed, prompt_len }
    }

    /// `(sequence, start, len)` of each row of each call.
    fn rows(calls: &[Call]) -> Vec<Vec<(usize, u32, u32)>> {
        calls
            .iter()
            .map(|call| call.iter().map(|r| (r.sequence, r.start, r.len)).collect())
            .collect()
    }

    #[test]
    fn plans_the_calls_of_an_iteration() {
        struct Case {
            name: &'static str,
            running: Vec<SequenceView>,
            settings: EngineSettings,
            calls: Vec<Vec<(usize, u32, u32)>>,
        }
        let cases = [
            Case {
                name: "nothing running, nothing to do",
                running: vec![],
                settings: settings(4, 64, 0),
                calls: vec![],
            },
            Case {
                name: "a short prompt is prefilled whole",
                running: vec![view(0, 3)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(0, 0, 3)]],
            },
            Case {
                name: "with no decode running a prompt takes the whole budget",
                running: vec![view(0, 100)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(0, 0, 64)]],
            },
            Case {
                name: "beside a decode a long prompt advances one chunk",
                running: vec![view(4, 10), view(3, 2)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(1, 3, 1)], vec![(0, 4, 4)]],
            },
            Case {
                name: "the last chunk is the prompt's rest",
                running: vec![view(8, 10), view(3, 2)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(1, 3, 1)], vec![(0, 8, 2)]],
            },
            Case {
                name: "decodes feed one token at their position",
                running: vec![view(7, 5), view(12, 3)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(0, 7, 1), (1, 12, 1)]],
            },
            Case {
                name: "decodes and a chunk run in separate calls, decode first",
                running: vec![view(7, 5), view(0, 10)],
                settings: settings(4, 64, 0),
                calls: vec![vec![(0, 7, 1)], vec![(1, 0, 4)]],
            },
            Case {
                name: "a chunk whose padding fits mix_padding_tokens joins the decode call",
                running: vec![view(7, 5), view(9, 8), view(0, 3)],
                settings: settings(4, 64, 4),
                calls: vec![vec![(0, 7, 1), (1, 9, 1), (2, 0, 3)]],
            },
            Case {
                name: "a chunk whose padding exceeds mix_padding_tokens does not",
                running: vec![view(7, 5), view(9, 8), view(0, 4)],
                settings: settings(4, 64, 5),
                calls: vec![vec![(0, 7, 1), (1, 9, 1)], vec![(2, 0, 4)]],
            },
            Case {
                name: "prompts share the budget in admission order",
                running: vec![view(0, 10), view(0, 10), view(0, 10)],
                settings: settings(4, 16, 0),
                calls: vec![vec![(0, 0, 10), (1, 0, 6)]],
            },
            Case {
                name: "with no decode running the chunk is never below prefill_chunk",
                running: vec![view(0, 10)],
                settings: settings(8, 2, 0),
                calls: vec![vec![(0, 0, 8)]],
            },
            Case {
                name: "decode rows count against the budget",
                running: vec![view(5, 2), view(6, 3), view(0, 10), view(0, 10)],
                settings: settings(4, 7, 0),
                calls: vec![vec![(0, 5, 1), (1, 6, 1)], vec![(2, 0, 4), (3, 0, 1)]],
            },
            Case {
                name: "the oldest prompt advances even when decodes use the whole budget",
                running: vec![view(5, 2), view(6, 3), view(0, 10), view(0, 10)],
                settings: settings(4, 2, 0),
                calls: vec![vec![(0, 5, 1), (1, 6, 1)], vec![(2, 0, 4)]],
            },
        ];
        for case in cases {
            assert_eq!(
                rows(&plan(&case.running, &case.settings)),
                case.calls,
                "{}",
                case.name
            );
        }
    }

    #[test]
    fn every_running_sequence_is_in_exactly_one_row_when_the_budget_allows() {
        let running = [view(3, 3), view(0, 9), view(20, 2), view(4, 6)];
        let calls = plan(&running, &settings(8, 1000, 0));
        let mut seen: Vec<usize> = calls.iter().flatten().map(|r| r.sequence).collect();
        seen.sort_unstable();
        assert_eq!(seen, vec![0, 1, 2, 3]);
    }
}
