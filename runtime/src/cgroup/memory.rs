//! Refusing a model load that would not fit under the pod's `memory.max`.
//!
//! A load needs roughly its artifact's size in resident memory, and it needs it while
//! the version it replaces still holds its own memory (the old version serves until the
//! new one is ready). So the check compares the new version's estimated need with what
//! is free now: `memory.max − (memory.current − inactive_file)`. `inactive_file` is page
//! cache the kernel reclaims before it would OOM-kill (the kubelet's working set counts
//! memory the same way); without that, a model just downloaded or read would count
//! twice, once as cache and once as the tensors it becomes.
//!
//! The need is an estimate, not a measurement:
//! - **CPU loads:** the artifact's bytes on disk × [`CPU_FACTOR`] (1.1): the weights
//!   become tensors of the same size, plus about 10 % for the deserializer's buffers,
//!   the TorchScript graph and allocator slack.
//! - **CUDA loads:** the weights end in device memory; host memory only stages them while
//!   they are read and copied over, record by record. [`CUDA_FACTOR`] (0.25) of the
//!   artifact covers those staging buffers for models whose largest tensors are a small
//!   share of the whole. (CUDA's own context, a few hundred MiB of host memory once per
//!   process, is not counted per load.)
//! - Generate models add their KV cache when it lives in host memory (CPU).
//!
//! `memory.max` of `max`, or no cgroup v2 at all, means no check.

use std::path::Path;

use modelplane_config::Device;

use super::Snapshot;

/// Resident bytes per artifact byte for a CPU load.
pub const CPU_FACTOR: f64 = 1.1;

/// Host bytes per artifact byte for a CUDA load (staging only).
pub const CUDA_FACTOR: f64 = 0.25;

/// What a version is estimated to need in the pod's memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryNeed {
    /// Bytes.
    pub bytes: u64,
}

impl MemoryNeed {
    /// The need of loading `artifact_bytes` of weights on `device` (see the module docs).
    pub fn of_artifact(artifact_bytes: u64, device: Device) -> Self {
        let factor = match device {
            Device::Cpu => CPU_FACTOR,
            Device::Cuda => CUDA_FACTOR,
        };
        Self {
            bytes: (artifact_bytes as f64 * factor).ceil() as u64,
        }
    }

    /// This need plus `extra` bytes (a KV cache in host memory).
    pub fn plus(self, extra: u64) -> Self {
        Self {
            bytes: self.bytes.saturating_add(extra),
        }
    }
}

/// A load refused because it would not fit under `memory.max`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "model {model} version {version} needs ~{} but only {} {} free under the cgroup's \
     memory.max of {}{hint}",
    human(self.need), human(self.free), if self.free == 1 { "is" } else { "are" }, human(self.max)
)]
pub struct MemoryRefusal {
    /// Model name.
    pub model: String,
    /// Version label.
    pub version: String,
    /// Estimated need, bytes.
    pub need: u64,
    /// Free under the limit, bytes.
    pub free: u64,
    /// `memory.max`, bytes.
    pub max: u64,
    /// Appended to the message: what the need is made of, what to change.
    pub hint: String,
}

/// Refuses `need` when it exceeds what is free under `memory.max` in `memory`. Model and
/// version name the load in the error; `hint` is appended to its message.
pub fn admit(
    memory: &Snapshot,
    need: MemoryNeed,
    (model, version): (&str, &str),
    hint: &str,
) -> Result<(), MemoryRefusal> {
    let Some(Some(max)) = memory.memory_max else {
        return Ok(());
    };
    let used = memory
        .memory_current
        .unwrap_or(0)
        .saturating_sub(memory.memory_inactive_file.unwrap_or(0));
    let free = max.saturating_sub(used);
    if need.bytes <= free {
        return Ok(());
    }
    Err(MemoryRefusal {
        model: model.to_owned(),
        version: version.to_owned(),
        need: need.bytes,
        free,
        max,
        hint: hint.to_owned(),
    })
}

/// Bytes on disk of an artifact: a file's size, or the sum over a folder's files.
pub fn artifact_bytes(path: &Path) -> u64 {
    fn walk(path: &Path, depth: u32) -> u64 {
        let Ok(meta) = std::fs::metadata(path) else {
            return 0;
        };
        if meta.is_file() {
            return meta.len();
        }
        if !meta.is_dir() || depth > 8 {
            return 0;
        }
        std::fs::read_dir(path).map_or(0, |entries| {
            entries
                .flatten()
                .map(|entry| walk(&entry.path(), depth + 1))
                .fold(0, u64::saturating_add)
        })
    }
    walk(path, 0)
}

