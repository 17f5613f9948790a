//! The pod's own cgroup v2: what it allows (`cpu.max`, `memory.max`), what it uses
//! (`memory.current`, `cpu.stat`), how stalled it is (PSI), and, where the subtree is
//! delegated, one threaded child cgroup per tenant for the worker threads of the models
//! the tenant owns.
//!
//! - [`PodCgroup`] finds the process's cgroup directory (`0::<path>` of
//!   `/proc/self/cgroup` under the cgroup2 mount, `/` in a container with its own cgroup
//!   namespace) and reads its files into a [`Snapshot`]. A file that is absent (no cgroup
//!   v2, PSI off, the cpu controller not enabled) leaves its figure unknown, logged once.
//! - [`intra_op_threads`] sizes libtorch's threads from the CPU quota.
//! - [`memory`] refuses a model load that would not fit under `memory.max`.
//! - [`metrics`] exports the figures at scrape time.
//! - [`slices`] manages the per-tenant child cgroups.
//!
//! Reading is plain file reads with our own parsers (see [`parse`]): `cgroups-rs`'s
//! `Cgroup`/`Hierarchy` types are bound to `/sys/fs/cgroup` (they cannot be pointed at a
//! test tree or at a hybrid host's `/sys/fs/cgroup/unified`), its readers fold a missing
//! file into zeros (so "no limit" and "absent" look alike), and it has no PSI reader.
//! `cgroups-rs`'s per-directory controllers do fit slice management; [`slices`] uses them.

pub mod memory;
pub mod metrics;
pub mod parse;
pub mod slices;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

pub use metrics::CgroupMetrics;
pub use parse::{CpuMax, CpuStat, Pressure, PsiLine};

/// Where the cgroup v2 hierarchy is usually mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// Overrides the directory of the pod's cgroup (skipping `/proc/self` discovery): for
/// tests with a fake cgroupfs tree, and for hosts that mount cgroup2 somewhere unusual.
pub const ROOT_ENV: &str = "MODELPLANE_CGROUP_ROOT";

/// The process's own cgroup v2 directory and a record of which absent files were
/// already reported.
#[derive(Clone, Debug)]
pub struct PodCgroup {
    dir: PathBuf,
    read_only: bool,
    reported: Arc<Mutex<HashSet<&'static str>>>,
}

/// What the pod's cgroup says right now; `None` where a file is absent or malformed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Snapshot {
    /// `cpu.max`.
    pub cpu_max: Option<CpuMax>,
    /// `memory.max`: `Some(None)` is `max` (no limit).
    pub memory_max: Option<Option<u64>>,
    /// `memory.current`.
    pub memory_current: Option<u64>,
    /// `inactive_file` of `memory.stat`: page cache the kernel reclaims first.
    pub memory_inactive_file: Option<u64>,
    /// `cpu.stat`.
    pub cpu_stat: Option<CpuStat>,
    /// `cpu.pressure`.
    pub cpu_pressure: Option<Pressure>,
    /// `memory.pressure`.
    pub memory_pressure: Option<Pressure>,
    /// `io.pressure`.
    pub io_pressure: Option<Pressure>,
}

impl PodCgroup {
    /// The process's cgroup, found once per process (see [`PodCgroup::discover`]).
    pub fn current() -> Self {
        static CURRENT: OnceLock<PodCgroup> = OnceLock::new();
        CURRENT.get_or_init(Self::discover).clone()
    }

    /// Finds the process's cgroup v2 directory: `$MODELPLANE_CGROUP_ROOT` if set, else the
    /// `0::<path>` of `/proc/self/cgroup` under the cgroup2 mount of
    /// `/proc/self/mountinfo`, else `/sys/fs/cgroup`.
    pub fn discover() -> Self {
        if let Some(dir) = std::env::var_os(ROOT_ENV) {
            return Self::at(PathBuf::from(dir));
        }
        let read = |path| std::fs::read_to_string(path).unwrap_or_default();
        let (cgroup, mountinfo) = (read("/proc/self/cgroup"), read("/proc/self/mountinfo"));
        let found = locate(&cgroup, &mountinfo);
        tracing::debug!(dir = %found.0.display(), read_only = found.1, "the pod's cgroup");
        Self {
            read_only: found.1,
            ..Self::at(found.0)
        }
    }

