//! The pod's own cgroup v2 limits: CPU quota for sizing libtorch threads, memory figures.

use std::path::Path;

/// Where this process's cgroup v2 files are mounted inside a container.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

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
}

/// Reads `cpu.max` under `root`; `None` outside a cgroup v2 hierarchy.
pub fn read_cpu_max(root: &Path) -> Option<CpuMax> {
    CpuMax::parse(&std::fs::read_to_string(root.join("cpu.max")).ok()?)
}

/// Reads a single-number cgroup file such as `memory.current`; `None` for `max` or absent.
pub fn read_bytes(root: &Path, file: &str) -> Option<u64> {
    std::fs::read_to_string(root.join(file))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// libtorch intra-op threads for this process: the configured number, else the
/// cgroup CPU quota, else the host's cores.
pub fn intra_op_threads(configured: Option<u32>, root: &Path) -> usize {
    let host = std::thread::available_parallelism().map_or(1, usize::from);
    match configured {
        Some(n) => (n as usize).max(1),
        None => read_cpu_max(root)
            .unwrap_or(CpuMax::Unlimited)
            .threads(host),
    }
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
    fn files_are_read_from_the_given_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cpu.max"), "200000 100000\n").expect("write");
        std::fs::write(dir.path().join("memory.max"), "max\n").expect("write");
        std::fs::write(dir.path().join("memory.current"), "1048576\n").expect("write");
        assert_eq!(
            read_cpu_max(dir.path()),
            Some(CpuMax::Quota {
                quota: 200_000,
                period: 100_000
            })
        );
        assert_eq!(read_cpu_max(Path::new("/nonexistent")), None);
        assert_eq!(intra_op_threads(Some(3), dir.path()), 3);
        assert_eq!(read_bytes(dir.path(), "memory.max"), None);
        assert_eq!(read_bytes(dir.path(), "memory.current"), Some(1_048_576));
    }
}
