"""docs/troubleshooting.md explains every condition reason the operator can write: the
CamelCase reasons in the files that set conditions (and the verification failures) must
each appear there in backticks."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "troubleshooting.md").read_text()

# Where reasons are written: literals in these files are reasons, kinds or condition types.
SOURCES = [
    "operator/src/health/mod.rs",
    "operator/src/health/pods.rs",
    "operator/src/lib.rs",
    "operator/src/desired/mod.rs",
    "operator/src/desired/config.rs",
    "operator/src/verification/record.rs",
    "operator/src/controller/model_deployment/gate.rs",
    "operator/src/controller/model_deployment/mod.rs",
    "operator/src/controller/model_deployment/unsupported.rs",
    "operator/src/controller/tenant_quota/status.rs",
    "operator/src/quota/admission.rs",
    "operator/src/quota/verdict.rs",
    "operator/src/controller/canary/progress.rs",
    "operator/src/controller/canary/check.rs",
    "operator/src/controller/canary/mod.rs",
    "operator/src/controller/canary/decision.rs",
    "verify/src/outcome.rs",
]

# Literals in those files that are not reasons: kinds, condition types, Kubernetes' own
# conditions the operator reads, Event actions.
NOT_REASONS = {
    "ModelDeployment", "TenantQuota", "Canary", "ConfigMap", "Deployment", "Service",
    "PodDisruptionBudget", "Ready", "Degraded", "Progressing", "Verified", "QuotaAdmitted",
    "FieldsIgnored", "Exceeded", "AnalysisPassing", "Promoted", "PodScheduled",
    "NewReplicaSetAvailable", "ReplicaSetUpdated", "ContainerCreating", "Admit", "Apply",
    "Assess", "Step", "Verify", "Analyze", "Promote", "Rollback", "ReconcileError",
    "Created", "Updated", "DriftReverted", "RolloutStarted", "Released", "StepStarted",
    "AnalysisPassed", "True", "False", "Unknown",
}

# CamelCase literals; single words (`Available`, `Aborted`, …) are documented but too
# common to tell from other text here.
LITERAL = re.compile(r'"([A-Z][a-z]+(?:[A-Z][a-z0-9]*)+)"')


def reasons() -> set:
    found = set()
    for source in SOURCES:
        text = (ROOT / source).read_text()
        # Leave out the unit tests at the bottom of a file.
        text = re.split(r"#\[cfg\(test\)\]\s*(?:#\[path = [^\]]*\]\s*)?mod tests", text)[0]
        found |= set(LITERAL.findall(text))
    return found - NOT_REASONS


def test_every_reason_is_explained():
    found = reasons()
    assert len(found) > 40, sorted(found)
    missing = sorted(r for r in found if f"`{r}`" not in DOC)
    assert not missing, f"add to docs/troubleshooting.md: {missing}"
