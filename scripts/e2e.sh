#!/usr/bin/env bash
# The end-to-end suite against the cluster in KUBECONFIG, in one command:
#   1. installs the chart (CRDs, RBAC, ServiceAccount; the in-cluster operator scaled to 0),
#   2. runs e2e/ with the operator binary on this machine under the chart's ServiceAccount
#      (a token of it), so every test also checks the chart's RBAC,
#   3. uninstalls, deletes the CRDs, and fails if anything of modelplane is left.
# Works on kind (`kind create cluster`) or any cluster this machine reaches; needs no image.
# Env: E2E_RELEASE (default modelplane-e2e), E2E_NAMESPACE (default modelplane-e2e),
#      E2E_KEEP=1 to leave the release installed, extra args go to cargo nextest.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
: "${KUBECONFIG:?set KUBECONFIG to the cluster to test}"
RELEASE="${E2E_RELEASE:-modelplane-e2e}"
NS="${E2E_NAMESPACE:-modelplane-e2e}"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
BIN="$(bash scripts/k8s-tools.sh)"
helm() { "$BIN/helm" "$@"; }
kubectl() { "$BIN/kubectl" "$@"; }

step() { printf '\n==> %s\n' "$*"; }
work="$(mktemp -d)"
cleanup() {
  rm -rf "$work"
  if [ "${E2E_KEEP:-}" != 1 ]; then
    helm uninstall "$RELEASE" -n "$NS" --wait >/dev/null 2>&1 || true
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
  fi
}
trap cleanup EXIT

step "install the chart into $NS (operator replicas 0: it runs here under the chart's ServiceAccount)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
helm upgrade --install "$RELEASE" charts/modelplane -n "$NS" --wait \
  --set operator.replicas=0 >/dev/null
sa="$(helm get manifest "$RELEASE" -n "$NS" | awk '/^kind: ServiceAccount/{f=1} f&&/^  name:/{print $2; exit}')"
server="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --minify --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
token="$(kubectl create token "$sa" -n "$NS" --duration=2h)"
if [ -n "$ca" ]; then trust="certificate-authority-data: \"$ca\""; else trust="insecure-skip-tls-verify: true"; fi
{
  echo "apiVersion: v1"
  echo "kind: Config"
  echo "clusters: [{name: e2e, cluster: {server: \"$server\", $trust}}]"
  echo "users: [{name: operator, user: {token: \"$token\"}}]"
  echo "contexts: [{name: e2e, context: {cluster: e2e, user: operator}}]"
  echo "current-context: e2e"
} > "$work/operator.kubeconfig"

step "e2e/ (operator as system:serviceaccount:$NS:$sa)"
cargo build --locked -p modelplane-operator
MODELPLANE_E2E=required \
MODELPLANE_E2E_OPERATOR_KUBECONFIG="$work/operator.kubeconfig" \
MODELPLANE_E2E_LEASE_NAMESPACE="$NS" \
  cargo nextest run --locked -p modelplane-e2e --no-fail-fast "$@"

[ "${E2E_KEEP:-}" = 1 ] && exit 0
step "uninstall: nothing of modelplane may be left"
helm uninstall "$RELEASE" -n "$NS" --wait >/dev/null
kubectl delete crd canaries.serving.modelplane.io modeldeployments.serving.modelplane.io \
  tenantquotas.serving.modelplane.io --ignore-not-found --wait >/dev/null
kubectl delete namespace "$NS" --wait >/dev/null
for i in $(seq 60); do
  left="$(kubectl get namespaces -o name | grep -c '^namespace/mp-e2e-' || true)"
  [ "$left" = 0 ] && break
  sleep 2
done
leftovers="$( {
  kubectl get crd -o name | grep 'serving.modelplane.io' || true
  kubectl get clusterroles,clusterrolebindings -o name | grep -i modelplane || true
  kubectl get namespaces -o name | grep -E "^namespace/(mp-e2e-|$NS\$)" || true
} )"
if [ -n "$leftovers" ]; then
  echo "left behind after uninstall:"; echo "$leftovers"; exit 1
fi
echo "e2e: passed, and uninstall left nothing behind"
