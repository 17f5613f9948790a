#!/usr/bin/env bash
# The benchmarks of docs/benchmarks.md, all sides in one run on this machine.
#
# Tensor models (default mode):
#   1. plain libtorch loop (runtime/examples/plain_loop.rs), batch 1 .. max batch, no server;
#   2. modelplane-runtime over REST JSON, REST binary and gRPC at concurrency 1, 8, 64;
#   3. KServe's ModelServer (bench/kserve_server.py, torch.jit.load) over REST JSON, same points.
# on the example classifier (compute-bound) and MLP (overhead-bound). The runtime also serves
# `noop`, the MLP's input and output shapes with no compute (`x[:, :10]`), at c=1: the floor
# of client, loopback and the whole server path, so the c=1 report shows the server's
# overhead apart from it.
#
# `scripts/bench.sh c1 [OUT_DIR]` runs only the c=1 comparison: the plain loop at batch 1,
# and the runtime's MLP and noop at c=1 over REST binary and gRPC (about a minute).
#
# Generative serving (`generate` mode), SmolLM2-135M-Instruct (examples/models/smollm2):
#   1. bench/llm_baseline.py: a plain Python loop over the same TorchScript file, one request
#      at a time and batched, and transformers' generate on the same weights;
#   2. modelplane-runtime streaming over SSE (/v1/chat/completions) at concurrency 1, 16, 64
#      and over gRPC ModelStreamInfer at 16, every prompt of bench/prompts.jsonl in turn.
#
# Prints the tables and the target ratios; writes every report under OUT_DIR.
#
#   scripts/bench.sh [OUT_DIR]            default OUT_DIR: target/bench/<UTC time>
#   scripts/bench.sh generate [OUT_DIR]   default OUT_DIR: target/bench/generate-<UTC time>
#
# Env: BENCH_SECONDS   measured seconds per point (default 5; generate: 60)
#      BENCH_PLAIN_SECONDS  seconds per batch size in the plain loop (default 2)
#      BENCH_MAX_TOKENS     generate: max_tokens of every request (default 256)
#      BENCH_TRANSFORMERS=0 generate: skip transformers' generate (≈ 20 s to load)
#      BENCH_SKIP_BUILD=1   use the release binaries already built
#
# Cores: with two or more CPUs, every server (and the plain loop) runs on CPU 1 with one
# libtorch thread and the load generator on CPU 0 (taskset), so server and client never
# share a core; with one CPU both share it. The Python baselines get the server's core and
# one libtorch thread too. Bounded: every load point stops issuing after BENCH_SECONDS (a
# stream then has at most 300 s to finish), every server start waits at most 120 s; about
# 4 minutes in all for tensor models, about 14 for generate on two quiet cores.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/env.sh
source scripts/env.sh

MODE=tensor
if [ "${1:-}" = generate ]; then MODE=generate; shift; fi
if [ "${1:-}" = c1 ]; then MODE=c1; shift; fi
if [ "$MODE" = generate ]; then
  OUT="${1:-target/bench/generate-$(date -u +%Y%m%dT%H%M%SZ)}"
  SECONDS_PER_POINT="${BENCH_SECONDS:-60}"
else
  OUT="${1:-target/bench/$(date -u +%Y%m%dT%H%M%SZ)}"
  SECONDS_PER_POINT="${BENCH_SECONDS:-5}"
fi
PLAIN_SECONDS="${BENCH_PLAIN_SECONDS:-2}"
CONCURRENCY=(1 8 64)
PROTOCOLS=(rest-json rest-binary grpc)
MODELS=(classifier mlp)
declare -A MAX_BATCH=([classifier]=16 [mlp]=64)
declare -A SHAPE=([classifier]=1,3,64,64 [mlp]=1,784)
declare -A BATCHES=([classifier]=1,2,4,8,16 [mlp]=1,2,4,8,16,32,64)
if [ "$MODE" = c1 ]; then
  CONCURRENCY=(1) PROTOCOLS=(rest-binary grpc) MODELS=(mlp)
  BATCHES=([mlp]=1)
fi
BENCH_VENV=.cache/bench-venv
KSERVE_VERSION="0.21.*"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"

