//! Reducing `[B, V]` logits on their device to what each row's sampler needs
//! ([`Selection`]) before anything is copied to the host: the argmax of a greedy row,
//! the top-k of a small top-k row, nothing for a prompt chunk that does not end its
//! prompt. The answers are those of [`Selection::apply`] on the full rows, so the
//! sampler picks the same tokens; where the device cannot promise that (a NaN logit,
//! a tie at the k-th place, whose lower id must win) the row is copied in full.

use modelplane_generate::engine::{RowLogits, Selection};
use tch::{Device, Kind, TchError, Tensor};

/// Copies every row of `logits` (`[B, V]`, any device) to the host as float32,
/// row-major: what `step` hands back.
pub(super) fn copy_full(logits: &Tensor) -> Result<Vec<f32>, TchError> {
    let flat = logits
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?
        .f_view([-1])?;
    Vec::<f32>::try_from(&flat)
}

/// Answers `selections` (one per row of `logits`, `[B, V]`): argmax and top-k rows
/// are reduced on the device and only their ids and values cross to the host; full
/// rows (asked for, or fallen back to) are copied once each.
pub(super) fn copy_selected(
    logits: &Tensor,
    selections: &[Selection],
) -> Result<Vec<RowLogits>, TchError> {
    let (batch, vocab) = logits.size2()?;
    if usize::try_from(batch).ok() != Some(selections.len()) {
        return Err(TchError::Shape(format!(
            "{} selections for {batch} rows of logits",
            selections.len()
        )));
    }
    let logits = logits.f_to_kind(Kind::Float)?;
    let mut answers = vec![RowLogits::Nothing; selections.len()];
    let mut full = Vec::new();
    let mut argmax = Vec::new();
    let mut top = Vec::new();
    for (row, &selection) in selections.iter().enumerate() {
        match selection {
            Selection::Nothing => {}
            Selection::Argmax => argmax.push(row),
            Selection::TopK(k) if i64::from(k) < vocab => top.push((row, k as usize)),
            Selection::TopK(_) | Selection::Full => full.push(row),
        }
    }
    if !argmax.is_empty() {
        let (values, ids) = rows_of(&logits, &argmax)?.f_max_dim(-1, false)?;
        let values = Vec::<f32>::try_from(&values)?;
        let ids = Vec::<i64>::try_from(&ids)?;
        for ((&row, &value), &id) in argmax.iter().zip(&values).zip(&ids) {
            match argmax_answer(value, id) {
                Some(answer) => answers[row] = answer,
                None => full.push(row),
            }
        }
    }
    if let Some(widest) = top.iter().map(|&(_, k)| k).max() {
        // One more than the widest k: the (k+1)-th value tells whether the k-th is tied.
        let width = (widest as i64 + 1).min(vocab);
        let part: Vec<usize> = top.iter().map(|&(row, _)| row).collect();
        let (values, ids) = rows_of(&logits, &part)?.f_topk(width, -1, true, true)?;
        let values = Vec::<f32>::try_from(&values.f_reshape([-1])?)?;
        let ids = Vec::<i64>::try_from(&ids.f_reshape([-1])?)?;
        let width = width as usize;
        for (index, &(row, k)) in top.iter().enumerate() {
            let span = index * width..(index + 1) * width;
            match top_k_answer(&values[span.clone()], &ids[span], k) {
                Some(answer) => answers[row] = answer,
                None => full.push(row),
            }
        }
    }
    if !full.is_empty() {
        full.sort_unstable();
        let values = host_rows(&rows_of(&logits, &full)?)?;
        for (&row, values) in full.iter().zip(values) {
            answers[row] = RowLogits::Full(values);
        }
    }
    Ok(answers)
}

