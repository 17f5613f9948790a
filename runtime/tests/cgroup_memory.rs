//! A version too big for the pod's `memory.max` is refused with a clear error and the
//! version it replaces keeps serving. The cgroup is a fake cgroupfs tree named by
//! `MODELPLANE_CGROUP_ROOT` (this binary holds this one test, so the variable is set once
//! before the server starts).

mod common;

use std::time::Duration;

use common::*;

/// The fake pod cgroup: 100 MiB in use, no limit yet.
fn fake_cgroup(dir: &std::path::Path) {
    for (file, text) in [
        ("cgroup.controllers", "cpu memory pids\n"),
        ("memory.max", "max\n"),
        ("memory.current", "104857600\n"),
        ("memory.stat", "anon 104857600\nfile 0\ninactive_file 0\n"),
        ("cpu.max", "max 100000\n"),
    ] {
        std::fs::write(dir.join(file), text).expect("fake cgroup file");
    }
}

#[tokio::test]
async fn a_version_that_does_not_fit_under_memory_max_fails_and_the_old_one_serves() {
    let cgroup = tempfile::tempdir().expect("tempdir");
    fake_cgroup(cgroup.path());
    // SAFETY: no other thread of this process reads or writes the environment yet: the
    // runtime is started below, and this test binary holds no other test.
    unsafe { std::env::set_var(modelplane_runtime::cgroup::ROOT_ENV, cgroup.path()) };

    let dir = tempfile::tempdir().expect("tempdir");
    let (v1, v2) = (
        dir.path().join("affine/1/model.pt"),
        dir.path().join("affine/2/model.pt"),
    );
    make_affine_models(&[(&v1, 1.0), (&v2, 2.0)]);
    let config_path = dir.path().join("config.yaml");
    std::fs::write(&config_path, affine_config(&v1, "")).expect("config v1");
    let running = start_file(&config_path).await;
    let base = format!("http://{}", running.http_addr);

    // The pod now has a 100 MiB limit with 1 KiB free: less than version 2's file.
    assert!(std::fs::metadata(&v2).expect("v2").len() > 1024);
    std::fs::write(cgroup.path().join("memory.max"), "104858624\n").expect("limit");
    let replaced = affine_config(&v1, "").replace(
        &format!("version: '1'\n    source: {{path: '{}'}}", v1.display()),
        &format!("version: '2'\n    source: {{path: '{}'}}", v2.display()),
    );
    assert!(replaced.contains("version: '2'"), "{replaced}");
    std::fs::write(&config_path, replaced).expect("config v2");

    let reason_of_v2 = || async {
        let meta: serde_json::Value = reqwest::get(format!("{base}/v2/models/affine"))
            .await
            .ok()?
            .json()
            .await
            .ok()?;
        let states = meta["version_states"].as_array()?;
        let failed = states
            .iter()
            .find(|s| s["version"] == "2" && s["state"] == "failed")?;
        failed["reason"].as_str().map(str::to_owned)
    };
    wait_until(Duration::from_secs(30), || async {
        reason_of_v2().await.is_some()
    })
    .await
    .expect("version 2 is refused");
    let reason = reason_of_v2().await.expect("reason");
    assert!(
        reason.starts_with("model affine version 2 needs ~")
            && reason.ends_with("but only 1 KiB are free under the cgroup's memory.max of 100 MiB"),
        "{reason}"
    );

    let (status, body) = post_json(
        &format!("{base}/v2/models/affine/infer"),
        &json_body(&[[1.0; 4]]),
    )
    .await;
    assert_eq!(status, 200, "version 1 keeps serving: {body}");
    assert_eq!(output_f32(&body, "y"), affine(&[[1.0; 4]], 1.0));
    let failures = metric(
        &running,
        r#"modelplane_model_load_failures_total{model="affine",version="2"}"#,
    )
    .await;
    assert_eq!(failures, Some(1.0));
    let limit = metric(&running, "modelplane_cgroup_memory_max_bytes").await;
    assert_eq!(
        limit,
        Some(104_858_624.0),
        "the fake cgroup is what is exported"
    );
    running.shutdown().await;
}
