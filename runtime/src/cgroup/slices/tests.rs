//! Slices against a fake cgroupfs tree, and against the real kernel where a writable
//! cgroup2 hierarchy exists.

use std::path::Path;

use modelplane_config::{TenantCgroup, TenantConfig, TenantRequests};

use super::*;
use crate::cgroup::tests::fake_tree;

fn tenant(name: &str, cgroup: Option<(Option<u32>, Option<&str>)>) -> TenantConfig {
    TenantConfig {
        name: name.to_owned(),
        priority: 1,
        band: 0,
        requests: TenantRequests::default(),
        cgroup: cgroup.map(|(cpu_weight, cpu_max)| TenantCgroup {
            cpu_weight,
            cpu_max: cpu_max.map(str::to_owned),
        }),
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn slices_in(dir: &Path) -> Slices {
    Slices::new(PodCgroup::at(dir.to_owned()), Arc::default())
}

/// Runs `work` on a new thread and returns its result and the thread's TID.
fn on_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> (T, u64) {
    std::thread::spawn(move || {
        let tid = current_tid().expect("tid");
        (work(), tid)
    })
    .join()
    .expect("thread")
}

#[test]
fn a_tenant_with_a_cgroup_config_gets_a_threaded_slice_with_its_cpu_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    let slices = slices_in(dir.path());
    let tenants = [
        tenant("a", Some((Some(200), Some("1500m")))),
        tenant("b", None),
    ];
    assert!(slices.configure(&tenants));
    assert!(
        !slices.configure(&tenants),
        "unchanged config: nothing to do"
    );
    slices.apply();

    let slice = dir.path().join("tenant-a");
    assert_eq!(read(&slice.join("cgroup.type")), "threaded");
    assert_eq!(read(&slice.join("cpu.weight")), "200");
    assert_eq!(read(&slice.join("cpu.max")), "150000 100000");
    assert!(read(&dir.path().join("cgroup.subtree_control")).contains("+cpu"));
    assert!(
        !dir.path().join("tenant-b").exists(),
        "b asked for no slice"
    );
    assert_eq!(slices.status.active(), 1);
    assert!(!slices.status.unavailable());
}

#[test]
fn a_worker_thread_joins_its_tenants_slice_by_tid() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    let slices = Arc::new(slices_in(dir.path()));
    slices.configure(&[tenant("a", Some((None, Some("max")))), tenant("b", None)]);

    let worker = Arc::clone(&slices);
    let (joined, tid) = on_thread(move || worker.join_current_thread("a"));
    assert!(joined);
    let slice = dir.path().join("tenant-a");
    assert_eq!(read(&slice.join("cgroup.threads")), tid.to_string());
    assert_eq!(
        read(&slice.join("cpu.weight")),
        "100",
        "the kernel's default"
    );
    assert_eq!(read(&slice.join("cpu.max")), "max 100000");

    let worker = Arc::clone(&slices);
    let (joined, _) = on_thread(move || {
        (
            worker.join_current_thread("b"),
            worker.join_current_thread("nobody"),
        )
    });
    assert_eq!(joined, (false, false), "no slice wanted: threads stay put");
}

#[test]
fn changed_settings_are_written_and_departed_tenants_removed_once_empty() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    let slices = slices_in(dir.path());
    slices.configure(&[
        tenant("a", Some((Some(200), None))),
        tenant("b", Some((Some(50), None))),
    ]);
    slices.apply();
    let (a, b) = (dir.path().join("tenant-a"), dir.path().join("tenant-b"));
    assert_eq!(read(&b.join("cpu.weight")), "50");

    // a's weight changes; b leaves while a thread of its model still runs in it.
    std::fs::write(b.join("cgroup.threads"), "4242\n").expect("fake thread");
    assert!(slices.configure(&[tenant("a", Some((Some(300), Some("2 cores"))))]));
    slices.apply();
    assert_eq!(read(&a.join("cpu.weight")), "300");
    assert_eq!(read(&a.join("cpu.max")), "200000 100000");
    assert!(b.exists(), "a slice with threads is kept");
    assert_eq!(slices.status.active(), 2);

    // The thread exits. The kernel's interface files do not block rmdir; a fake
    // tree's do, so they go first, as the kernel would make them disappear.
    for entry in std::fs::read_dir(&b).expect("read slice") {
        std::fs::remove_file(entry.expect("entry").path()).expect("remove fake file");
    }
    slices.apply();
    assert!(
        !b.exists(),
        "the empty slice of a departed tenant is removed"
    );
    assert_eq!(slices.status.active(), 1);
}