/// Each row of `rows` (`[n, V]`) as a host vector of float32: one transfer for all of
/// them, then one `memcpy` a row (no zeroed buffer first, which would cost as much
/// again on the CPU).
fn host_rows(rows: &Tensor) -> Result<Vec<Vec<f32>>, TchError> {
    let host = rows
        .f_to_device(Device::Cpu)?
        .f_to_kind(Kind::Float)?
        .f_contiguous()?;
    let (count, width) = host.size2()?;
    let count = usize::try_from(count).unwrap_or(0);
    let width = usize::try_from(width).unwrap_or(0);
    if count == 0 || width == 0 || host.numel() != count * width {
        return Ok(vec![Vec::new(); count]);
    }
    // SAFETY: `host` is a contiguous float32 CPU tensor of exactly `count · width`
    // elements (checked above, so its data pointer is non-null and aligned for f32);
    // it lives until the end of this function, past every use of `values`, and no
    // code writes to its storage meanwhile (the module's output is read-only here).
    let values = unsafe {
        std::slice::from_raw_parts(host.data_ptr().cast::<f32>().cast_const(), count * width)
    };
    Ok(values.chunks_exact(width).map(<[f32]>::to_vec).collect())
}

/// The rows `rows` (ascending) of `logits`, without a copy when they are all of them.
fn rows_of(logits: &Tensor, rows: &[usize]) -> Result<Tensor, TchError> {
    let all = rows.iter().enumerate().all(|(index, &row)| index == row);
    if all && i64::try_from(rows.len()).ok() == logits.size().first().copied() {
        return Ok(logits.shallow_clone());
    }
    let index: Vec<i64> = rows.iter().map(|&row| row as i64).collect();
    let index = Tensor::f_from_slice(&index)?.f_to_device(logits.device())?;
    logits.f_index_select(0, &index)
}

/// The answer for a greedy row from its maximum and that maximum's index (PyTorch's
/// `max(dim)` returns the first maximal index, as the host's argmax does); `None`
/// when the maximum is NaN, which PyTorch ranks above every number but the host
/// never picks.
fn argmax_answer(value: f32, id: i64) -> Option<RowLogits> {
    if value.is_nan() {
        return None;
    }
    u32::try_from(id).ok().map(RowLogits::Argmax)
}

