//! Prefix caching over the slotted KV cache, as a pure index: which tokens each free slot
//! still holds, and where a new prompt's longest cached prefix lies.
//!
//! A slot keeps the keys and values of its last sequence after it ends (nothing clears a
//! slot: the contract never reads past a row's length). Admission then reuses them:
//! - a free slot whose tokens start with the prompt's first `m` tokens is taken as is, and
//!   the prompt is fed from position `m` (no copy at all);
//! - else, when another slot (free, or running: a running sequence only appends) holds a
//!   prefix at least [`MIN_COPY`] tokens longer, its first `m` positions are copied into
//!   the chosen slot by the model ([`super::StepModel::copy_prefix`]) — a memory copy in
//!   place of `m` tokens of prefill.
//!
//! Free slots are reused least recently freed first, so the prefixes of recent requests
//! (a chat template's system prompt above all) stay longest: eviction is LRU over the KV
//! budget the slots are. A prompt always feeds at least its last token (its logits start
//! the generation), so a match is at most `prompt_len - 1` tokens; it is exact token for
//! token, so outputs are those of a full prefill (up to float rounding of a split prefill,
//! as with chunked prefill).

use std::collections::VecDeque;

/// The shortest prefix worth copying from another slot (shorter ones are prefilled).
pub const MIN_COPY: u32 = 16;

/// Where a new sequence goes and what of its prompt is already cached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Placement {
    /// The slot it takes.
    pub slot: u32,
    /// Prompt tokens the slot already holds (after the copy, if any).
    pub cached: u32,
    /// Copy positions `0..cached` from this slot first.
    pub copy_from: Option<u32>,
}

/// The free slots, least recently freed first, with the tokens each still holds.
#[derive(Debug, Default)]
pub(super) struct FreeSlots {
    free: VecDeque<(u32, Vec<u32>)>,
    /// Look for cached prefixes at all.
    enabled: bool,
}

impl FreeSlots {
    /// All of `0..slots` free and empty; `enabled` turns prefix reuse on.
    pub fn new(slots: u32, enabled: bool) -> Self {
        Self {
            free: (0..slots).map(|slot| (slot, Vec::new())).collect(),
            enabled,
        }
    }

    /// Whether no slot is free.
    pub fn is_empty(&self) -> bool {
        self.free.is_empty()
    }

    /// Frees `slot`, which holds the keys and values of `tokens` (empty when its content
    /// is not to be trusted, e.g. after a failed step).
    pub fn release(&mut self, slot: u32, tokens: Vec<u32>) {
        let tokens = if self.enabled { tokens } else { Vec::new() };
        self.free.push_back((slot, tokens));
    }

    /// Takes a slot for `prompt`: the free slot holding its longest prefix, else the least
    /// recently freed; `running` are the slots in use with the tokens they hold, a source
    /// to copy a longer prefix from. `None` when no slot is free.
    pub fn place<'a>(
        &mut self,
        prompt: &[u32],
        running: impl Iterator<Item = (u32, &'a [u32])>,
    ) -> Option<Placement> {
        if self.free.is_empty() {
            return None;
        }
        let limit = prompt.len().saturating_sub(1);
        let matched = |held: &[u32]| common_prefix(held, prompt).min(limit);
        let mut best = (0usize, 0usize); // (index in free, matched)
        if self.enabled {
            for (index, (_, held)) in self.free.iter().enumerate() {
                let m = matched(held);
                if m > best.1 {
                    best = (index, m);
                }
            }
        }
        let own = best.1;
        let copy = if self.enabled {
            let elsewhere = self
                .free
                .iter()
                .enumerate()
                .filter(|(index, _)| *index != best.0)
                .map(|(_, (slot, held))| (*slot, matched(held)))
                .chain(running.map(|(slot, held)| (slot, matched(held))))
                .max_by_key(|(_, m)| *m);
            elsewhere.filter(|(_, m)| *m >= own + MIN_COPY as usize)
        } else {
            None
        };
        // The slot holding the longest prefix (a copy only extends it), else the least
        // recently freed.
        let index = if own == 0 { 0 } else { best.0 };
        let (slot, _) = self.free.remove(index)?;
        let to_u32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        Some(match copy {
            Some((from, m)) => Placement {
                slot,
                cached: to_u32(m),
                copy_from: Some(from),
            },
            None => Placement {
                slot,
                cached: to_u32(own),
                copy_from: None,
            },
        })
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens(range: std::ops::Range<u32>) -> Vec<u32> {
        range.collect()
    }

    #[test]
    fn a_free_slot_holding_the_prefix_is_taken_as_is() {
        let mut free = FreeSlots::new(0, true);
        free.release(3, tokens(0..40));
        free.release(5, tokens(100..140));
        let prompt: Vec<u32> = tokens(0..30).into_iter().chain([7, 7]).collect();
        let placed = free.place(&prompt, std::iter::empty()).expect("a slot");
        assert_eq!(
            placed,
            Placement {
                slot: 3,
                cached: 30,
                copy_from: None
            }
        );
    }

    #[test]
    fn the_last_prompt_token_is_always_fed() {
        let mut free = FreeSlots::new(0, true);
        free.release(1, tokens(0..40));
        let placed = free
            .place(&tokens(0..20), std::iter::empty())
            .expect("a slot");
        assert_eq!((placed.slot, placed.cached), (1, 19));
    }

    #[test]
    fn a_longer_prefix_in_a_running_slot_is_copied_into_the_slot_with_the_shorter_one() {
        let mut free = FreeSlots::new(0, true);
        free.release(2, tokens(500..520));
        free.release(4, tokens(0..5));
        let running = tokens(0..64);
        let prompt = tokens(0..50);
        let placed = free
            .place(&prompt, [(9, running.as_slice())].into_iter())
            .expect("a slot");
        assert_eq!(
            placed,
            Placement {
                slot: 4,
                cached: 49,
                copy_from: Some(9)
            }
        );
    }

    #[test]
    fn a_short_gain_is_prefilled_rather_than_copied() {
        let mut free = FreeSlots::new(0, true);
        free.release(4, tokens(0..20));
        let running = tokens(0..30);
        let placed = free
            .place(&tokens(0..40), [(9, running.as_slice())].into_iter())
            .expect("a slot");
        assert_eq!(
            placed,
            Placement {
                slot: 4,
                cached: 20,
                copy_from: None
            }
        );
    }

    #[test]
    fn without_a_match_the_least_recently_freed_slot_is_evicted_first() {
        let mut free = FreeSlots::new(0, true);
        free.release(7, tokens(0..10));
        free.release(8, tokens(20..30));
        let placed = free
            .place(&tokens(50..60), std::iter::empty())
            .expect("a slot");
        assert_eq!((placed.slot, placed.cached), (7, 0));
        // The most recent prefix survives and is still found.
        let placed = free
            .place(&tokens(20..40), std::iter::empty())
            .expect("a slot");
        assert_eq!((placed.slot, placed.cached), (8, 10));
        assert!(free.place(&tokens(0..5), std::iter::empty()).is_none());
    }

    #[test]
    fn disabled_it_never_reuses_or_copies() {
        let mut free = FreeSlots::new(0, false);
        free.release(3, tokens(0..40));
        let running = tokens(0..64);
        let placed = free
            .place(&tokens(0..50), [(9, running.as_slice())].into_iter())
            .expect("a slot");
        assert_eq!(
            placed,
            Placement {
                slot: 3,
                cached: 0,
                copy_from: None
            }
        );
    }
}