if [ "$(nproc)" -ge 2 ]; then SERVER_CPU=1 CLIENT_CPU=0; else SERVER_CPU=0 CLIENT_CPU=0; fi

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap stop_server EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() { # URL LOG
  for _ in $(seq 1200); do
    curl -fsS "$1" >/dev/null 2>&1 && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench: server exited:" >&2; tail -20 "$2" >&2; exit 1; }
    sleep 0.1
  done
  echo "bench: $1 not ready after 120 s" >&2
  tail -20 "$2" >&2
  exit 1
}

build() {
  [ "${BENCH_SKIP_BUILD:-0}" = 1 ] && return 0
  echo "== build (release)"
  local examples=(--example plain_loop)
  [ "$MODE" = generate ] && examples=()
  cargo build --release -p modelplane-runtime -p modelplane-bench \
    --bin modelplane-runtime --bin modelplane-bench "${examples[@]}"
}

bench_venv() {
  if [ ! -x "$BENCH_VENV/bin/python" ]; then
    echo "== bench venv: kserve==$KSERVE_VERSION in $BENCH_VENV"
    python3 -m venv "$BENCH_VENV"
    "$BENCH_VENV/bin/pip" install -q "kserve==$KSERVE_VERSION"
  fi
  # The same torch 2.13.0 wheel as the runtime: the main venv's site-packages, appended
  # after the bench venv's own (so kserve's pinned dependencies win).
  local site
  site="$("$BENCH_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  .venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' >"$site/zz-modelplane-torch.pth"
}

METRICS_URL=""  # set while the runtime runs: its /metrics is scraped around each point

scrape() { # NAME
  [ -n "$METRICS_URL" ] || return 0
  mkdir -p "$OUT/metrics"
  curl -fsS "$METRICS_URL" >"$OUT/metrics/$1" || true
}

load() { # LABEL_FILE URL PROTOCOL MODEL C [extra flags...]
  local file="$1" url="$2" protocol="$3" model="$4" c="$5"
  shift 5
  scrape "${file%.json}.before.prom"
  taskset -c "$CLIENT_CPU" timeout $((SECONDS_PER_POINT + 60)) target/release/modelplane-bench \
    --url "$url" --protocol "$protocol" --model "$model" --concurrency "$c" \
    --duration "${SECONDS_PER_POINT}s" --requests 10000000 --warmup-requests $((c * 10)) \
    --timeout 30s --threads 1 --label "${file%.json}" --json "$OUT/$file" "$@" | sed 's/^/  /'
  scrape "${file%.json}.after.prom"
}

plain() {
  for model in "${MODELS[@]}"; do
    echo "== plain libtorch loop: $model"
    taskset -c "$SERVER_CPU" timeout 300 target/release/examples/plain_loop \
      --model "examples/models/$model/1/model.pt" --shape "${SHAPE[$model]}" --datatype FP32 \
      --batch-sizes "${BATCHES[$model]}" --duration-s "$PLAIN_SECONDS" --threads 1 \
      --json "$OUT/plain-$model.json"
  done
}

modelplane() {
  local http grpc
  http="$(free_port)" grpc="$(free_port)"
  cat >"$OUT/runtime.yaml" <<EOF
server: {http: "127.0.0.1:$http", grpc: "127.0.0.1:$grpc", cacheDir: "$OUT/cache", intraOpThreads: 1}
models:
EOF
  for model in "${MODELS[@]}"; do
    cat >>"$OUT/runtime.yaml" <<EOF
- name: $model
  batching: {maxBatchSize: ${MAX_BATCH[$model]}, maxQueueDelay: 0s}
  limits: {maxInFlight: 1024, maxQueue: 1024}
  versions: [{version: "1", source: {path: "$ROOT/examples/models/$model/1/model.pt"}}]
EOF
  done
  # The floor: the MLP's shapes, no compute.
  mkdir -p "$OUT/noop/1"
  # TorchScript compiles from a source file, not from `python -c`.
  cat >"$OUT/noop/make.py" <<'EOF'
import sys, torch
class Noop(torch.nn.Module):
    def forward(self, x):
        return x[:, :10]
torch.jit.script(Noop()).save(sys.argv[1])
EOF
  .venv/bin/python "$OUT/noop/make.py" "$OUT/noop/1/model.pt"
  cp examples/models/mlp/1/signature.json "$OUT/noop/1/"
  cat >>"$OUT/runtime.yaml" <<EOF
- name: noop
  batching: {maxBatchSize: ${MAX_BATCH[mlp]}, maxQueueDelay: 0s}
  limits: {maxInFlight: 1024, maxQueue: 1024}
  versions: [{version: "1", source: {path: "$OUT/noop/1/model.pt"}}]
EOF
  echo "== modelplane-runtime (config $OUT/runtime.yaml)"
  taskset -c "$SERVER_CPU" target/release/modelplane-runtime serve --config "$OUT/runtime.yaml" \
    >"$OUT/runtime.log" 2>&1 &
  SERVER_PID=$!
  for model in "${MODELS[@]}"; do wait_ready "http://127.0.0.1:$http/v2/models/$model/ready" "$OUT/runtime.log"; done
  METRICS_URL="http://127.0.0.1:$http/metrics"
  for model in "${MODELS[@]}"; do
    for protocol in "${PROTOCOLS[@]}"; do
      local url="http://127.0.0.1:$http"
      [ "$protocol" = grpc ] && url="http://127.0.0.1:$grpc"
      for c in "${CONCURRENCY[@]}"; do
        load "modelplane-$model-$protocol-c$c.json" "$url" "$protocol" "$model" "$c"
      done
    done
  done
  for protocol in rest-binary grpc; do
    local url="http://127.0.0.1:$http"
    [ "$protocol" = grpc ] && url="http://127.0.0.1:$grpc"
    load "modelplane-noop-$protocol-c1.json" "$url" "$protocol" noop 1
  done
  METRICS_URL=""
  stop_server
}

