//! Resource quantities (`500m`, `4`, `8Gi`) and CPU ceilings (`2 cores`, `max`).

use std::fmt;

use super::duration::decimal_times;

/// A non-negative resource quantity, held exactly in thousandths of its unit
/// (millicores for CPU, millibytes for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Quantity {
    millis: u128,
}

impl Quantity {
    /// The quantity `millis / 1000`.
    pub const fn from_millis(millis: u128) -> Self {
        Self { millis }
    }

    /// The quantity in thousandths (millicores for CPU).
    pub const fn millis(self) -> u128 {
        self.millis
    }

    /// Whole units, rounded up (bytes for memory, cores for CPU).
    pub const fn whole_ceil(self) -> u128 {
        self.millis.div_ceil(1000)
    }

    /// Sum of two quantities, `None` on overflow.
    pub fn checked_add(self, other: Self) -> Option<Self> {
        self.millis.checked_add(other.millis).map(Self::from_millis)
    }

    /// `self - other`, or zero when `other` is larger.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self::from_millis(self.millis.saturating_sub(other.millis))
    }
}

impl fmt::Display for Quantity {
    /// Writes the shortest exact decimal form: `4`, `500m`, `1.5`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (whole, frac) = (self.millis / 1000, self.millis % 1000);
        match frac {
            0 => write!(f, "{whole}"),
            _ if whole == 0 => write!(f, "{frac}m"),
            _ => write!(f, "{}", format!("{whole}.{frac:03}").trim_end_matches('0')),
        }
    }
}

/// Why a quantity could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    /// The string does not start with a non-negative decimal number.
    #[error("quantity {0:?}: expected a non-negative decimal number")]
    InvalidNumber(String),
    /// The suffix is not one of `m k M G T P E Ki Mi Gi Ti Pi Ei`.
    #[error("quantity {0:?}: suffix must be one of m, k, M, G, T, P, E, Ki, Mi, Gi, Ti, Pi, Ei")]
    UnknownSuffix(String),
    /// The value is too large to represent.
    #[error("quantity {0:?} is too large")]
    Overflow(String),
}

/// Parses a quantity in the format of [`super::QUANTITY_PATTERN`]; fractions below
/// one thousandth are truncated.
pub fn parse_quantity(text: &str) -> Result<Quantity, QuantityError> {
    let number_len = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(number_len);
    if !is_decimal(number) {
        return Err(QuantityError::InvalidNumber(text.to_owned()));
    }
    let multiplier =
        suffix_multiplier(suffix).ok_or_else(|| QuantityError::UnknownSuffix(text.to_owned()))?;
    let millis = match multiplier {
        Multiplier::Milli => decimal_times(number, 1),
        Multiplier::Times(factor) => factor
            .checked_mul(1000)
            .and_then(|scale| decimal_times(number, scale)),
    }
    .ok_or_else(|| QuantityError::Overflow(text.to_owned()))?;
    Ok(Quantity::from_millis(millis))
}

/// `digits` or `digits.digits`.
fn is_decimal(number: &str) -> bool {
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, "0"));
    let all_digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    all_digits(int_part) && all_digits(frac_part)
}

enum Multiplier {
    Milli,
    Times(u128),
}

fn suffix_multiplier(suffix: &str) -> Option<Multiplier> {
    let pow = |base: u128, exp: u32| Multiplier::Times(base.pow(exp));
    Some(match suffix {
        "m" => Multiplier::Milli,
        "" => pow(1000, 0),
        "k" => pow(1000, 1),
        "M" => pow(1000, 2),
        "G" => pow(1000, 3),
        "T" => pow(1000, 4),
        "P" => pow(1000, 5),
        "E" => pow(1000, 6),
        "Ki" => pow(1024, 1),
        "Mi" => pow(1024, 2),
        "Gi" => pow(1024, 3),
        "Ti" => pow(1024, 4),
        "Pi" => pow(1024, 5),
        "Ei" => pow(1024, 6),
        _ => return None,
    })
}

/// A CPU ceiling for a tenant's slice of a shared runtime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMax {
    /// No ceiling (`max`).
    Unlimited,
    /// At most this many millicores.
    Millicores(u128),
}

