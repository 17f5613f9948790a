//! A model owned by a tenant with a `cgroup` config runs its executor thread in the
//! tenant's threaded slice. The cgroup is a fake cgroupfs tree named by
//! `MODELPLANE_CGROUP_ROOT` (this binary holds this one test, so the variable is set once
//! before the server starts); the real kernel is exercised by the unit tests of
//! `cgroup::slices`.

mod common;

use common::*;

#[tokio::test]
async fn a_tenants_model_runs_its_worker_thread_in_the_tenants_slice() {
    let cgroup = tempfile::tempdir().expect("tempdir");
    for (file, text) in [
        ("cgroup.controllers", "cpuset cpu io memory pids\n"),
        ("cgroup.subtree_control", ""),
        ("cgroup.type", "domain\n"),
        ("memory.max", "max\n"),
        ("memory.current", "0\n"),
    ] {
        std::fs::write(cgroup.path().join(file), text).expect("fake cgroup file");
    }
    // SAFETY: no other thread of this process reads or writes the environment yet: the
    // runtime is started below, and this test binary holds no other test.
    unsafe { std::env::set_var(modelplane_runtime::cgroup::ROOT_ENV, cgroup.path()) };

    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("affine/1/model.pt");
    make_affine_models(&[(&path, 1.0)]);
    let yaml = format!(
        "tenants: [{{name: team-a, cgroup: {{cpuWeight: 300, cpuMax: '1500m'}}}}]\n{}",
        affine_config(&path, "tenant: team-a")
    );
    let running = start_inline(&yaml).await;

    let slice = cgroup.path().join("tenant-team-a");
    let read = |file: &str| std::fs::read_to_string(slice.join(file)).unwrap_or_default();
    assert_eq!(read("cgroup.type"), "threaded");
    assert_eq!(read("cpu.weight"), "300");
    assert_eq!(read("cpu.max"), "150000 100000");
    let subtree = std::fs::read_to_string(cgroup.path().join("cgroup.subtree_control"))
        .expect("subtree_control");
    assert!(subtree.contains("+cpu"), "{subtree:?}");
    // The TID written is the executor thread of the model ("mp-affine-1").
    let tid = read("cgroup.threads");
    let comm = std::fs::read_to_string(format!("/proc/self/task/{}/comm", tid.trim()))
        .unwrap_or_else(|e| panic!("thread {tid:?} of this process: {e}"));
    assert_eq!(comm.trim(), "mp-affine-1");
    let active = metric(
        &running,
        r#"modelplane_cgroup_tenant_slices{state="active"}"#,
    )
    .await;
    assert_eq!(active, Some(1.0));
    running.shutdown().await;
}