kserve() {
  for model in "${MODELS[@]}"; do
    local http grpc
    http="$(free_port)" grpc="$(free_port)"
    echo "== KServe ModelServer: $model"
    taskset -c "$SERVER_CPU" "$BENCH_VENV/bin/python" bench/kserve_server.py --model_name "$model" \
      --model_path "examples/models/$model/1/model.pt" --http_port "$http" --grpc_port "$grpc" \
      >"$OUT/kserve-$model.log" 2>&1 &
    SERVER_PID=$!
    wait_ready "http://127.0.0.1:$http/v2/models/$model/ready" "$OUT/kserve-$model.log"
    for c in "${CONCURRENCY[@]}"; do
      # KServe's metadata lists no inputs, so the input is named here.
      load "kserve-$model-rest-json-c$c.json" "http://127.0.0.1:$http" rest-json "$model" "$c" \
        --input-name input --datatype FP32 --shape "${SHAPE[$model]}"
    done
    stop_server
  done
}

machine() {
  echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), $(nproc) CPUs"
  echo "memory: $(free -g | awk '/^Mem:/ {print $2}') GiB; kernel $(uname -r)"
  echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "cores: servers and baselines on CPU $SERVER_CPU (one libtorch thread), load generator on CPU $CLIENT_CPU"
  echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo none)$(git diff --quiet HEAD 2>/dev/null || echo ' plus the working tree')"
}

# --- generate mode -------------------------------------------------------------------

GEN_MODEL=smollm2
GEN_CONCURRENCY=(1 16 64)
GEN_GRPC_CONCURRENCY=16
MAX_TOKENS="${BENCH_MAX_TOKENS:-256}"

llm_baseline() {
  echo "== Python baselines (bench/llm_baseline.py, CPU $SERVER_CPU, one libtorch thread)"
  local flags=()
  [ "${BENCH_TRANSFORMERS:-1}" = 0 ] && flags=(--skip-transformers)
  taskset -c "$SERVER_CPU" timeout 900 .venv/bin/python bench/llm_baseline.py \
    --model "examples/models/$GEN_MODEL" --max-tokens "$MAX_TOKENS" --threads 1 \
    --json "$OUT/llm-baseline.json" "${flags[@]}" 2>"$OUT/llm-baseline.log" | sed 's/^/  /'
}

