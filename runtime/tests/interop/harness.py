"""Runs the real `modelplane-runtime` binary for the interop tests.

The binary is `$MODELPLANE_RUNTIME_BIN`, else `target/debug/modelplane-runtime`
(built with cargo when missing). Each runtime listens on free 127.0.0.1 ports,
reads a generated config file, and logs to a file the tests can read.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[3]
MODELS = ROOT / "examples" / "models"
READY_TIMEOUT_S = 120
BUILD_TIMEOUT_S = 3600

# The runtime serves these limits in the shared fixture; bad-input tests rely on them.
MAX_BODY_BYTES = 1 << 20
MAX_BATCH = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cargo_env() -> dict[str, str]:
    """What scripts/env.sh sets: tch finds libtorch through the venv's python."""
    env = dict(os.environ)
    venv = ROOT / ".venv"
    env["LIBTORCH_USE_PYTORCH"] = "1"
    env["PYTHON_SYS_EXECUTABLE"] = str(venv / "bin" / "python")
    env["PATH"] = f"{venv / 'bin'}:{env.get('PATH', '')}"
    return env


def runtime_binary() -> Path:
    explicit = os.environ.get("MODELPLANE_RUNTIME_BIN")
    if explicit:
        return Path(explicit)
    binary = ROOT / "target" / "debug" / "modelplane-runtime"
    if not binary.exists():
        subprocess.run(
            ["cargo", "build", "-p", "modelplane-runtime", "--bin", "modelplane-runtime"],
            cwd=ROOT,
            env=cargo_env(),
            check=True,
            timeout=BUILD_TIMEOUT_S,
        )
    return binary


def http_get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


@dataclass
class Runtime:
    """One running runtime process and the config file it watches."""

    workdir: Path
    config: dict
    http_port: int = field(default_factory=free_port)
    grpc_port: int = field(default_factory=free_port)
    process: subprocess.Popen | None = None

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def http_addr(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    @property
    def grpc_addr(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "config.yaml"

    @property
    def log_path(self) -> Path:
        return self.workdir / "runtime.log"

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    def write_config(self, models: list[dict]) -> None:
        """Replaces the models section atomically; the runtime reloads it."""
        self.config["models"] = models
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(self.config, sort_keys=False))
        tmp.replace(self.config_path)

    def start(self) -> "Runtime":
        """Starts the process and waits until it and every configured model are ready."""
        self.start_process()
        self.wait_ready()
        return self

    def start_process(self) -> None:
        """Writes the config and starts the process without waiting."""
        self.config.setdefault("server", {}).update(
            {
                "http": self.http_addr,
                "grpc": self.grpc_addr,
                "cacheDir": str(self.cache_dir),
                "watchInterval": "200ms",
                "shutdownGrace": "5s",
            }
        )
        self.write_config(self.config.get("models", []))
        log = self.log_path.open("ab")
        env = dict(os.environ, RUST_LOG=os.environ.get("RUST_LOG", "info"))
        self.process = subprocess.Popen(
            [str(runtime_binary()), "serve", "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"runtime exited ({self.process.returncode}):\n{self.log_text()}")
            try:
                if self.all_ready():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise TimeoutError(f"runtime not ready in {timeout_s} s:\n{self.log_text()}")

    def all_ready(self) -> bool:
        """Server ready and every configured model ready (checked apart, so a server
        that says ready too early does not start the tests early)."""
        if http_get(f"{self.http_url}/v2/health/ready", timeout=1.0)[0] != 200:
            return False
        names = [m["name"] for m in self.config.get("models", [])]
        return all(
            http_get(f"{self.http_url}/v2/models/{name}/ready", timeout=1.0)[0] == 200
            for name in names
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)


def model_entry(name: str, versions: dict[str, Path], **extra) -> dict:
    """A config `models` entry serving local files as the given versions."""
    entry = {
        "name": name,
        "versions": [{"version": v, "source": {"path": str(p)}} for v, p in versions.items()],
    }
    entry.update(extra)
    return entry


# Every datatype the mixed model takes, as (OIP name, numpy dtype), in forward() order.
MIXED_TYPES = [
    ("FP64", np.float64),
    ("FP16", np.float16),
    ("INT32", np.int32),
    ("INT16", np.int16),
    ("INT8", np.int8),
    ("UINT8", np.uint8),
    ("BOOL", np.bool_),
]

MIXED_SOURCE = '''
import sys

import torch
from typing import Tuple

class Mixed(torch.nn.Module):
    def forward(self, fp64: torch.Tensor, fp16: torch.Tensor, int32: torch.Tensor,
                int16: torch.Tensor, int8: torch.Tensor, uint8: torch.Tensor,
                flag: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor,
                torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (fp64 * 2, fp16 * 2, int32 + 1, int16 - 1, int8 * 2, uint8 + 1,
                torch.logical_not(flag))

torch.jit.save(torch.jit.script(Mixed()), sys.argv[1])
'''


def mixed_expected(inputs: list[np.ndarray]) -> list[np.ndarray]:
    """What the mixed model returns, computed with numpy."""
    fp64, fp16, int32, int16, int8, uint8, flag = inputs
    return [
        fp64 * 2,
        (fp16 * 2).astype(np.float16),
        int32 + 1,
        (int16 - 1).astype(np.int16),
        (int8 * 2).astype(np.int8),
        (uint8 + 1).astype(np.uint8),
        np.logical_not(flag),
    ]


def mixed_inputs(rows: int = 2) -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    arrays = []
    for _, np_type in MIXED_TYPES:
        if np_type is np.bool_:
            arrays.append(rng.integers(0, 2, size=(rows, 3)).astype(np.bool_))
        elif np.issubdtype(np_type, np.floating):
            arrays.append(rng.uniform(-4, 4, size=(rows, 3)).astype(np_type))
        else:
            arrays.append(rng.integers(0, 50, size=(rows, 3)).astype(np_type))
    return arrays


def mixed_names() -> list[str]:
    return [name.lower() if name != "BOOL" else "flag" for name, _ in MIXED_TYPES]


def sample(models: Path, name: str, version: str) -> tuple[np.ndarray, np.ndarray]:
    """The example model's sample input and expected output, from the manifest."""
    manifest = json.loads((models / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == name and m["version"] == version)
    folder = models / entry["path"]

    def load(t: dict) -> np.ndarray:
        dtype = {"FP32": np.float32, "INT64": np.int64}[t["datatype"]]
        return np.fromfile(folder / t["file"], dtype=dtype).reshape(t["shape"])

    return load(entry["sample"]["inputs"][0]), load(entry["sample"]["outputs"][0])