    /// The cgroup at `dir` (a test tree, or a directory known otherwise).
    pub fn at(dir: PathBuf) -> Self {
        Self {
            dir,
            read_only: false,
            reported: Arc::default(),
        }
    }

    /// The same cgroup, as if its mount were read-only (or not).
    pub fn with_read_only(self, read_only: bool) -> Self {
        Self { read_only, ..self }
    }

    /// The cgroup's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether the cgroup2 mount is read-only (no slices can be made).
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Reads every figure the runtime uses.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            cpu_max: self.read("cpu.max", CpuMax::parse),
            memory_max: self.read("memory.max", parse::bytes_or_max),
            memory_current: self.read("memory.current", parse::bytes),
            memory_inactive_file: self.read("memory.stat", |text| {
                parse::flat_keyed(text, "inactive_file")
            }),
            cpu_stat: self.read("cpu.stat", |text| Some(CpuStat::parse(text))),
            cpu_pressure: self.read("cpu.pressure", |text| Some(Pressure::parse(text))),
            memory_pressure: self.read("memory.pressure", |text| Some(Pressure::parse(text))),
            io_pressure: self.read("io.pressure", |text| Some(Pressure::parse(text))),
        }
    }

    /// The memory figures only (what a load checks).
    pub fn memory(&self) -> Snapshot {
        Snapshot {
            memory_max: self.read("memory.max", parse::bytes_or_max),
            memory_current: self.read("memory.current", parse::bytes),
            memory_inactive_file: self.read("memory.stat", |text| {
                parse::flat_keyed(text, "inactive_file")
            }),
            ..Snapshot::default()
        }
    }

    /// libtorch intra-op threads for this process: the configured number, else the
    /// cgroup CPU quota, else the host's cores.
    pub fn intra_op_threads(&self, configured: Option<u32>) -> usize {
        let host = std::thread::available_parallelism().map_or(1, usize::from);
        match configured {
            Some(n) => (n as usize).max(1),
            None => self
                .read("cpu.max", CpuMax::parse)
                .unwrap_or(CpuMax::Unlimited)
                .threads(host),
        }
    }

    /// Reads and parses one file; an absent or malformed one is `None`, logged once.
    fn read<T>(&self, file: &'static str, parse: impl FnOnce(&str) -> Option<T>) -> Option<T> {
        let path = self.dir.join(file);
        let outcome = match std::fs::read_to_string(&path) {
            Ok(text) => parse(&text).ok_or("malformed"),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Err("absent"),
            Err(_) => Err("unreadable"),
        };
        outcome
            .inspect_err(|why| self.report_once(file, &path, why))
            .ok()
    }

    fn report_once(&self, file: &'static str, path: &Path, why: &str) {
        let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
        if reported.insert(file) {
            tracing::info!(
                path = %path.display(),
                "cgroup file {why} (no cgroup v2, controller not enabled, or PSI off); \
                 its figures are not exported"
            );
        }
    }
}

/// The cgroup directory of this process and whether its mount is read-only, from the
/// text of `/proc/self/cgroup` and `/proc/self/mountinfo`.
pub(crate) fn locate(proc_self_cgroup: &str, mountinfo: &str) -> (PathBuf, bool) {
    let path = parse::unified_path(proc_self_cgroup).unwrap_or("/");
    let Some(mount) = parse::cgroup2_mount(mountinfo) else {
        return (join_cgroup(Path::new(CGROUP_ROOT), path), false);
    };
    // A container's mount root is its own cgroup, and so is its `0::/` line (cgroup
    // namespace); a host mount's root is `/` and the line is the full path.
    let relative = Path::new(path)
        .strip_prefix(&mount.root)
        .map_or_else(|_| PathBuf::from(path), Path::to_path_buf);
    let dir = join_cgroup(Path::new(&mount.mount_point), &relative.to_string_lossy());
    (dir, mount.read_only)
}

fn join_cgroup(mount_point: &Path, path: &str) -> PathBuf {
    let relative = path.trim_start_matches('/');
    if relative.is_empty() {
        mount_point.to_owned()
    } else {
        mount_point.join(relative)
    }
}

