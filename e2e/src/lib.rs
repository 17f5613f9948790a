//! Harness of the end-to-end tests: a real cluster from `KUBECONFIG`, the CRDs,
//! the operator binary and throw-away namespaces.
//!
//! Without `KUBECONFIG` every test prints a skip line and passes, unless
//! `MODELPLANE_E2E=required`, which turns the absence into a failure (for CI
//! jobs that must not pass silently).

use std::{
    future::Future,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use k8s_openapi::{
    api::core::v1::{Namespace, PersistentVolumeClaim},
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, Client, ResourceExt as _,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
    runtime::wait::{await_condition, conditions},
};
use modelplane_api::model_deployment::ModelDeployment;
use tokio::process::{Child, Command};

pub mod registry;

/// Field manager of everything the tests apply.
pub const FIELD_MANAGER: &str = "modelplane-e2e";

/// `User-Agent` of the tests' own API requests, apart from the operator's in audit logs.
const USER_AGENT: &str = concat!("modelplane-e2e/", env!("CARGO_PKG_VERSION"));

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A client for the cluster in `KUBECONFIG`; `None` (after printing why) when the
/// test should be skipped. Panics when `MODELPLANE_E2E=required` and there is no cluster.
pub async fn cluster(test: &str) -> Option<Client> {
    let required = std::env::var("MODELPLANE_E2E").is_ok_and(|v| v == "required");
    if std::env::var_os("KUBECONFIG").is_none() {
        assert!(
            !required,
            "MODELPLANE_E2E=required but KUBECONFIG is not set"
        );
        eprintln!(
            "skipping e2e test {test}: KUBECONFIG is not set (MODELPLANE_E2E=required makes this a failure)"
        );
        return None;
    }
    let mut config = match kube::Config::infer().await {
        Ok(config) => config,
        Err(error) => panic!("KUBECONFIG is set but holds no usable configuration: {error}"),
    };
    config.headers.push((
        "user-agent".try_into().expect("a valid header name"),
        USER_AGENT.try_into().expect("a valid header value"),
    ));
    match Client::try_from(config) {
        Ok(client) => Some(client),
        Err(error) => panic!("KUBECONFIG is set but no client could be built: {error}"),
    }
}

/// Polls `check` every 250ms until it yields a value or `timeout` passes.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() >= deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Server-side applies the CRDs from `crds/yaml/` and waits until they are established.
pub async fn install_crds(client: &Client) -> anyhow::Result<()> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let dir = workspace_root().join("crds/yaml");
    let mut entries: Vec<_> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.path());
    for entry in entries
        .iter()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
    {
        let text = std::fs::read_to_string(entry.path())?;
        let crd: CustomResourceDefinition = serde_yaml::from_str(&text)
            .with_context(|| format!("parsing {}", entry.path().display()))?;
        let name = crd.metadata.name.clone().context("CRD without a name")?;
        crds.patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await?;
        let established = await_condition(crds.clone(), &name, conditions::is_crd_established());
        tokio::time::timeout(Duration::from_secs(30), established)
            .await
            .with_context(|| format!("CRD {name} not established"))??;
    }
    Ok(())
}

/// A namespace created for one test and deleted by [`TestNamespace::delete`].
pub struct TestNamespace {
    /// Its name.
    pub name: String,
    client: Client,
}

impl TestNamespace {
    /// Creates `mp-e2e-<prefix>-<unique suffix>`.
    pub async fn create(client: &Client, prefix: &str) -> anyhow::Result<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .subsec_nanos();
        let name = format!("mp-e2e-{prefix}-{nanos:x}");
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        };
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await?;
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    /// Deletes the namespace (and everything in it).
    pub async fn delete(self) -> anyhow::Result<()> {
        Api::<Namespace>::all(self.client)
            .delete(&self.name, &DeleteParams::default())
            .await?;
        Ok(())
    }
}

/// The operator binary running against the test cluster, killed on drop.
pub struct Operator {
    child: Child,
}

/// Path of the operator binary: `MODELPLANE_OPERATOR_BIN`, else the workspace's debug build.
pub fn operator_binary() -> anyhow::Result<PathBuf> {
    let path = match std::env::var_os("MODELPLANE_OPERATOR_BIN") {
        Some(path) => PathBuf::from(path),
        None => std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| workspace_root().join("target"))
            .join("debug/modelplane-operator"),
    };
    if !path.exists() {
        bail!(
            "{} does not exist: run `cargo build -p modelplane-operator` or set MODELPLANE_OPERATOR_BIN",
            path.display()
        );
    }
    Ok(path)
}

