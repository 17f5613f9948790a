//! Parsers for the cgroup v2 files the runtime reads, as the kernel writes them
//! (Documentation/admin-guide/cgroup-v2.rst). Each returns `None` on malformed text and
//! never panics: the files come from the kernel, but a fake or foreign tree may hold
//! anything.

/// A `cpu.max` line: `"max 100000"` (no quota) or `"<quota> <period>"` in microseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum CpuMax {
    /// No quota: every host core may be used.
    Unlimited,
    /// At most `quota / period` cores.
    Quota {
        /// Microseconds of CPU time per period.
        quota: u64,
        /// Period length in microseconds.
        period: u64,
    },
}

impl CpuMax {
    /// Parses the content of `cpu.max`; `None` when it is malformed.
    pub fn parse(text: &str) -> Option<Self> {
        let mut fields = text.split_whitespace();
        let quota = fields.next()?;
        let period: u64 = fields.next().map_or(Some(100_000), |p| p.parse().ok())?;
        if fields.next().is_some() || period == 0 {
            return None;
        }
        if quota == "max" {
            return Some(Self::Unlimited);
        }
        let quota = quota.parse().ok()?;
        Some(Self::Quota { quota, period })
    }

    /// The quota in cores, if there is one.
    pub fn cores(self) -> Option<f64> {
        match self {
            Self::Unlimited => None,
            Self::Quota { quota, period } => Some(quota as f64 / period as f64),
        }
    }

    /// Threads that fit the quota: the quota rounded up (at least 1), never more
    /// than the host has.
    pub fn threads(self, host_cores: usize) -> usize {
        let host = host_cores.max(1);
        match self.cores() {
            None => host,
            Some(cores) => (cores.ceil() as usize).clamp(1, host),
        }
    }

    /// The text to write to `cpu.max` for a limit in millicores, with the kernel's
    /// default period of 100 ms. The quota is at least 1 ms, the kernel's minimum.
    pub fn from_millicores(millicores: u128) -> Self {
        const PERIOD: u64 = 100_000;
        // 1000 millicores = one core = PERIOD µs per PERIOD.
        let quota = millicores.saturating_mul(u128::from(PERIOD / 1000));
        let quota = u64::try_from(quota).unwrap_or(u64::MAX).max(1000);
        Self::Quota {
            quota,
            period: PERIOD,
        }
    }
}

/// A single-number file that may say `max` (`memory.max`, `memory.high`): `Some(None)`
/// for `max`, `Some(Some(n))` for a number, `None` when malformed.
pub fn bytes_or_max(text: &str) -> Option<Option<u64>> {
    match text.trim() {
        "max" => Some(None),
        number => number.parse().ok().map(Some),
    }
}

/// A single-number file (`memory.current`); `None` when malformed.
pub fn bytes(text: &str) -> Option<u64> {
    text.trim().parse().ok()
}

/// One key of a flat-keyed file (`memory.stat`: `"<key> <value>"` per line).
pub fn flat_keyed(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        (fields.next()? == key).then_some(())?;
        let value = fields.next()?.parse().ok()?;
        fields.next().is_none().then_some(value)
    })
}

/// The CPU time figures of `cpu.stat`. `usage_usec` is always there; the throttling
/// keys only where the cpu controller is enabled for the cgroup.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStat {
    /// CPU time used, µs.
    pub usage_usec: Option<u64>,
    /// Enforcement periods that elapsed with runnable tasks.
    pub nr_periods: Option<u64>,
    /// Periods in which the quota ran out.
    pub nr_throttled: Option<u64>,
    /// Time the tasks spent throttled, µs.
    pub throttled_usec: Option<u64>,
}

impl CpuStat {
    /// Parses `cpu.stat`; unknown keys and malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        Self {
            usage_usec: flat_keyed(text, "usage_usec"),
            nr_periods: flat_keyed(text, "nr_periods"),
            nr_throttled: flat_keyed(text, "nr_throttled"),
            throttled_usec: flat_keyed(text, "throttled_usec"),
        }
    }
}

/// One line of a PSI file: the share of wall time in which some (or all) tasks were
/// stalled on the resource, averaged over 10 s, 60 s and 300 s (percent, as the kernel
/// writes them), and the total stall time in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct PsiLine {
    /// Percent over the last 10 s.
    pub avg10: f64,
    /// Percent over the last 60 s.
    pub avg60: f64,
    /// Percent over the last 300 s.
    pub avg300: f64,
    /// Total stall time, µs.
    pub total_usec: u64,
}

/// A PSI file (`cpu.pressure`, `memory.pressure`, `io.pressure`): the `some` line and,
/// where the kernel writes one, the `full` line (`cpu.pressure` has a `full` line of
/// zeros at the cgroup level since 5.13; older kernels have none).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Pressure {
    /// Some tasks stalled.
    pub some: Option<PsiLine>,
    /// All non-idle tasks stalled at once.
    pub full: Option<PsiLine>,
}