#[test]
fn a_read_only_cgroup_is_reported_once_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    let pod = PodCgroup::at(dir.path().to_owned()).with_read_only(true);
    let slices = Arc::new(Slices::new(pod, Arc::default()));
    slices.configure(&[tenant("a", Some((Some(200), None)))]);
    slices.apply();
    assert!(slices.status.unavailable());
    assert_eq!(slices.status.active(), 0);
    let worker = Arc::clone(&slices);
    assert!(!on_thread(move || worker.join_current_thread("a")).0);
    assert!(!dir.path().join("tenant-a").exists());
    let state = slices.lock();
    assert_eq!(
        state.availability,
        Availability::Unavailable(format!("cgroup {} is read-only", dir.path().display()))
    );
}

#[test]
fn a_cgroup_without_the_cpu_controller_is_unavailable_with_the_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    fake_tree(dir.path());
    std::fs::write(dir.path().join("cgroup.controllers"), "memory pids\n").expect("write");
    let slices = slices_in(dir.path());
    slices.configure(&[tenant("a", Some((Some(200), None)))]);
    slices.apply();
    assert!(slices.status.unavailable());
    let Availability::Unavailable(why) = slices.lock().availability.clone() else {
        panic!("available");
    };
    assert!(why.contains("cpu controller is not delegated"), "{why}");

    let missing = tempfile::tempdir().expect("tempdir");
    let slices = slices_in(&missing.path().join("none"));
    slices.configure(&[tenant("a", Some((Some(200), None)))]);
    slices.apply();
    assert!(slices.status.unavailable(), "not a cgroup v2 directory");
}

#[test]
fn without_tenant_slices_nothing_is_probed_or_reported() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slices = slices_in(&dir.path().join("none"));
    assert!(!slices.configure(&[tenant("a", None)]));
    slices.apply();
    assert!(!slices.status.unavailable());
    assert_eq!(slices.lock().availability, Availability::Unknown);
}

/// The process moved into a scratch child of its own cgroup (a domain, so the scratch
/// cgroup can become a threaded domain), moved back and cleaned up on drop.
struct Scratch {
    original: PathBuf,
    dir: PathBuf,
}