/// Runtime image the tests' operator defaults to: pinned by digest, so that ModelDeployments
/// without verification roll out without asking a registry (the pods need not start).
/// `MODELPLANE_E2E_RUNTIME_IMAGE` overrides it.
pub fn runtime_image() -> String {
    std::env::var("MODELPLANE_E2E_RUNTIME_IMAGE")
        .unwrap_or_else(|_| format!("ghcr.io/modelplane/runtime@sha256:{}", "0".repeat(64)))
}

impl Operator {
    /// Starts the operator watching `namespaces`, with leader election on a Lease in the first.
    pub fn spawn(namespaces: &[&str]) -> anyhow::Result<Self> {
        Self::spawn_with(namespaces, &[])
    }

    /// Like [`Operator::spawn`], with `extra` flags (e.g. `--insecure-registry=…`).
    pub fn spawn_with(namespaces: &[&str], extra: &[String]) -> anyhow::Result<Self> {
        let lease_namespace = namespaces.first().context("at least one namespace")?;
        let mut command = Command::new(operator_binary()?);
        // The operator's own credentials, e.g. the chart's ServiceAccount, to check its RBAC.
        if let Some(kubeconfig) = std::env::var_os("MODELPLANE_E2E_OPERATOR_KUBECONFIG") {
            command.env("KUBECONFIG", kubeconfig);
        }
        // The Lease in a namespace of its own (the chart's Role covers only the release
        // namespace), under a name of this test's.
        match std::env::var("MODELPLANE_E2E_LEASE_NAMESPACE") {
            Ok(namespace) => command
                .arg(format!("--lease-namespace={namespace}"))
                .arg(format!("--lease-name=modelplane-e2e-{lease_namespace}")),
            Err(_) => command.arg(format!("--lease-namespace={lease_namespace}")),
        };
        let child = command
            .arg(format!("--namespaces={}", namespaces.join(",")))
            .arg(format!("--runtime-image={}", runtime_image()))
            .args(extra)
            .args([
                "--metrics-addr=127.0.0.1:0",
                "--log-format=text",
                "--log-level=info",
            ])
            .args(["--lease-duration=5s", "--lease-retry=1s"])
            .env("POD_NAME", "modelplane-operator-e2e")
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("starting the operator")?;
        Ok(Self { child })
    }

    /// Peak resident memory of the operator process so far, in KiB (Linux `VmHWM`).
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Fails if the operator has exited.
    pub fn assert_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("the operator exited: {status}");
        }
        Ok(())
    }
}

/// The ModelDeployment in `examples/<file>` (the file also creates its Namespace).
pub fn example_model_deployment(file: &str) -> anyhow::Result<ModelDeployment> {
    use serde::Deserialize as _;
    let path = workspace_root().join("examples").join(file);
    let text = std::fs::read_to_string(&path).with_context(|| path.display().to_string())?;
    for document in serde_yaml::Deserializer::from_str(&text) {
        let value = serde_yaml::Value::deserialize(document)?;
        if value.get("kind").and_then(serde_yaml::Value::as_str) == Some("ModelDeployment") {
            return Ok(serde_yaml::from_value(value)?);
        }
    }
    bail!("{} holds no ModelDeployment", path.display())
}

/// Applies the ModelDeployment of `examples/<file>` into `namespace` (server-side,
/// as the tests' field manager) and returns it as stored.
pub async fn apply_example(
    client: &Client,
    namespace: &str,
    file: &str,
) -> anyhow::Result<ModelDeployment> {
    let mut md = example_model_deployment(file)?;
    md.metadata.namespace = Some(namespace.to_owned());
    let api: Api<ModelDeployment> = Api::namespaced(client.clone(), namespace);
    Ok(api
        .patch(
            &md.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&md),
        )
        .await?)
}

/// Creates the PersistentVolumeClaim `models` the PVC examples read their model from.
/// It need not bind: the operator checks that the claim exists, the pods need not start.
pub async fn create_models_claim(client: &Client, namespace: &str) -> anyhow::Result<()> {
    let claim: PersistentVolumeClaim = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "models"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }))?;
    Api::<PersistentVolumeClaim>::namespaced(client.clone(), namespace)
        .create(&PostParams::default(), &claim)
        .await?;
    Ok(())
}
