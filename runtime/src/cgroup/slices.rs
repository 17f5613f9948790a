//! Per-tenant slices: a threaded child cgroup `tenant-<name>` of the pod's cgroup for
//! each tenant with a `cgroup` config, holding the worker threads (executor or engine
//! thread, and the OpenMP threads each spawns) of the models the tenant owns, under the
//! tenant's `cpu.weight` and `cpu.max`.
//!
//! Threaded mode is what lets one process's threads sit in different cgroups: writing
//! `threaded` to a child's `cgroup.type` turns the pod's cgroup into a threaded domain,
//! `+cpu` in its `cgroup.subtree_control` gives the children the cpu controller (a
//! threaded controller, so allowed beside the process that stays in the parent), and a
//! thread joins a slice by writing its TID to the slice's `cgroup.threads`.
//!
//! This needs the subtree delegated: a writable cgroup2 mount and the cpu controller
//! available to the pod's cgroup. Where it is not, the first attempt says why once in
//! the log, `modelplane_cgroup_tenant_slices{state="unavailable"}` turns 1, and nothing
//! else changes: admission alone keeps tenants apart. No cgroup failure fails a load.
//!
//! Directory operations go through `cgroups-rs`'s [`CpuController`], pointed at each
//! slice's directory (its `Cgroup`/`Hierarchy` API assumes `/sys/fs/cgroup` and would
//! enable every controller, memory included, along the path, which a threaded subtree
//! refuses). Two writes are direct: `+cpu` into the parent's `cgroup.subtree_control`
//! (the crate's helper for it is private) and `cpu.max` (the crate's setter reads the
//! old value back first, which fails before the controller is enabled and is not needed
//! when both quota and period are written).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use cgroups_rs::CgroupPid;
use cgroups_rs::fs::Controller;
use cgroups_rs::fs::cpu::CpuController;
use modelplane_config::TenantConfig;
use modelplane_config::units::{CpuMax as ConfigCpuMax, parse_cpu_max};

use super::{CpuMax, PodCgroup, parse};

/// Prefix of a slice's directory name.
pub const SLICE_PREFIX: &str = "tenant-";

/// Why a slice operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SliceError {
    /// A file could not be read or written.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// `cgroups-rs` reported a failure.
    #[error("{action} {path}: {source}")]
    Cgroup {
        /// What was being done.
        action: &'static str,
        /// The slice directory.
        path: PathBuf,
        /// The crate's error.
        source: cgroups_rs::fs::error::Error,
    },
    /// The pod's cgroup cannot host slices.
    #[error("{0}")]
    Unavailable(String),
    /// The calling thread's id cannot be told.
    #[error("cannot tell the thread id: /proc/thread-self is {0:?}")]
    ThreadId(PathBuf),
}

/// Live counts for `modelplane_cgroup_tenant_slices`.
#[derive(Debug, Default)]
pub struct SliceStatus {
    active: AtomicI64,
    unavailable: AtomicBool,
}

impl SliceStatus {
    /// Slices that exist now.
    pub fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether slices were wanted and cannot be made here.
    pub fn unavailable(&self) -> bool {
        self.unavailable.load(Ordering::Relaxed)
    }
}

/// The cpu settings of one tenant's slice.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SliceSettings {
    /// `cpu.weight` (1–10000); unset: the kernel's default, 100.
    pub cpu_weight: Option<u32>,
    /// `cpu.max`; unset: no quota.
    pub cpu_max: Option<CpuMax>,
}

impl SliceSettings {
    /// The settings of a tenant, if it asks for a slice (an invalid `cpuMax`, which the
    /// config check refuses, counts as none).
    pub fn of(tenant: &TenantConfig) -> Option<Self> {
        let cgroup = tenant.cgroup.as_ref()?;
        let cpu_max = cgroup
            .cpu_max
            .as_deref()
            .and_then(|text| parse_cpu_max(text).ok())
            .map(|max| match max {
                ConfigCpuMax::Unlimited => CpuMax::Unlimited,
                ConfigCpuMax::Millicores(m) => CpuMax::from_millicores(m),
            });
        Some(Self {
            cpu_weight: cgroup.cpu_weight,
            cpu_max,
        })
    }
}

/// Whether slices can be made in the pod's cgroup.
#[derive(Clone, Debug, PartialEq)]
enum Availability {
    /// Not tried yet.
    Unknown,
    /// Probed and usable.
    Available,
    /// Not delegated or not writable, and why.
    Unavailable(String),
}

#[derive(Debug)]
struct State {
    /// Tenants that want a slice, by name.
    wanted: HashMap<String, SliceSettings>,
    /// Slices made, with the settings written to them (`None`: not written yet).
    made: HashMap<String, Option<SliceSettings>>,
    availability: Availability,
}

/// The tenant slices of this process.
#[derive(Debug)]
pub struct Slices {
    pod: PodCgroup,
    status: Arc<SliceStatus>,
    state: Mutex<State>,
}

impl Slices {
    /// Slices under `pod`, reporting to `status`.
    pub fn new(pod: PodCgroup, status: Arc<SliceStatus>) -> Self {
        Self {
            pod,
            status,
            state: Mutex::new(State {
                wanted: HashMap::new(),
                made: HashMap::new(),
                availability: Availability::Unknown,
            }),
        }
    }

