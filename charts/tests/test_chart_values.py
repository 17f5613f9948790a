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
    ],
)
def test_bad_values_are_refused_naming_the_field(setting, names):
    result = template(setting)
    assert result.returncode != 0, f"{setting} rendered"
    assert "schema" in result.stderr and names in result.stderr, result.stderr
