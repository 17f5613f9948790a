"""`values.schema.json`: `helm template` takes the default and other valid values, and
refuses bad ones naming the field (so a typo fails at `helm install`, not in the cluster)."""

import os
import pathlib
import shutil
import subprocess

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "modelplane"
HELM = os.environ.get("HELM") or shutil.which("helm") or str(ROOT / ".cache" / "bin" / "helm")

pytestmark = pytest.mark.skipif(
    not pathlib.Path(HELM).is_file(), reason="no helm (bash scripts/k8s-tools.sh installs it)"
)


def template(*sets: str) -> subprocess.CompletedProcess:
    args = [HELM, "template", "mp", str(CHART), "--namespace", "modelplane-system"]
    for s in sets:
        args += ["--set-json", s]
    return subprocess.run(args, capture_output=True, text=True)


def documents(out: str) -> list:
    return [d for d in yaml.safe_load_all(out) if d]


def operator_args(docs: list) -> list:
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    return deployment["spec"]["template"]["spec"]["containers"][0]["args"]


def test_default_values_render():
    result = template()
    assert result.returncode == 0, result.stderr
    kinds = {d["kind"] for d in documents(result.stdout)}
    assert {"Deployment", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Service"} <= kinds


def test_other_valid_values_render_and_reach_the_operator():
    result = template(
        'operator.namespaces=["team-a","team-b"]',
        "operator.replicas=1",
        'operator.leaderElection={"enabled":true,"leaseDuration":"30s"}',
        'operator.canary.prometheusUrl="http://prometheus.monitoring:9090"',
        'operator.registry.insecure=["127.0.0.1:5000"]',
        'operator.image.tag="0.1.0@sha256:' + "a" * 64 + '"',
        'operator.resources={"requests":{"cpu":"200m","memory":"256Mi"},"limits":{"memory":"1Gi"}}',
    )
    assert result.returncode == 0, result.stderr
    docs = documents(result.stdout)
    args = " ".join(operator_args(docs))
    assert "team-a" in args and "http://prometheus.monitoring:9090" in args, args
    # A namespace list grants RoleBindings there, not cluster-wide.
    bindings = [d for d in docs if d["kind"] == "RoleBinding"]
    assert {b["metadata"]["namespace"] for b in bindings} >= {"team-a", "team-b"}


@pytest.mark.parametrize(
    "setting,names",
    [
        ("operator.replicas=-1", "/operator/replicas"),
        ('operator.replicas="2"', "/operator/replicas"),
        ('operator.logLevl="info"', "logLevl"),
        ('operator.logLevel="verbose"', "/operator/logLevel"),
        ("operator.leaderElection.leaseDuration=15", "/operator/leaderElection/leaseDuration"),
        ('operator.verificationCacheTTL="an hour"', "/operator/verificationCacheTTL"),
        ('operator.namespaces=["Team_A"]', "/operator/namespaces/0"),
        ('operator.image.pullPolicy="Sometimes"', "/operator/image/pullPolicy"),
        ('operator.canary.prometheusUrl="prometheus:9090"', "/operator/canary/prometheusUrl"),
        ('operator.resources.requests.cpu="lots"', "/operator/resources/requests/cpu"),
        ('operator.metrics.port=70000', "/operator/metrics/port"),
        ('operatr={}', "operatr"),
        ('operator.leaderElection={"enabled":false}', "/operator/replicas"),
    ],
)
def test_bad_values_are_refused_naming_the_field(setting, names):
    result = template(setting)
    assert result.returncode != 0, f"{setting} rendered"
    # One replica without leader election is fine.
    assert template('operator.leaderElection={"enabled":false}', "operator.replicas=1").returncode == 0
    assert "schema" in result.stderr and names in result.stderr, result.stderr


def kinds_named(docs: list, kind: str) -> list:
    return [d for d in docs if d["kind"] == kind]


def test_the_operator_keeps_one_replica_through_a_drain_only_when_it_has_two():
    for replicas, budgets in [(2, 1), (3, 1), (1, 0), (0, 0)]:
        result = template(f"operator.replicas={replicas}")
        assert result.returncode == 0, result.stderr
        docs = documents(result.stdout)
        deployment = kinds_named(docs, "Deployment")[0]
        assert deployment["spec"]["replicas"] == replicas, "0 is kept, not defaulted"
        assert len(kinds_named(docs, "PodDisruptionBudget")) == budgets, replicas
    off = documents(template("podDisruptionBudget.enabled=false").stdout)
    assert not kinds_named(off, "PodDisruptionBudget")


def test_monitors_scrape_the_operator_and_the_runtime_pods_of_the_watched_namespaces():
    assert not kinds_named(documents(template().stdout), "PodMonitor")
    result = template(
        "monitoring.serviceMonitor=true",
        "monitoring.podMonitor=true",
        'monitoring.labels={"release":"prometheus"}',
        'operator.namespaces=["team-a"]',
    )
    assert result.returncode == 0, result.stderr
    docs = documents(result.stdout)
    pod_monitor = kinds_named(docs, "PodMonitor")[0]
    assert pod_monitor["spec"]["namespaceSelector"] == {"matchNames": ["team-a"]}
    assert pod_monitor["spec"]["selector"]["matchLabels"]["app.kubernetes.io/name"] == "modelplane-runtime"
    assert pod_monitor["metadata"]["labels"]["release"] == "prometheus"
    service_monitor = kinds_named(docs, "ServiceMonitor")[0]
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"].endswith("-metrics"))
    selector = service_monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    assert service_monitor["spec"]["endpoints"][0]["port"] == "metrics"
    everywhere = documents(template("monitoring.podMonitor=true").stdout)
    assert kinds_named(everywhere, "PodMonitor")[0]["spec"]["namespaceSelector"] == {"any": True}
