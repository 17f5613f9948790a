//! What a `step` call hands back for each row, so that a model need not copy the whole
//! `[B, V]` logits off its device every step.
//!
//! The engine tells the model, per row, the least the sampler needs ([`Selection`]):
//! nothing for a prompt chunk that does not end its prompt, the argmax for greedy
//! decoding, the `k` best logits for a small top-k, all of them otherwise. The model
//! answers each row with a [`RowLogits`]: what was asked for, or the full row, which is
//! always allowed. Token choices are the same either way: [`crate::sampling::Sampler::pick`]
//! applies temperature, top-p and the seeded draw to the `k` candidates exactly as it
//! does to a full row (top-p after top-k only ever looks at the `k` candidates).
//!
//! [`Selection::apply`] is the reference: it reduces a full row on the host the way a
//! model must on its device.

use crate::sampling::{self, SamplingParams};

/// The largest top-k a model is asked to select itself; rows with a larger `top_k`
/// get the full logits (beyond a few hundred candidates the copy saved is small, and
/// device top-k kernels slow down).
pub const MAX_SELECTED_TOP_K: u32 = 256;

/// What the engine needs of one row's logits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Selection {
    /// Nothing: the row feeds a prompt chunk that does not end its prompt.
    Nothing,
    /// The id of the first maximal logit; a NaN logit never wins.
    Argmax,
    /// The `k` largest logits with their ids (`1 < k < V`), lower ids winning ties;
    /// NaN and −∞ logits may be left out, since they are never drawn.
    TopK(u32),
    /// Every logit of the row.
    Full,
}

impl Selection {
    /// The least a row sampled with `params` over a vocabulary of `vocab_size` needs.
    ///
    /// A repetition penalty changes the logits of the tokens already seen, so which
    /// ids lead is only known after it: those rows need every logit, as do top-p
    /// without top-k (the nucleus may span the vocabulary) and a large top-k.
    pub fn for_params(params: &SamplingParams, vocab_size: u32) -> Self {
        if params.repetition_penalty != 1.0 {
            return Self::Full;
        }
        if params.is_greedy() {
            return Self::Argmax;
        }
        match params.top_k {
            Some(k) if k < vocab_size && k <= MAX_SELECTED_TOP_K => Self::TopK(k),
            _ => Self::Full,
        }
    }

    /// The reference reduction of a full row: what a model answers for this
    /// selection, computed on the host.
    pub fn apply(self, logits: &[f32]) -> RowLogits {
        match self {
            Self::Nothing => RowLogits::Nothing,
            Self::Argmax => RowLogits::Argmax(sampling::argmax(logits)),
            Self::TopK(k) => {
                let mut candidates = Vec::new();
                sampling::collect_candidates(logits, k as usize, &mut candidates);
                candidates.sort_unstable_by(sampling::by_weight_desc);
                let (ids, values) = candidates.into_iter().unzip();
                RowLogits::TopK { ids, values }
            }
            Self::Full => RowLogits::Full(logits.to_vec()),
        }
    }
}

/// What a model handed back for one row.
#[derive(Clone, Debug, PartialEq)]
pub enum RowLogits {
    /// Nothing (the row's [`Selection`] was [`Selection::Nothing`]).
    Nothing,
    /// The id of the first maximal logit.
    Argmax(u32),
    /// Up to `k` of the largest logits and their ids, in any order; `ids[i]` scored
    /// `values[i]`.
    TopK {
        /// Token ids, distinct, below the vocabulary size.
        ids: Vec<u32>,
        /// Their logits.
        values: Vec<f32>,
    },
    /// Every logit (`V` values).
    Full(Vec<f32>),
}

impl RowLogits {
    /// Splits row-major `[rows · vocab_size]` logits into full rows.
    pub fn full_rows(logits: &[f32], vocab_size: u32) -> Vec<Self> {
        logits
            .chunks_exact(vocab_size.max(1) as usize)
            .map(|row| Self::Full(row.to_vec()))
            .collect()
    }

    /// Checks that this answers `selection` over a vocabulary of `vocab_size`: the
    /// full row, or exactly the kind asked for with ids in range.
    pub fn check(&self, selection: Selection, vocab_size: u32) -> Result<(), RowMismatch> {
        let out_of_range = |id: u32| (id >= vocab_size).then_some(RowMismatch::IdOutOfRange { id });
        match (self, selection) {
            (Self::Full(logits), _) if logits.len() == vocab_size as usize => Ok(()),
            (Self::Full(logits), _) => Err(RowMismatch::FullLength {
                found: logits.len(),
            }),
            (Self::Nothing, Selection::Nothing) => Ok(()),
            (Self::Argmax(id), Selection::Argmax) => out_of_range(*id).map_or(Ok(()), Err),
            (Self::TopK { ids, values }, Selection::TopK(k)) => {
                if ids.len() != values.len() || ids.len() > k as usize {
                    return Err(RowMismatch::TopKLength {
                        ids: ids.len(),
                        values: values.len(),
                        k,
                    });
                }
                ids.iter()
                    .find_map(|&id| out_of_range(id))
                    .map_or(Ok(()), Err)
            }
            (answer, asked) => Err(RowMismatch::Kind {
                asked,
                answered: answer.kind(),
            }),
        }
    }

