#!/usr/bin/env bash
# The main job on a fresh machine: install what is needed, make the example models,
# build modelplane-runtime (release) and serve the examples on 127.0.0.1:8080 (REST)
# and 127.0.0.1:8081 (gRPC) until Ctrl-C: the tensor models over the Open Inference
# Protocol, SmolLM2-135M-Instruct over the OpenAI API, MiniLM embeddings. Extra arguments go to `serve`.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck source=scripts/env.sh
source scripts/env.sh
python examples/make_models.py
python examples/make_chat_model.py
cargo build --release --locked -p modelplane-runtime
cat <<'MSG'
serving examples/runtime/local.yaml; try:
  curl -s 127.0.0.1:8080/v1/chat/completions -H 'content-type: application/json' \
    -d '{"model":"smollm2","temperature":0,"max_tokens":64,"messages":[{"role":"user","content":"What is the capital of France?"}]}'
  curl -s 127.0.0.1:8080/v2/models/mlp
MSG
exec target/release/modelplane-runtime serve --config examples/runtime/local.yaml "$@"