    /// Records the tenants of a config; `true` when what is wanted changed and
    /// [`Slices::apply`] has work to do. Cheap: no I/O.
    pub fn configure(&self, tenants: &[TenantConfig]) -> bool {
        let wanted: HashMap<String, SliceSettings> = tenants
            .iter()
            .filter_map(|t| Some((t.name.clone(), SliceSettings::of(t)?)))
            .collect();
        let mut state = self.lock();
        if state.wanted == wanted {
            return false;
        }
        state.wanted = wanted;
        true
    }

    /// Makes the slices wanted, updates the settings of existing ones, and removes the
    /// slices of tenants that left once they hold no thread. Blocking file I/O.
    pub fn apply(&self) {
        let mut state = self.lock();
        let wanted = state.wanted.clone();
        for (tenant, settings) in &wanted {
            if let Err(err) = self.ensure(&mut state, tenant, *settings) {
                tracing::warn!(tenant = %tenant, error = %err, "cannot set up the tenant's cgroup slice");
            }
        }
        let departed: Vec<String> = state
            .made
            .keys()
            .filter(|tenant| !wanted.contains_key(*tenant))
            .cloned()
            .collect();
        for tenant in departed {
            match self.remove(&tenant) {
                Ok(true) => {
                    state.made.remove(&tenant);
                    tracing::info!(tenant = %tenant, "removed the cgroup slice of a tenant that left");
                }
                Ok(false) => {
                    tracing::debug!(tenant = %tenant, "slice still holds threads; removed once empty");
                }
                Err(err) => {
                    tracing::warn!(tenant = %tenant, error = %err, "cannot remove a tenant's cgroup slice")
                }
            }
        }
        self.count(&state);
    }

    /// Moves the calling thread into `tenant`'s slice, making the slice first if needed.
    /// Returns whether it moved; failures are logged, never fatal. A tenant without a
    /// `cgroup` config, or a pod whose subtree is not delegated, leaves the thread where
    /// it is.
    pub fn join_current_thread(&self, tenant: &str) -> bool {
        let mut state = self.lock();
        let Some(settings) = state.wanted.get(tenant).copied() else {
            return false;
        };
        let joined = self.ensure(&mut state, tenant, settings).and_then(|dir| {
            let tid = current_tid()?;
            join(&dir, tid)?;
            Ok(tid)
        });
        self.count(&state);
        match joined {
            Ok(tid) => {
                tracing::debug!(
                    tenant,
                    tid,
                    "worker thread joined the tenant's cgroup slice"
                );
                true
            }
            Err(SliceError::Unavailable(_)) => false,
            Err(err) => {
                tracing::warn!(tenant, error = %err, "worker thread stays in the pod's cgroup");
                false
            }
        }
    }

    /// Publishes how many slices exist.
    fn count(&self, state: &State) {
        let made = i64::try_from(state.made.len()).unwrap_or(i64::MAX);
        self.status.active.store(made, Ordering::Relaxed);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The slice of `tenant` with `settings` written, made if missing.
    fn ensure(
        &self,
        state: &mut State,
        tenant: &str,
        settings: SliceSettings,
    ) -> Result<PathBuf, SliceError> {
        if let Availability::Unavailable(why) = &state.availability {
            return Err(SliceError::Unavailable(why.clone()));
        }
        if state.availability == Availability::Unknown {
            if let Err(why) = probe(&self.pod) {
                return Err(self.unavailable(state, why));
            }
            state.availability = Availability::Available;
        }
        let dir = self.pod.dir().join(format!("{SLICE_PREFIX}{tenant}"));
        match state.made.get(tenant) {
            Some(Some(written)) if *written == settings => return Ok(dir),
            Some(_) => {}
            None => {
                if let Err(err) = make(self.pod.dir(), &dir) {
                    // The first slice tells whether the subtree is delegated.
                    if state.made.is_empty() {
                        return Err(self.unavailable(state, err.to_string()));
                    }
                    return Err(err);
                }
                state.made.insert(tenant.to_owned(), None);
                tracing::info!(tenant, dir = %dir.display(), "made the tenant's cgroup slice");
            }
        }
        // Not recorded as written until both files are: the next call tries again.
        write_settings(&dir, settings)?;
        state.made.insert(tenant.to_owned(), Some(settings));
        Ok(dir)
    }

    /// Records (and logs, once) that slices cannot be made here.
    fn unavailable(&self, state: &mut State, why: String) -> SliceError {
        tracing::warn!(
            reason = %why,
            "tenant cgroup slices are unavailable; per-tenant admission alone holds tenants apart"
        );
        self.status.unavailable.store(true, Ordering::Relaxed);
        state.availability = Availability::Unavailable(why.clone());
        SliceError::Unavailable(why)
    }

    /// Removes `tenant`'s slice if it holds no thread; `Ok(false)` while it does.
    fn remove(&self, tenant: &str) -> Result<bool, SliceError> {
        let dir = self.pod.dir().join(format!("{SLICE_PREFIX}{tenant}"));
        let slice = controller(&dir);
        if !slice.exists() {
            return Ok(true);
        }
        if !slice.tasks().is_empty() {
            return Ok(false);
        }
        slice.delete().map_err(|source| SliceError::Cgroup {
            action: "cannot remove",
            path: dir,
            source,
        })?;
        Ok(true)
    }
}

/// A model's way into its tenant's slice, carried into the loader that runs on the
/// model's worker thread.
#[derive(Clone, Debug)]
pub struct SliceJoin {
    slices: Arc<Slices>,
    tenant: String,
}

impl SliceJoin {
    /// Moves the calling thread into the slice (see [`Slices::join_current_thread`]).
    pub fn join_current_thread(&self) -> bool {
        self.slices.join_current_thread(&self.tenant)
    }
}

/// The way into the slice of `tenant`, for a model that names one.
pub fn for_tenant(slices: &Arc<Slices>, tenant: Option<&str>) -> Option<SliceJoin> {
    Some(SliceJoin {
        slices: Arc::clone(slices),
        tenant: tenant?.to_owned(),
    })
}

/// Why the pod's cgroup cannot host slices, if it cannot.
fn probe(pod: &PodCgroup) -> Result<(), String> {
    let dir = pod.dir();
    if pod.read_only() {
        return Err(format!("cgroup {} is read-only", dir.display()));
    }
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).map_err(|err| {
        format!(
            "{} is not a cgroup v2 directory (cgroup.controllers: {err})",
            dir.display()
        )
    })?;
    if !parse::lists_controller(&controllers, "cpu") {
        return Err(format!(
            "the cpu controller is not delegated to cgroup {} (cgroup.controllers: {:?})",
            dir.display(),
            controllers.trim()
        ));
    }
    Ok(())
}