/// The answer for a top-`k` row from PyTorch's sorted `topk(k + 1)` of it (`values`
/// descending, `ids` theirs); `None` when it cannot be given exactly:
/// - a NaN among them (PyTorch ranks NaN above every number; the host never draws it);
/// - the k-th and (k+1)-th values equal (and above −∞): PyTorch does not say which of
///   the tied ids it keeps, while the lower ones must win.
///
/// Otherwise the `k` values are strictly above every other logit of the row, so they
/// are the row's unique top k. −∞ values are left out: they are never drawn.
fn top_k_answer(values: &[f32], ids: &[i64], k: usize) -> Option<RowLogits> {
    let k = k.min(values.len()).min(ids.len());
    if k == 0 || values.iter().any(|value| value.is_nan()) {
        return None;
    }
    if let Some(&next) = values.get(k)
        && next == values[k - 1]
        && next > f32::NEG_INFINITY
    {
        return None;
    }
    let mut kept_ids = Vec::with_capacity(k);
    let mut kept_values = Vec::with_capacity(k);
    for (&id, &value) in ids[..k].iter().zip(&values[..k]) {
        if value > f32::NEG_INFINITY {
            kept_ids.push(u32::try_from(id).ok()?);
            kept_values.push(value);
        }
    }
    Some(RowLogits::TopK {
        ids: kept_ids,
        values: kept_values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_maximum_falls_back_to_the_full_row() {
        assert_eq!(argmax_answer(2.0, 7), Some(RowLogits::Argmax(7)));
        assert_eq!(argmax_answer(f32::NAN, 7), None);
        assert_eq!(argmax_answer(2.0, -1), None);
    }

    #[test]
    fn a_tie_at_the_kth_place_falls_back_to_the_full_row() {
        let ids = [4, 9, 1, 3];
        assert_eq!(
            top_k_answer(&[3.0, 2.0, 1.0, 1.0], &ids, 2),
            Some(RowLogits::TopK {
                ids: vec![4, 9],
                values: vec![3.0, 2.0]
            })
        );
        assert_eq!(top_k_answer(&[3.0, 1.0, 1.0, 0.0], &ids, 2), None);
        // +0 and −0 are equal to PyTorch, not to the host's ordering.
        assert_eq!(top_k_answer(&[3.0, 0.0, -0.0], &ids[..3], 2), None);
        assert_eq!(top_k_answer(&[f32::NAN, 1.0, 0.0], &ids[..3], 2), None);
    }

    #[test]
    fn minus_infinity_is_left_out_and_its_ties_do_not_matter() {
        let inf = f32::NEG_INFINITY;
        assert_eq!(
            top_k_answer(&[1.0, inf, inf], &[5, 0, 1], 2),
            Some(RowLogits::TopK {
                ids: vec![5],
                values: vec![1.0]
            })
        );
        assert_eq!(
            top_k_answer(&[inf, inf], &[0, 1], 1),
            Some(RowLogits::TopK {
                ids: vec![],
                values: vec![]
            })
        );
    }

    #[test]
    fn device_selection_answers_like_the_host_reference() {
        // Rows with ties at and around the k-th place, NaN, ±∞ and ±0.
        let inf = f32::INFINITY;
        let rows: [[f32; 8]; 6] = [
            [0.5, 2.0, -1.0, 2.0, 0.1, 3.0, 0.0, -0.5],
            [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0],
            [f32::NAN, 0.3, 0.2, 0.9, 0.1, 0.0, -0.2, 0.4],
            [-inf, -inf, 0.7, -inf, -inf, -inf, -inf, -inf],
            [0.0, -0.0, 0.0, -0.0, 5.0, -0.0, 0.0, 1.0],
            [inf, 2.0, 1.5, 1.0, 0.5, 0.25, 0.125, 0.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = Tensor::from_slice(&flat).view([6, 8]);
        for selection in [
            Selection::Argmax,
            Selection::TopK(2),
            Selection::TopK(3),
            Selection::TopK(7),
            Selection::Full,
            Selection::Nothing,
        ] {
            let selections = [selection; 6];
            let answers = copy_selected(&logits, &selections).expect("selected");
            for (row, answer) in rows.iter().zip(&answers) {
                let reference = selection.apply(row);
                match (answer, &reference) {
                    // A fallen-back row carries the same logits.
                    (RowLogits::Full(values), _) => {
                        assert_eq!(values.len(), 8);
                        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                        assert_eq!(bits(values), bits(row), "{selection:?}");
                    }
                    (RowLogits::TopK { ids, values }, RowLogits::TopK { .. }) => {
                        let mut pairs: Vec<(u32, f32)> =
                            ids.iter().copied().zip(values.iter().copied()).collect();
                        pairs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
                        let (ids, values): (Vec<u32>, Vec<f32>) = pairs.into_iter().unzip();
                        assert_eq!(RowLogits::TopK { ids, values }, reference, "{row:?}");
                    }
                    _ => assert_eq!(answer, &reference, "{selection:?} of {row:?}"),
                }
            }
        }
        // A mix in one call: each row gets its own answer.
        let mixed = [
            Selection::Argmax,
            Selection::Nothing,
            Selection::TopK(2),
            Selection::Full,
            Selection::TopK(1),
            Selection::Argmax,
        ];
        let answers = copy_selected(&logits, &mixed).expect("selected");
        assert_eq!(answers[0], RowLogits::Argmax(5));
        assert_eq!(answers[1], RowLogits::Nothing);
        assert!(matches!(answers[2], RowLogits::Full(_)), "NaN in row 2");
        assert_eq!(answers[3], RowLogits::Full(rows[3].to_vec()));
        assert_eq!(
            answers[4],
            RowLogits::TopK {
                ids: vec![4],
                values: vec![5.0]
            }
        );
        assert_eq!(answers[5], RowLogits::Argmax(0));
        assert!(copy_selected(&logits, &mixed[..5]).is_err());
    }
}
