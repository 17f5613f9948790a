#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, make the example models,
# build modelplane-runtime (release) and serve the examples on 127.0.0.1:8080 (REST)
# and 127.0.0.1:8081 (gRPC) until Ctrl-C. Extra arguments go to `serve`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
python examples/make_models.py
cargo build --release --locked -p modelplane-runtime
echo "serving examples/runtime/local.yaml: curl -s 127.0.0.1:8080/v2/models/mlp"
exec target/release/modelplane-runtime serve --config examples/runtime/local.yaml "$@"