sample_metrics() { # FILE: once a second, "unix-time output-tokens running" from /metrics
  local file="$1"
  while :; do
    curl -fsS --max-time 2 "$METRICS_URL" 2>/dev/null | awk -v t="$(date +%s.%N)" '
      /^modelplane_generate_tokens_total\{.*gen_ai_token_type="output"/ { out += $NF }
      /^modelplane_generate_running_requests\{/ { run += $NF }
      END { print t, out + 0, run + 0 }' >>"$file" || true
    sleep 1
  done
}

gen_load() { # LABEL URL PROTOCOL C REQUESTS SECONDS [extra flags...]
  local label="$1" url="$2" protocol="$3" c="$4" requests="$5" seconds="$6" sampler=""
  shift 6
  scrape "gen-$label.before.prom"
  # The server's output-token counter and running gauge, sampled through the point, give
  # the steady-state rate while all c requests run (summarize_generate.py).
  if [ -n "$METRICS_URL" ]; then
    sample_metrics "$OUT/metrics/gen-$label.samples" &
    sampler=$!
  fi
  taskset -c "$CLIENT_CPU" timeout $((seconds + 360)) target/release/modelplane-bench \
    --url "$url" --protocol "$protocol" --model "$GEN_MODEL" --concurrency "$c" \
    --duration "${seconds}s" --requests "$requests" --warmup-requests 2 \
    --max-tokens "$MAX_TOKENS" --timeout 300s --threads 1 --label "$label" \
    --json "$OUT/gen-$label.json" "$@" | sed 's/^/  /'
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
  fi
  scrape "gen-$label.after.prom"
}

modelplane_generate() {
  local http grpc slots="${GEN_CONCURRENCY[-1]}"
  http="$(free_port)" grpc="$(free_port)"
  # Context: the longest prompt of bench/prompts.jsonl through the chat template is ≈ 300
  # tokens, plus max_tokens. One slot per concurrent request, so none waits for a slot.
  cat >"$OUT/runtime.yaml" <<EOF
server: {http: "127.0.0.1:$http", grpc: "127.0.0.1:$grpc", cacheDir: "$OUT/cache", intraOpThreads: 1}
models:
- name: $GEN_MODEL
  task: generate
  generation: {slots: $slots, context: $((384 + MAX_TOKENS)), maxWaiting: 256}
  limits: {maxInFlight: 1024, maxQueue: 1024, requestTimeout: 300s}
  versions: [{version: "1", source: {path: "$ROOT/examples/models/$GEN_MODEL"}}]
EOF
  # gRPC takes raw text: send the prompts already through the chat template, so it
  # generates from the very tokens the chat endpoint does.
  .venv/bin/python bench/llm_baseline.py --model "examples/models/$GEN_MODEL" \
    --render-chat-prompts "$OUT/chat-prompts.jsonl" 2>>"$OUT/llm-baseline.log"
  echo "== modelplane-runtime (config $OUT/runtime.yaml)"
  taskset -c "$SERVER_CPU" target/release/modelplane-runtime serve --config "$OUT/runtime.yaml" \
    >"$OUT/runtime.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$http/v2/models/$GEN_MODEL/ready" "$OUT/runtime.log"
  METRICS_URL="http://127.0.0.1:$http/metrics"
  # c=1: exactly one pass over the prompts (each once, like the Python loop), so its TTFT
  # p50 compares with the loop's first-step p50 over the same prompts; at most 300 s.
  local prompts
  prompts="$(grep -c . bench/prompts.jsonl)"
  gen_load openai-chat-c1 "http://127.0.0.1:$http" openai-chat 1 "$prompts" 300
  for c in "${GEN_CONCURRENCY[@]:1}"; do
    gen_load "openai-chat-c$c" "http://127.0.0.1:$http" openai-chat "$c" 10000000 "$SECONDS_PER_POINT"
  done
  gen_load "grpc-stream-c$GEN_GRPC_CONCURRENCY" "http://127.0.0.1:$grpc" grpc-stream \
    "$GEN_GRPC_CONCURRENCY" 10000000 "$SECONDS_PER_POINT" --prompts "$OUT/chat-prompts.jsonl"
  METRICS_URL=""
  stop_server
}

build
if [ "$MODE" = generate ]; then
  [ -f "examples/models/$GEN_MODEL/model.pt" ] || .venv/bin/python examples/make_chat_model.py
  machine | tee "$OUT/machine.txt"
  llm_baseline
  modelplane_generate
  echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
  .venv/bin/python bench/summarize_generate.py "$OUT" | tee "$OUT/summary.md"
else
  .venv/bin/python examples/make_models.py --only "${MODELS[@]}"
  [ "$MODE" = c1 ] || bench_venv
  machine | tee "$OUT/machine.txt"
  plain
  modelplane
  [ "$MODE" = c1 ] || kserve
  .venv/bin/python bench/summarize.py "$OUT" | tee "$OUT/summary.md"
fi
echo "bench: reports in $OUT"
