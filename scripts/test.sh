#!/usr/bin/env bash
# Runs every test of the project on a fresh machine: installs what it needs first.
# This is the README's test command, and what CI runs (.ci/run).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

step() { printf '\n==> %s\n' "$*"; }

step "setup (apt, venv with torch, Python test tools)"
bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
# A CI build starts from nothing: incremental artifacts would only cost disk and time.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

step "example models"
python examples/make_models.py
python examples/make_chat_model.py

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Dockerfiles (hadolint)"
hadolint Dockerfile.operator Dockerfile.runtime

step "Helm chart"
K8S_BIN="$(bash scripts/k8s-tools.sh)"
"$K8S_BIN/helm" lint --strict charts/modelplane
"$K8S_BIN/helm" template modelplane charts/modelplane --namespace modelplane-system >/dev/null

step "build binaries used by the tests"
cargo build --workspace --bins --locked

step "Rust tests"
cargo nextest run --workspace --locked --no-fail-fast

step "SBOMs (CycloneDX) of the binaries, checked for well-formedness"
bash scripts/sbom.sh

step "Python tests (real clients against the built binaries)"
python -m pytest -q -p no:cacheprovider examples/tests examples/llm_tests runtime/tests/interop runtime/tests/openai bench/tests charts/tests crds/tests