fn controller(dir: &Path) -> CpuController {
    CpuController::new(dir.to_owned(), dir.to_owned(), true)
}

/// Makes the threaded slice at `dir` under `parent` and gives it the cpu controller.
fn make(parent: &Path, dir: &Path) -> Result<(), SliceError> {
    make_threaded(dir)?;
    enable_cpu(parent)
}

/// Makes the directory at `dir` a threaded cgroup (its parent becomes a threaded domain).
fn make_threaded(dir: &Path) -> Result<(), SliceError> {
    let slice = controller(dir);
    let crate_error = |action| {
        let path = dir.to_owned();
        move |source| SliceError::Cgroup {
            action,
            path,
            source,
        }
    };
    slice.create().map_err(crate_error("cannot create"))?;
    let threaded = slice.get_cgroup_type().is_ok_and(|kind| kind == "threaded");
    if !threaded && let Err(err) = slice.set_cgroup_type("threaded") {
        let _ = std::fs::remove_dir(dir);
        return Err(crate_error("cannot make threaded")(err));
    }
    Ok(())
}

/// Enables the cpu controller for the children of `parent`.
fn enable_cpu(parent: &Path) -> Result<(), SliceError> {
    let control = parent.join("cgroup.subtree_control");
    let enabled =
        std::fs::read_to_string(&control).is_ok_and(|text| parse::lists_controller(&text, "cpu"));
    if !enabled {
        std::fs::write(&control, "+cpu").map_err(|source| SliceError::Io {
            action: "cannot enable +cpu in",
            path: control,
            source,
        })?;
    }
    Ok(())
}

/// Writes `cpu.weight` and `cpu.max` of the slice at `dir`.
fn write_settings(dir: &Path, settings: SliceSettings) -> Result<(), SliceError> {
    let weight = settings.cpu_weight.unwrap_or(100);
    controller(dir)
        .set_shares(u64::from(weight))
        .map_err(|source| SliceError::Cgroup {
            action: "cannot write cpu.weight of",
            path: dir.to_owned(),
            source,
        })?;
    let line = match settings.cpu_max.unwrap_or(CpuMax::Unlimited) {
        CpuMax::Unlimited => "max 100000".to_owned(),
        CpuMax::Quota { quota, period } => format!("{quota} {period}"),
    };
    let path = dir.join("cpu.max");
    std::fs::write(&path, line).map_err(|source| SliceError::Io {
        action: "cannot write",
        path,
        source,
    })
}

/// Moves thread `tid` into the slice at `dir`.
fn join(dir: &Path, tid: u64) -> Result<(), SliceError> {
    controller(dir)
        .add_task(&CgroupPid::from(tid))
        .map_err(|source| SliceError::Cgroup {
            action: "cannot move the thread into",
            path: dir.to_owned(),
            source,
        })
}

/// The kernel's id of the calling thread, from `/proc/thread-self` (`<pid>/task/<tid>`).
pub fn current_tid() -> Result<u64, SliceError> {
    let path = Path::new("/proc/thread-self");
    let link = std::fs::read_link(path).map_err(|source| SliceError::Io {
        action: "cannot read",
        path: path.to_owned(),
        source,
    })?;
    link.file_name()
        .and_then(|name| name.to_str()?.parse().ok())
        .ok_or(SliceError::ThreadId(link.clone()))
}

#[cfg(test)]
mod tests;