impl Pressure {
    /// Parses a PSI file; malformed lines are skipped.
    pub fn parse(text: &str) -> Self {
        let mut pressure = Self::default();
        for line in text.lines() {
            let mut fields = line.split_whitespace();
            let slot = match fields.next() {
                Some("some") => &mut pressure.some,
                Some("full") => &mut pressure.full,
                _ => continue,
            };
            if let Some(parsed) = psi_fields(fields) {
                *slot = Some(parsed);
            }
        }
        pressure
    }
}

fn psi_fields<'a>(fields: impl Iterator<Item = &'a str>) -> Option<PsiLine> {
    let (mut avg10, mut avg60, mut avg300, mut total) = (None, None, None, None);
    for field in fields {
        let (key, value) = field.split_once('=')?;
        match key {
            "avg10" => avg10 = Some(percent(value)?),
            "avg60" => avg60 = Some(percent(value)?),
            "avg300" => avg300 = Some(percent(value)?),
            "total" => total = Some(value.parse().ok()?),
            _ => {}
        }
    }
    Some(PsiLine {
        avg10: avg10?,
        avg60: avg60?,
        avg300: avg300?,
        total_usec: total?,
    })
}

fn percent(text: &str) -> Option<f64> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && (0.0..=100.0).contains(&value)).then_some(value)
}

/// The cgroup v2 path of this process from `/proc/self/cgroup` (the `0::<path>` line).
pub fn unified_path(proc_self_cgroup: &str) -> Option<&str> {
    proc_self_cgroup
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::trim)
        .filter(|path| path.starts_with('/'))
}

/// A cgroup2 mount from `/proc/self/mountinfo`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cgroup2Mount {
    /// The cgroup path that is the root of the mount (`/` unless bind-mounted).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Mounted read-only.
    pub read_only: bool,
}

