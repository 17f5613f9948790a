//! String formats used in specs (durations, quantities, percentages, clock times):
//! the regular expressions the schema enforces and the parsers the operator and the
//! runtime use to read them.
//!
//! Every pattern is written in the subset shared by Go's RE2 (the API server) and
//! ECMA-262 (offline schema tests), and every parser accepts exactly what its pattern
//! accepts.

mod clock;
mod duration;
mod quantity;

pub use clock::{ClockError, PercentError, parse_percent, parse_time_of_day};
pub use duration::{DurationError, parse_duration};
pub use quantity::{CpuMax, Quantity, QuantityError, parse_cpu_max, parse_quantity};

/// Pattern of a duration: one or more `<number><unit>` with unit `ns`, `us`, `ms`, `s`, `m` or `h` (e.g. `2ms`, `1m30s`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|ms|s|m|h))+$";

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