/// libtorch intra-op threads: the configured number, else the CPU quota of the cgroup
/// at `dir`, else the host's cores (see [`PodCgroup::intra_op_threads`]).
pub fn intra_op_threads(configured: Option<u32>, dir: &Path) -> usize {
    PodCgroup::at(dir.to_owned()).intra_op_threads(configured)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fake cgroupfs directory laid out as the kernel does for a container's cgroup.
    pub(crate) fn fake_tree(dir: &Path) {
        let files = [
            ("cgroup.controllers", "cpuset cpu io memory pids\n"),
            ("cgroup.subtree_control", ""),
            ("cgroup.type", "domain\n"),
            ("cgroup.procs", ""),
            ("cgroup.threads", ""),
            ("cpu.max", "max 100000\n"),
            ("cpu.weight", "100\n"),
            (
                "cpu.stat",
                "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000\n\
                 nr_periods 10\nnr_throttled 2\nthrottled_usec 250000\n",
            ),
            ("memory.max", "max\n"),
            ("memory.current", "104857600\n"),
            (
                "memory.stat",
                "anon 52428800\nfile 52428800\ninactive_file 20971520\n",
            ),
            (
                "cpu.pressure",
                "some avg10=1.25 avg60=0.00 avg300=0.00 total=3000000\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
            (
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
            ),
            (
                "io.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=500000\n\
                 full avg10=0.00 avg60=0.00 avg300=0.00 total=250000\n",
            ),
        ];
        for (name, text) in files {
            std::fs::write(dir.join(name), text).expect("write fake cgroup file");
        }
    }

    #[test]
    fn a_snapshot_reads_every_file_of_the_tree() {
        let dir = tempfile::tempdir().expect("tempdir");
        fake_tree(dir.path());
        let snapshot = PodCgroup::at(dir.path().to_owned()).snapshot();
        assert_eq!(snapshot.cpu_max, Some(CpuMax::Unlimited));
        assert_eq!(snapshot.memory_max, Some(None));
        assert_eq!(snapshot.memory_current, Some(100 << 20));
        assert_eq!(snapshot.memory_inactive_file, Some(20 << 20));
        assert_eq!(
            snapshot.cpu_stat.and_then(|s| s.throttled_usec),
            Some(250_000)
        );
        let cpu = snapshot.cpu_pressure.and_then(|p| p.some).expect("some");
        assert_eq!((cpu.avg10, cpu.total_usec), (1.25, 3_000_000));
        assert_eq!(
            snapshot
                .io_pressure
                .and_then(|p| p.full)
                .map(|f| f.total_usec),
            Some(250_000)
        );
    }

    #[test]
    fn absent_files_leave_figures_unknown_without_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cpu.max"), "garbage\n").expect("write");
        let pod = PodCgroup::at(dir.path().join("nowhere"));
        assert_eq!(pod.snapshot(), Snapshot::default());
        // Twice: the second read is not logged again (and still not an error).
        assert_eq!(pod.snapshot(), Snapshot::default());
        let malformed = PodCgroup::at(dir.path().to_owned());
        assert_eq!(malformed.snapshot().cpu_max, None);
    }

    #[test]
    fn threads_come_from_the_configured_number_else_the_quota() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cpu.max"), "200000 100000\n").expect("write");
        let host = std::thread::available_parallelism().map_or(1, usize::from);
        assert_eq!(intra_op_threads(Some(3), dir.path()), 3);
        assert_eq!(intra_op_threads(None, dir.path()), 2.min(host));
        assert_eq!(intra_op_threads(None, Path::new("/nonexistent")), host);
        assert_eq!(intra_op_threads(Some(0), dir.path()), 1);
    }

    #[test]
    fn the_directory_is_the_unified_path_under_the_cgroup2_mount() {
        let host_mount = "31 25 0:27 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate("0::/kubepods/pod1/c1\n", host_mount),
            (PathBuf::from("/sys/fs/cgroup/kubepods/pod1/c1"), false)
        );
        // A container: its own cgroup is both the mount root and `/`.
        let container = "1 0 0:29 /kubepods/pod1/c1 /sys/fs/cgroup ro - cgroup2 cgroup rw\n";
        assert_eq!(
            locate("0::/\n", container),
            (PathBuf::from("/sys/fs/cgroup"), true)
        );
        // A hybrid host (cgroup v1 controllers, v2 at /sys/fs/cgroup/unified).
        let hybrid = "31 25 0:27 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate("4:memory:/x\n0::/\n", hybrid),
            (PathBuf::from("/sys/fs/cgroup/unified"), false)
        );
        assert_eq!(locate("", ""), (PathBuf::from(CGROUP_ROOT), false));
    }
}
