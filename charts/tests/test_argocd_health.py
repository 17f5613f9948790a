"""The Argo CD health checks (charts/modelplane/argocd) run by a real Lua 5.1 interpreter
(Argo CD's gopher-lua speaks 5.1) against sample objects in every state."""

import importlib.util
import json
import pathlib
import shutil
import subprocess

import pytest
import yaml

ARGOCD = pathlib.Path(__file__).resolve().parents[1] / "modelplane" / "argocd"
LUA = shutil.which("lua5.1")

spec = importlib.util.spec_from_file_location("render", ARGOCD / "render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


def lua_value(value) -> str:
    """``value`` (from JSON) as a Lua literal; arrays become 1-based sequences."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid Lua 5.1 string here (ASCII)
    if isinstance(value, list):
        return "{" + ", ".join(lua_value(v) for v in value) + "}"
    return "{" + ", ".join(f"[{json.dumps(k)}] = {lua_value(v)}" for k, v in value.items()) + "}"


def health(kind: str, obj: dict) -> tuple:
    """(status, message) the check of ``kind`` gives ``obj``."""
    program = (
        f"obj = {lua_value(obj)}\n"
        f"local check = assert(loadstring({json.dumps(render.script(kind))}))\n"
        "local hs = check()\n"
        "io.write(hs.status, '\\t', hs.message or '')\n"
    )
    out = subprocess.run([LUA, "-"], input=program, capture_output=True, text=True, check=True)
    status, _, message = out.stdout.partition("\t")
    return status, message


def cond(type_: str, status: str, reason: str, message: str = "") -> dict:
    return {"type": type_, "status": status, "reason": reason, "message": message}


def obj(generation: int = 2, observed=2, conditions=None, **status) -> dict:
    out = {"metadata": {"name": "x", "generation": generation}}
    if observed != "absent":
        out["status"] = {"observedGeneration": observed, "conditions": conditions or [], **status}
    return out


pytestmark = pytest.mark.skipif(LUA is None, reason="lua5.1 is not installed (apt-get install lua5.1)")


MODEL_DEPLOYMENTS = [
    ("no status yet", obj(observed="absent"), "Progressing", "report"),
    ("an older generation observed", obj(observed=1), "Progressing", "generation 2"),
    ("ready", obj(conditions=[cond("Ready", "True", "Available", "2/2 replicas ready"),
                              cond("Progressing", "False", "RolloutComplete")]), "Healthy", "2/2"),
    ("rolling out", obj(conditions=[cond("Ready", "True", "Available"),
                                    cond("Progressing", "True", "RollingOut", "1 of 2 updated")]),
     "Progressing", "RollingOut"),
    ("degraded", obj(conditions=[cond("Ready", "False", "NoReplicasReady"),
                                 cond("Degraded", "True", "ImagePullBackOff", "pod p cannot pull")]),
     "Degraded", "ImagePullBackOff: pod p cannot pull"),
    ("refused by the quota", obj(conditions=[cond("Ready", "True", "Available"),
                                             cond("QuotaAdmitted", "False", "QuotaExceeded", "cpu over")]),
     "Degraded", "QuotaExceeded"),
    ("scaled to zero", obj(conditions=[cond("Ready", "False", "ScaledToZero")]), "Suspended", "ScaledToZero"),
    ("creating", obj(conditions=[cond("Ready", "False", "Creating")]), "Progressing", "Creating"),
]

TENANT_QUOTAS = [
    ("no status yet", obj(observed="absent"), "Progressing", "report"),
    ("enforced", obj(conditions=[cond("Ready", "True", "Enforced", "admitting"),
                                 cond("Exceeded", "False", "WithinLimits")]), "Healthy", "Enforced"),
    ("refusing", obj(conditions=[cond("Ready", "True", "Enforced"),
                                 cond("Exceeded", "True", "Refused", "1 refused")]), "Degraded", "Refused"),
    ("unreadable hard", obj(conditions=[cond("Ready", "False", "InvalidHard", "bad cpu")]),
     "Degraded", "InvalidHard"),
    ("an older generation observed", obj(observed=1), "Progressing", "generation 2"),
]


def canary(phase: str, reason: str, weight: int = 0) -> dict:
    return obj(conditions=[cond("Progressing", "True", reason, "m")], phase=phase, weight=weight)


CANARIES = [
    ("no status yet", obj(observed="absent"), "Progressing", "report"),
    ("verifying", canary("Verifying", "Verifying"), "Progressing", "Verifying"),
    ("stepping", canary("Progressing", "Stepping", 10), "Progressing", "weight 10%"),
    ("promoting", canary("Promoting", "Promoting", 50), "Progressing", "Promoting"),
    ("paused by spec", canary("Paused", "PausedBySpec", 10), "Suspended", "PausedBySpec"),
    ("outside the window", canary("Paused", "OutsideWindow"), "Suspended", "OutsideWindow"),
    ("succeeded", canary("Succeeded", "Promoted", 100), "Healthy", "Promoted"),
    ("rolled back by analysis", canary("RolledBack", "AnalysisFailed"), "Degraded", "AnalysisFailed"),
    ("aborted", canary("RolledBack", "Aborted"), "Suspended", "Aborted"),
    ("verification failed", canary("Failed", "VerificationFailed"), "Degraded", "VerificationFailed"),
    ("held by the quota", canary("Pending", "QuotaNotAdmitted"), "Degraded", "QuotaNotAdmitted"),
    ("target missing", canary("Pending", "TargetNotFound"), "Degraded", "TargetNotFound"),
    ("an older generation observed", obj(observed=1), "Progressing", "generation 2"),
]


@pytest.mark.parametrize(
    "kind,case,sample,status,says",
    [("ModelDeployment", *c) for c in MODEL_DEPLOYMENTS]
    + [("TenantQuota", *c) for c in TENANT_QUOTAS]
    + [("Canary", *c) for c in CANARIES],
)
def test_health(kind, case, sample, status, says):
    got, message = health(kind, sample)
    assert (got, says in message) == (status, True), f"{kind} {case}: {got} {message!r}"


def test_the_argocd_cm_snippet_is_rendered_from_the_scripts():
    assert (ARGOCD / "argocd-cm.yaml").read_text() == render.snippet(), (
        "run python charts/modelplane/argocd/render.py"
    )
    data = yaml.safe_load((ARGOCD / "argocd-cm.yaml").read_text())["data"]
    for kind in render.KINDS:
        assert data[f"resource.customizations.health.serving.modelplane.io_{kind}"] == render.script(kind)