    /// The variant's name, for messages.
    fn kind(&self) -> &'static str {
        match self {
            Self::Nothing => "nothing",
            Self::Argmax(_) => "an argmax",
            Self::TopK { .. } => "a top-k",
            Self::Full(_) => "full logits",
        }
    }
}

/// A row a model answered with something other than what was asked.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RowMismatch {
    /// Another kind of answer than the selection (and not the full row).
    #[error("the engine asked for {asked:?} but the model returned {answered}")]
    Kind {
        /// What the engine asked for.
        asked: Selection,
        /// What the model returned.
        answered: &'static str,
    },
    /// A full row of the wrong length.
    #[error("the model returned a row of {found} logits")]
    FullLength {
        /// Logits in the row.
        found: usize,
    },
    /// A top-k answer with more entries than asked, or ids and values that differ.
    #[error("the model returned {ids} ids and {values} values for a top-{k}")]
    TopKLength {
        /// Ids returned.
        ids: usize,
        /// Values returned.
        values: usize,
        /// The `k` asked for.
        k: u32,
    },
    /// A token id past the vocabulary.
    #[error("the model returned token id {id}, past the vocabulary")]
    IdOutOfRange {
        /// The id.
        id: u32,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f32, top_k: Option<u32>, top_p: f32, penalty: f32) -> SamplingParams {
        SamplingParams {
            temperature,
            top_k,
            top_p,
            repetition_penalty: penalty,
            seed: Some(1),
        }
    }

    #[test]
    fn the_sampling_parameters_decide_what_a_row_needs() {
        let v = 1000;
        let cases = [
            (params(0.0, None, 1.0, 1.0), Selection::Argmax),
            (params(0.0, Some(50), 0.5, 1.0), Selection::Argmax),
            (params(1.3, Some(1), 1.0, 1.0), Selection::Argmax),
            (params(0.7, Some(50), 0.9, 1.0), Selection::TopK(50)),
            (params(0.7, Some(256), 1.0, 1.0), Selection::TopK(256)),
            (params(0.7, Some(257), 1.0, 1.0), Selection::Full),
            (params(0.7, Some(1000), 1.0, 1.0), Selection::Full),
            (params(0.7, None, 0.9, 1.0), Selection::Full),
            (params(0.7, None, 1.0, 1.0), Selection::Full),
            (params(0.0, None, 1.0, 1.1), Selection::Full),
            (params(0.7, Some(50), 1.0, 0.9), Selection::Full),
        ];
        for (params, expected) in cases {
            assert_eq!(Selection::for_params(&params, v), expected, "{params:?}");
        }
        assert_eq!(
            Selection::for_params(&params(0.7, Some(50), 1.0, 1.0), 50),
            Selection::Full,
            "k of the whole vocabulary"
        );
    }

    #[test]
    fn the_reference_top_k_breaks_ties_by_lower_id_and_drops_what_cannot_be_drawn() {
        let row = [0.5, f32::NAN, 0.9, 0.5, f32::NEG_INFINITY, 0.5, 0.1];
        assert_eq!(
            Selection::TopK(3).apply(&row),
            RowLogits::TopK {
                ids: vec![2, 0, 3],
                values: vec![0.9, 0.5, 0.5]
            }
        );
        let masked = [f32::NEG_INFINITY, 2.0, f32::NAN];
        assert_eq!(
            Selection::TopK(2).apply(&masked),
            RowLogits::TopK {
                ids: vec![1],
                values: vec![2.0]
            }
        );
        assert_eq!(Selection::Argmax.apply(&row), RowLogits::Argmax(2));
        assert_eq!(Selection::Nothing.apply(&row), RowLogits::Nothing);
    }

    #[test]
    fn a_row_answers_what_was_asked_or_gives_everything() {
        let v = 4;
        let full = RowLogits::Full(vec![0.0; 4]);
        for asked in [
            Selection::Nothing,
            Selection::Argmax,
            Selection::TopK(2),
            Selection::Full,
        ] {
            assert_eq!(full.check(asked, v), Ok(()), "{asked:?}");
        }
        assert_eq!(
            RowLogits::Full(vec![0.0; 3]).check(Selection::Full, v),
            Err(RowMismatch::FullLength { found: 3 })
        );
        assert_eq!(RowLogits::Argmax(3).check(Selection::Argmax, v), Ok(()));
        assert_eq!(
            RowLogits::Argmax(4).check(Selection::Argmax, v),
            Err(RowMismatch::IdOutOfRange { id: 4 })
        );
        let top = RowLogits::TopK {
            ids: vec![3, 1],
            values: vec![1.0, 0.5],
        };
        assert_eq!(top.check(Selection::TopK(2), v), Ok(()));
        assert!(matches!(
            top.check(Selection::TopK(1), v),
            Err(RowMismatch::TopKLength { k: 1, .. })
        ));
        assert!(matches!(
            top.check(Selection::Full, v),
            Err(RowMismatch::Kind { .. })
        ));
        let err = RowLogits::Nothing.check(Selection::Argmax, v).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the engine asked for Argmax but the model returned nothing"
        );
    }
}
