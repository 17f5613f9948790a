//! Facts about tensor shapes that hold for every datatype.

/// The number of elements of a shape; `None` on a negative dimension or overflow.
pub fn element_count(shape: &[i64]) -> Option<u64> {
    shape
        .iter()
        .try_fold(1u64, |acc, &dim| acc.checked_mul(u64::try_from(dim).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn element_count_rejects_negative_and_overflowing_shapes() {
        let cases: [(&[i64], Option<u64>); 7] = [
            (&[2, 3, 4], Some(24)),
            (&[], Some(1)),
            (&[0, 5], Some(0)),
            (&[i64::MAX], Some(i64::MAX as u64)),
            (&[-1, 5], None),
            (&[0, -1], None),
            (&[i64::MAX, i64::MAX], None),
        ];
        for (shape, expected) in cases {
            assert_eq!(element_count(shape), expected, "{shape:?}");
        }
    }
}