impl Scratch {
    /// `Err(reason)` where no writable cgroup2 hierarchy is at hand.
    fn enter() -> Result<Self, String> {
        let read = |path| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
        let (cgroup, mountinfo) = (read("/proc/self/cgroup")?, read("/proc/self/mountinfo")?);
        let mount = parse::cgroup2_mount(&mountinfo).ok_or("no cgroup2 mount")?;
        if mount.read_only {
            return Err(format!("cgroup2 at {} is read-only", mount.mount_point));
        }
        let (original, _) = crate::cgroup::locate(&cgroup, &mountinfo);
        let dir = original.join(format!("modelplane-test-{}", std::process::id()));
        std::fs::create_dir(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let scratch = Self { original, dir };
        std::fs::write(
            scratch.dir.join("cgroup.procs"),
            std::process::id().to_string(),
        )
        .map_err(|e| {
            format!(
                "cannot move the test process into {}: {e}",
                scratch.dir.display()
            )
        })?;
        Ok(scratch)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let pid = std::process::id().to_string();
        let _ = std::fs::write(self.original.join("cgroup.procs"), pid);
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                if entry.path().is_dir() {
                    let _ = std::fs::remove_dir(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

/// Waits (bounded) until the kernel lists no thread in `slice`: an exited thread leaves
/// its cgroup shortly after `join` returns.
fn wait_empty(slice: &Path) {
    for _ in 0..200 {
        if controller(slice).tasks().is_empty() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("{} still lists threads", slice.display());
}

/// The cgroup of the calling thread as the kernel reports it (`0::<path>`).
fn own_thread_cgroup() -> String {
    let text = std::fs::read_to_string("/proc/thread-self/cgroup").expect("thread cgroup");
    parse::unified_path(&text).expect("unified line").to_owned()
}

#[test]
fn the_real_kernel_puts_a_worker_thread_in_a_threaded_slice() {
    let scratch = match Scratch::enter() {
        Ok(scratch) => scratch,
        Err(reason) => {
            println!("skipped: no writable cgroup2 hierarchy here ({reason})");
            return;
        }
    };
    let controllers = std::fs::read_to_string(scratch.dir.join("cgroup.controllers"))
        .expect("cgroup.controllers");
    if parse::lists_controller(&controllers, "cpu") {
        with_cpu_controller(&scratch);
    } else {
        println!(
            "the cpu controller is not available in {} ({:?}): checking that slices report \
             unavailable, and threaded mode and thread moves without cpu settings",
            scratch.dir.display(),
            controllers.trim()
        );
        without_cpu_controller(&scratch);
    }
}

fn with_cpu_controller(scratch: &Scratch) {
    let slices = Arc::new(slices_in(&scratch.dir));
    slices.configure(&[tenant("a", Some((Some(200), Some("500m"))))]);
    slices.apply();
    assert!(
        !slices.status.unavailable(),
        "{:?}",
        slices.lock().availability
    );
    let slice = scratch.dir.join("tenant-a");
    assert_eq!(read(&slice.join("cgroup.type")).trim(), "threaded");
    assert_eq!(
        read(&scratch.dir.join("cgroup.type")).trim(),
        "domain threaded"
    );
    assert_eq!(read(&slice.join("cpu.weight")).trim(), "200");
    assert_eq!(read(&slice.join("cpu.max")).trim(), "50000 100000");
    let worker = Arc::clone(&slices);
    let ((joined, cgroup), tid) = on_thread(move || {
        let joined = worker.join_current_thread("a");
        (joined, own_thread_cgroup())
    });
    assert!(joined);
    assert!(cgroup.ends_with("/tenant-a"), "{cgroup} (thread {tid})");
    // The thread exited, leaving the slice empty: a departed tenant's slice goes.
    wait_empty(&slice);
    slices.configure(&[]);
    slices.apply();
    assert!(!slice.exists());
}

fn without_cpu_controller(scratch: &Scratch) {
    let slices = slices_in(&scratch.dir);
    slices.configure(&[tenant("a", Some((Some(200), None)))]);
    slices.apply();
    assert!(
        slices.status.unavailable(),
        "no cpu controller: unavailable"
    );

    let slice = scratch.dir.join("tenant-a");
    make_threaded(&slice).expect("threaded slice");
    assert_eq!(read(&slice.join("cgroup.type")).trim(), "threaded");
    assert_eq!(
        read(&scratch.dir.join("cgroup.type")).trim(),
        "domain threaded"
    );
    let moved = slice.clone();
    let ((cgroup, listed), tid) = on_thread(move || {
        let tid = current_tid().expect("tid");
        join(&moved, tid).expect("thread moves");
        (own_thread_cgroup(), read(&moved.join("cgroup.threads")))
    });
    assert!(cgroup.ends_with("/tenant-a"), "{cgroup}");
    assert!(
        listed.lines().any(|line| line.trim() == tid.to_string()),
        "{listed}"
    );
    assert!(
        !own_thread_cgroup().ends_with("/tenant-a"),
        "the test thread stays"
    );
    wait_empty(&slice);
    let standalone = Slices::new(PodCgroup::at(scratch.dir.clone()), Arc::default());
    assert!(
        standalone.remove("a").expect("removes"),
        "the slice is empty"
    );
    assert!(!slice.exists());
}