/// The first cgroup2 mount in `/proc/self/mountinfo` text.
///
/// A line is `id parent major:minor root mount-point options [optional...] - fstype
/// source super-options`; paths escape spaces as `\040`.
pub fn cgroup2_mount(mountinfo: &str) -> Option<Cgroup2Mount> {
    mountinfo.lines().find_map(|line| {
        let (before, after) = line.split_once(" - ")?;
        if after.split_whitespace().next()? != "cgroup2" {
            return None;
        }
        let fields: Vec<&str> = before.split_whitespace().collect();
        let (root, mount_point, options) = (fields.get(3)?, fields.get(4)?, fields.get(5)?);
        Some(Cgroup2Mount {
            root: unescape(root),
            mount_point: unescape(mount_point),
            read_only: options.split(',').any(|option| option == "ro"),
        })
    })
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let code = rest.get(at + 1..at + 4);
        match code.and_then(|code| u8::from_str_radix(code, 8).ok()) {
            Some(byte) if byte.is_ascii() => {
                out.push(char::from(byte));
                rest = &rest[at + 4..];
            }
            _ => {
                out.push('\\');
                rest = &rest[at + 1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whether a space-separated controller list (`cgroup.controllers`,
/// `cgroup.subtree_control`) names `controller`.
pub fn lists_controller(text: &str, controller: &str) -> bool {
    text.split_whitespace().any(|c| c == controller)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_means_no_quota() {
        assert_eq!(CpuMax::parse("max 100000\n"), Some(CpuMax::Unlimited));
        assert_eq!(CpuMax::parse("max").map(|m| m.threads(8)), Some(8));
    }

    #[test]
    fn fractional_quota_rounds_up_to_whole_threads() {
        let half = CpuMax::parse("50000 100000").expect("parses");
        assert_eq!(half.cores(), Some(0.5));
        assert_eq!(half.threads(16), 1);
        assert_eq!(
            CpuMax::parse("250000 100000").expect("parses").threads(16),
            3
        );
    }

    #[test]
    fn quota_never_exceeds_host_cores() {
        assert_eq!(
            CpuMax::parse("800000 100000").expect("parses").threads(2),
            2
        );
    }

    #[test]
    fn malformed_cpu_max_is_rejected() {
        for text in ["", "abc 100000", "100000 0", "1 2 3", "-5 100000"] {
            assert_eq!(CpuMax::parse(text), None, "{text:?}");
        }
    }

    #[test]
    fn millicores_become_a_quota_per_100ms_period() {
        assert_eq!(
            CpuMax::from_millicores(1500),
            CpuMax::Quota {
                quota: 150_000,
                period: 100_000
            }
        );
        // Below the kernel's 1 ms minimum quota.
        assert_eq!(
            CpuMax::from_millicores(0),
            CpuMax::Quota {
                quota: 1000,
                period: 100_000
            }
        );
        assert_eq!(CpuMax::from_millicores(2000).cores(), Some(2.0));
    }

    #[test]
    fn memory_files_say_max_or_a_number() {
        assert_eq!(bytes_or_max("max\n"), Some(None));
        assert_eq!(bytes_or_max("2147483648\n"), Some(Some(2 << 30)));
        assert_eq!(bytes_or_max("lots"), None);
        assert_eq!(bytes("123\n"), Some(123));
        assert_eq!(bytes("max"), None);
    }

    #[test]
    fn cpu_stat_keys_are_read_and_missing_ones_stay_unknown() {
        let text = "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n\
                    nr_periods 40\nnr_throttled 7\nthrottled_usec 350000\n\
                    nr_bursts 0\nburst_usec 0\n";
        assert_eq!(
            CpuStat::parse(text),
            CpuStat {
                usage_usec: Some(2_500_000),
                nr_periods: Some(40),
                nr_throttled: Some(7),
                throttled_usec: Some(350_000),
            }
        );
        // The root cgroup, or one without the cpu controller: usage only.
        let plain = CpuStat::parse("usage_usec 10\nuser_usec 5\nsystem_usec 5\n");
        assert_eq!(plain.usage_usec, Some(10));
        assert_eq!(plain.nr_throttled, None);
    }

    #[test]
    fn pressure_lines_are_read() {
        let text = "some avg10=1.50 avg60=0.25 avg300=0.00 total=123456\n\
                    full avg10=0.00 avg60=0.00 avg300=0.00 total=42\n";
        let pressure = Pressure::parse(text);
        assert_eq!(
            pressure.some,
            Some(PsiLine {
                avg10: 1.5,
                avg60: 0.25,
                avg300: 0.0,
                total_usec: 123_456
            })
        );
        assert_eq!(pressure.full.map(|f| f.total_usec), Some(42));
        let old_kernel = Pressure::parse("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n");
        assert!(old_kernel.some.is_some() && old_kernel.full.is_none());
        assert_eq!(
            Pressure::parse("some avg10=x avg60=0 avg300=0 total=0"),
            Pressure::default()
        );
        assert_eq!(
            Pressure::parse("some avg10=101 avg60=0 avg300=0 total=0").some,
            None
        );
    }

    #[test]
    fn the_unified_line_of_proc_self_cgroup_is_found() {
        assert_eq!(unified_path("0::/\n"), Some("/"));
        let hybrid = "9:name=systemd:/\n4:memory:/x\n0::/kubepods/pod1/c1\n";
        assert_eq!(unified_path(hybrid), Some("/kubepods/pod1/c1"));
        assert_eq!(unified_path("4:memory:/x\n"), None);
        assert_eq!(unified_path("0::relative\n"), None);
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let text = "\
30 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
31 25 0:27 / /sys/fs/cgroup/unified rw,relatime shared:12 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount(text),
            Some(Cgroup2Mount {
                root: "/".into(),
                mount_point: "/sys/fs/cgroup/unified".into(),
                read_only: false,
            })
        );
        let container =
            "1205 1200 0:29 /kubepods/x /sys/fs/cgroup ro,nosuid,nodev - cgroup2 cgroup rw\n";
        let mount = cgroup2_mount(container).expect("mount");
        assert!(mount.read_only);
        assert_eq!(mount.root, "/kubepods/x");
        let spaced = "1 1 0:1 / /mnt/with\\040space rw - cgroup2 none rw\n";
        assert_eq!(
            cgroup2_mount(spaced).map(|m| m.mount_point),
            Some("/mnt/with space".into())
        );
        assert_eq!(cgroup2_mount("garbage\n1 2 3 - cgroup2\n"), None);
    }

    #[test]
    fn controller_lists_are_matched_by_word() {
        assert!(lists_controller("cpuset cpu io memory pids\n", "cpu"));
        assert!(!lists_controller("cpuset io\n", "cpu"));
        assert!(!lists_controller("", "cpu"));
    }

    /// Random mutations of well-formed files and random bytes: every parser returns
    /// without panicking.
    #[test]
    fn parsers_never_panic_on_malformed_input() {
        const SEEDS: [&str; 8] = [
            "max 100000\n",
            "150000 100000\n",
            "usage_usec 1\nnr_periods 2\nnr_throttled 3\nthrottled_usec 4\n",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            "0::/kubepods/a\n",
            "31 25 0:27 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n",
            "max\n",
            "anon 1\ninactive_file 2\n",
        ];
        const ALPHABET: &[u8] = b" \n=\\0123456789maxvgsomefull.-/:";
        let mut rng = fastrand::Rng::with_seed(0x5eed);
        for round in 0..20_000 {
            let mut bytes = SEEDS[round % SEEDS.len()].as_bytes().to_vec();
            for _ in 0..rng.usize(1..6) {
                let at = rng.usize(0..=bytes.len());
                match rng.u8(0..4) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 => bytes.insert(at, ALPHABET[rng.usize(0..ALPHABET.len())]),
                    2 => bytes.insert(at, rng.u8(..)),
                    _ if at < bytes.len() => bytes[at] = rng.u8(..),
                    _ => {}
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = CpuMax::parse(&text).map(|m| (m.cores(), m.threads(4)));
            let _ = bytes_or_max(&text);
            let _ = flat_keyed(&text, "inactive_file");
            let _ = CpuStat::parse(&text);
            let _ = Pressure::parse(&text);
            let _ = unified_path(&text);
            let _ = cgroup2_mount(&text);
        }
    }
}