/// `1.2 GiB`, `300 MiB`, `12 KiB`, `512 B`: one decimal for GiB (none when whole),
/// whole MiB and KiB below.
pub fn human(bytes: u64) -> String {
    const KIB: u64 = 1 << 10;
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        let tenths = (bytes as f64 / GIB as f64 * 10.0).round() / 10.0;
        if tenths.fract() == 0.0 {
            format!("{tenths:.0} GiB")
        } else {
            format!("{tenths:.1} GiB")
        }
    } else if bytes >= MIB {
        format!("{} MiB", bytes / MIB)
    } else if bytes >= KIB {
        format!("{} KiB", bytes / KIB)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(max: u64, current: u64, inactive_file: u64) -> Snapshot {
        Snapshot {
            memory_max: Some(Some(max)),
            memory_current: Some(current),
            memory_inactive_file: Some(inactive_file),
            ..Snapshot::default()
        }
    }

    #[test]
    fn a_load_larger_than_the_free_memory_is_refused_with_the_figures() {
        let gib = 1u64 << 30;
        let memory = limited(2 * gib, 2 * gib - (300 << 20), 0);
        let need = MemoryNeed {
            bytes: gib + gib / 5,
        };
        let err = admit(&memory, need, ("m", "2"), "").expect_err("too big");
        assert_eq!(
            err.to_string(),
            "model m version 2 needs ~1.2 GiB but only 300 MiB are free under the \
             cgroup's memory.max of 2 GiB"
        );
        assert_eq!(
            admit(&memory, MemoryNeed { bytes: 300 << 20 }, ("m", "2"), ""),
            Ok(())
        );
    }

    #[test]
    fn reclaimable_page_cache_counts_as_free() {
        let memory = limited(1000, 900, 500);
        assert_eq!(
            admit(&memory, MemoryNeed { bytes: 550 }, ("m", "1"), ""),
            Ok(())
        );
        let err = admit(&memory, MemoryNeed { bytes: 700 }, ("m", "1"), "").expect_err("big");
        assert_eq!(err.free, 600);
        // memory.current above memory.max (possible briefly) leaves nothing free.
        let over = limited(1000, 2000, 0);
        let err = admit(&over, MemoryNeed { bytes: 1 }, ("m", "1"), "").expect_err("full");
        assert_eq!(err.free, 0);
    }

    #[test]
    fn no_limit_or_no_cgroup_means_no_check() {
        let huge = MemoryNeed { bytes: u64::MAX };
        let unlimited = Snapshot {
            memory_max: Some(None),
            memory_current: Some(1 << 40),
            ..Snapshot::default()
        };
        assert_eq!(admit(&unlimited, huge, ("m", "1"), ""), Ok(()));
        assert_eq!(admit(&Snapshot::default(), huge, ("m", "1"), ""), Ok(()));
    }

    #[test]
    fn the_hint_follows_the_figures() {
        let err = admit(
            &limited(1 << 30, 1 << 29, 0),
            MemoryNeed { bytes: 2 << 30 },
            ("llm", "1"),
            "; lower generation.slots",
        )
        .expect_err("too big");
        assert_eq!(
            err.to_string(),
            "model llm version 1 needs ~2 GiB but only 512 MiB are free under the cgroup's \
             memory.max of 1 GiB; lower generation.slots"
        );
    }

    #[test]
    fn the_need_scales_the_artifact_by_device() {
        assert_eq!(MemoryNeed::of_artifact(1000, Device::Cpu).bytes, 1100);
        assert_eq!(MemoryNeed::of_artifact(1000, Device::Cuda).bytes, 250);
        assert_eq!(
            MemoryNeed::of_artifact(1000, Device::Cpu).plus(5).bytes,
            1105
        );
    }

    #[test]
    fn artifact_sizes_cover_files_and_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("model.pt"), vec![0u8; 1000]).expect("write");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/extra"), vec![0u8; 24]).expect("write");
        assert_eq!(artifact_bytes(&dir.path().join("model.pt")), 1000);
        assert_eq!(artifact_bytes(dir.path()), 1024);
        assert_eq!(artifact_bytes(&dir.path().join("missing")), 0);
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human(2 << 30), "2 GiB");
        assert_eq!(human((1 << 30) + (1 << 30) / 5), "1.2 GiB");
        assert_eq!(human(300 << 20), "300 MiB");
        assert_eq!(human(12 << 10), "12 KiB");
        assert_eq!(human(512), "512 B");
    }
}