/// Parses a CPU ceiling in the format of [`super::CPU_MAX_PATTERN`]: `max`, `2 cores`, `1 core`, `1.5`, `500m`.
pub fn parse_cpu_max(text: &str) -> Result<CpuMax, QuantityError> {
    if text == "max" {
        return Ok(CpuMax::Unlimited);
    }
    let cores = text
        .strip_suffix(" cores")
        .or_else(|| text.strip_suffix(" core"));
    let amount = cores.unwrap_or(text);
    let suffix_allowed = match amount.strip_suffix('m') {
        Some(_) => cores.is_none(),
        None => !amount.ends_with(|c: char| c.is_ascii_alphabetic()),
    };
    if !suffix_allowed {
        return Err(QuantityError::UnknownSuffix(text.to_owned()));
    }
    Ok(CpuMax::Millicores(parse_quantity(amount)?.millis()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_cpu_quantities_in_millicores() {
        assert_eq!(parse_quantity("4").map(Quantity::millis), Ok(4000));
        assert_eq!(parse_quantity("500m").map(Quantity::millis), Ok(500));
        assert_eq!(parse_quantity("1.5").map(Quantity::millis), Ok(1500));
        assert_eq!(parse_quantity("0.0005").map(Quantity::millis), Ok(0));
    }

    #[test]
    fn reads_binary_and_decimal_memory_suffixes() {
        assert_eq!(
            parse_quantity("8Gi").map(Quantity::whole_ceil),
            Ok(8 * (1 << 30))
        );
        assert_eq!(
            parse_quantity("128Mi").map(Quantity::whole_ceil),
            Ok(128 * (1 << 20))
        );
        assert_eq!(
            parse_quantity("2G").map(Quantity::whole_ceil),
            Ok(2_000_000_000)
        );
        assert_eq!(parse_quantity("1.5Ki").map(Quantity::whole_ceil), Ok(1536));
    }

    #[test]
    fn orders_quantities_by_value_across_suffixes() {
        let one_gi = parse_quantity("1Gi").unwrap();
        let one_g = parse_quantity("1G").unwrap();
        assert!(one_g < one_gi);
        assert_eq!(
            parse_quantity("1000m").unwrap(),
            parse_quantity("1").unwrap()
        );
    }

    #[test]
    fn refuses_malformed_quantities() {
        assert_eq!(
            parse_quantity(""),
            Err(QuantityError::InvalidNumber("".into()))
        );
        assert_eq!(
            parse_quantity("-1"),
            Err(QuantityError::InvalidNumber("-1".into()))
        );
        assert_eq!(
            parse_quantity("1."),
            Err(QuantityError::InvalidNumber("1.".into()))
        );
        assert_eq!(
            parse_quantity("Gi"),
            Err(QuantityError::InvalidNumber("Gi".into()))
        );
        assert_eq!(
            parse_quantity("8GB"),
            Err(QuantityError::UnknownSuffix("8GB".into()))
        );
        assert_eq!(
            parse_quantity("8 Gi"),
            Err(QuantityError::UnknownSuffix("8 Gi".into()))
        );
    }

    #[test]
    fn refuses_overflowing_quantities() {
        let huge = format!("{}Ei", u128::MAX);
        assert_eq!(
            parse_quantity(&huge),
            Err(QuantityError::Overflow(huge.clone()))
        );
    }

    #[test]
    fn displays_shortest_exact_form() {
        for text in ["4", "500m", "1.5", "0"] {
            assert_eq!(parse_quantity(text).unwrap().to_string(), text);
        }
        assert_eq!(parse_quantity("2.250").unwrap().to_string(), "2.25");
    }

    #[test]
    fn reads_cpu_ceilings() {
        assert_eq!(parse_cpu_max("max"), Ok(CpuMax::Unlimited));
        assert_eq!(parse_cpu_max("2 cores"), Ok(CpuMax::Millicores(2000)));
        assert_eq!(parse_cpu_max("1 core"), Ok(CpuMax::Millicores(1000)));
        assert_eq!(parse_cpu_max("1.5"), Ok(CpuMax::Millicores(1500)));
        assert_eq!(parse_cpu_max("250m"), Ok(CpuMax::Millicores(250)));
    }

    #[test]
    fn refuses_memory_suffixes_as_cpu_ceilings() {
        assert!(parse_cpu_max("2Gi").is_err());
        assert!(parse_cpu_max("2k").is_err());
        assert!(parse_cpu_max("cores").is_err());
        assert!(parse_cpu_max("500m cores").is_err());
    }
}
