#!/usr/bin/env python3
"""CUDA smoke check and micro-benchmark of a modelplane-runtime binary.

Serves the same example models on `cpu` and on `cuda` side by side from one runtime
process and checks that they agree:

* tensor models (mlp, classifier): the same seeded inputs through both devices over
  OIP REST, max |cpu − cuda| below a tolerance;
* a generative model (tiny-llama, random weights): greedy completions on both devices
  over /v1/completions, token for token where the logits are not near-ties;

then times both devices: sequential tensor requests and 16 concurrent generations.

It needs only the Python standard library, so it runs on a bare GPU machine:

    python3 scripts/gpu_check.py --runtime target/release/modelplane-runtime \
        --models examples/models --out /tmp/gpu-check

Writes `report.json` and `runtime.log` into --out; exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import random
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

TENSOR_MODELS = {
    # name: (folder, task, input name, row width)
    "mlp": ("mlp/1/model.pt", "tensor"),
    "classifier": ("classifier/1/model.pt", "classify"),
}


DEVICE = "cuda"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_yaml(models: Path, http: int, grpc: int, cache: Path, with_llm: bool) -> str:
    lines = [
        "server:",
        f"  http: 127.0.0.1:{http}",
        f"  grpc: 127.0.0.1:{grpc}",
        f"  cacheDir: {cache}",
        "models:",
    ]
    for name, (rel, task) in TENSOR_MODELS.items():
        for tag, device in (("ref", "cpu"), ("dev", DEVICE)):
            lines += [
                f"  - name: {name}-{tag}",
                f"    task: {task}",
                "    batching: {maxBatchSize: 32, maxQueueDelay: 1ms}",
                "    versions:",
                '      - version: "1"',
                f"        device: {device}",
                f"        source: {{path: {models / rel}}}",
            ]
    if with_llm:
        for tag, device in (("ref", "cpu"), ("dev", DEVICE)):
            lines += [
                f"  - name: tiny-llama-{tag}",
                "    task: generate",
                "    generation: {slots: 16, context: 512}",
                "    versions:",
                '      - version: "1"',
                f"        device: {device}",
                f"        source: {{path: {models / 'tiny-llama'}}}",
            ]
    return "\n".join(lines) + "\n"


def call(url: str, body: dict | None = None, timeout: float = 60.0) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.loads(resp.read() or b"{}")


def wait_ready(base: str, proc: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"runtime exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(base + "/v2/health/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise RuntimeError(f"runtime not ready after {seconds} s")


def tensor_inputs(base: str, model: str, rng: random.Random) -> dict:
    meta = call(f"{base}/v2/models/{model}")
    inputs = []
    for spec in meta["inputs"]:
        shape = [2 if d < 0 else d for d in spec["shape"]]
        count = 1
        for d in shape:
            count *= d
        data = [rng.uniform(-1, 1) for _ in range(count)]
        if spec["datatype"].startswith("INT"):
            data = [int(abs(x) * 10) for x in data]
        inputs.append({"name": spec["name"], "datatype": spec["datatype"], "shape": shape, "data": data})
    return {"inputs": inputs}


def check_tensor(base: str, name: str, report: dict) -> bool:
    rng = random.Random(7)
    body = tensor_inputs(base, f"{name}-ref", rng)
    out = {}
    timings = {}
    for tag, device in (("ref", "cpu"), ("dev", DEVICE)):
        model = f"{name}-{tag}"
        out[tag] = call(f"{base}/v2/models/{model}/infer", body)["outputs"]
        started = time.perf_counter()
        for _ in range(200):
            call(f"{base}/v2/models/{model}/infer", body)
        timings[f"{tag}_{device}"] = (time.perf_counter() - started) / 200
    diff = 0.0
    for a, b in zip(out["ref"], out["dev"]):
        for x, y in zip(a["data"], b["data"]):
            diff = max(diff, abs(float(x) - float(y)))
    ok = diff < 1e-3
    report[name] = {
        "max_abs_diff": diff,
        "mean_request_s": timings,
        "ok": ok,
    }
    return ok


def complete(base: str, model: str, prompt: str, max_tokens: int) -> tuple[str, dict, float]:
    started = time.perf_counter()
    body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0}
    answer = call(f"{base}/v1/completions", body, timeout=120)
    return answer["choices"][0]["text"], answer["usage"], time.perf_counter() - started


def check_generate(base: str, report: dict) -> bool:
    prompts = [f"Story {i}: once upon a time" + " and then" * i for i in range(16)]
    texts = {}
    result = {}
    for tag, device in (("ref", "cpu"), ("dev", DEVICE)):
        model = f"tiny-llama-{tag}"
        texts[tag] = [complete(base, model, p, 32)[0] for p in prompts[:4]]
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(16) as pool:
            runs = list(pool.map(lambda p, m=model: complete(base, m, p, 64), prompts))
        wall = time.perf_counter() - started
        tokens = sum(u["completion_tokens"] for _, u, _ in runs)
        result[f"{tag}_{device}"] = {"c16_output_tokens_per_s": tokens / wall, "c16_wall_s": wall}
    same = sum(a == b for a, b in zip(texts["ref"], texts["dev"]))
    result["greedy_equal_prompts"] = f"{same}/{len(texts['ref'])}"
    result["ok"] = same >= len(texts["ref"]) - 1
    report["tiny-llama"] = result
    return result["ok"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", required=True, type=Path)
    parser.add_argument("--models", required=True, type=Path)
    parser.add_argument("--out", required=True, type=Path)
    parser.add_argument("--no-generate", action="store_true", help="tensor models only")
    parser.add_argument(
        "--device", default="cuda", help="the device checked against cpu (cpu: dry run of the script)"
    )
    args = parser.parse_args()
    global DEVICE
    DEVICE = args.device
    args.out.mkdir(parents=True, exist_ok=True)
    http, grpc = free_port(), free_port()
    config = args.out / "config.yaml"
    config.write_text(
        config_yaml(args.models.resolve(), http, grpc, args.out / "cache", not args.no_generate)
    )
    report: dict = {"host": socket.gethostname()}
    try:
        report["gpu"] = subprocess.run(
            ["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError) as err:
        report["gpu"] = f"nvidia-smi: {err}"
    log = open(args.out / "runtime.log", "w")
    proc = subprocess.Popen(
        [str(args.runtime), "serve", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT
    )
    ok = True
    base = f"http://127.0.0.1:{http}"
    try:
        wait_ready(base, proc, 240)
        for name in TENSOR_MODELS:
            ok &= check_tensor(base, name, report)
        if not args.no_generate:
            ok &= check_generate(base, report)
        metrics = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
        (args.out / "metrics.txt").write_text(metrics)
    except Exception as err:  # report whatever broke, with the runtime log beside it
        report["error"] = repr(err)
        ok = False
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
    report["ok"] = ok
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
