//! String formats used in specs and in the runtime config file (durations, quantities,
//! percentages, clock times): the regular expressions the CRD schema enforces and the
//! parsers the operator and the runtime use to read them.
//!
//! Every pattern is written in the subset shared by Go's RE2 (the API server) and
//! ECMA-262 (offline schema tests), and every parser accepts exactly what its pattern
//! accepts.

mod clock;
mod duration;
mod quantity;

pub use clock::{ClockError, PercentError, parse_percent, parse_time_of_day};
pub use duration::{DurationError, format_duration, parse_duration};
pub use quantity::{CpuMax, Quantity, QuantityError, parse_cpu_max, parse_quantity};

/// Pattern of a duration: one or more `<number><unit>` with unit `ns`, `us`, `ms`, `s`, `m` or `h`
/// (e.g. `2ms`, `1.5ms`, `1m30s`); at most 15 digits before the point, and a fraction only
/// as fine as a nanosecond (`us` 3 digits, `ms` 6, `s`/`m`/`h` 9, `ns` none).
pub const DURATION_PATTERN: &str = concat!("^", duration_body!(), "$");

/// [`DURATION_PATTERN`] without its anchors, for patterns that embed a duration
/// (`concat!("^(...|", duration_body!(), ")$")`), so they stay in step with the parser.
/// Exported for the CRD patterns (`modelplane-api`); reach it as `units::duration_body!`.
#[macro_export]
macro_rules! duration_body {
    () => {
        r"([0-9]{1,15}(ns|(\.[0-9]{1,3})?us|(\.[0-9]{1,6})?ms|(\.[0-9]{1,9})?[smh]))+"
    };
}
pub use crate::duration_body;

/// Pattern of a non-negative resource quantity: a decimal number with an optional
/// SI (`m`, `k`, `M`, `G`, `T`, `P`, `E`) or binary (`Ki` … `Ei`) suffix (e.g. `500m`, `4`, `8Gi`).
pub const QUANTITY_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?([mkMGTPE]|[KMGTPE]i)?$";

/// Pattern of a CPU ceiling: `max`, `<n> cores`, or a CPU quantity (`2`, `1.5`, `500m`).
pub const CPU_MAX_PATTERN: &str = r"^(max|[0-9]+(\.[0-9]+)?( cores?|m)?)$";

/// Pattern of a percentage: a non-negative decimal followed by `%` (e.g. `20%`, `2.5%`).
pub const PERCENT_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?%$";

/// Pattern of a wall-clock time of day `HH:MM`, 24-hour.
pub const TIME_OF_DAY_PATTERN: &str = r"^([01][0-9]|2[0-3]):[0-5][0-9]$";

/// Longest duration, quantity, percentage or clock string the schema accepts.
pub const MAX_UNIT_STRING: usize = 32;
