"""Helpers for the tests of examples/make_models.py: run it, read what it wrote."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "make_models.py"
SMALL_MODELS = ("classifier", "mlp", "tiny-lm")
NUMPY_DTYPES = {"FP32": np.float32, "INT64": np.int64}


def run_script(out: Path, *args: str) -> str:
    """Runs the script into `out`; returns its stdout and fails the test on a non-zero exit."""
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out), *args],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, f"make_models.py failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def read_manifest(out: Path) -> dict:
    return json.loads((out / "manifest.json").read_text())


def entries(out: Path) -> dict[tuple[str, str], dict]:
    """Manifest entries keyed by (name, version)."""
    return {(m["name"], m["version"]): m for m in read_manifest(out)["models"]}


def read_tensor(folder: Path, described: dict) -> np.ndarray:
    """Loads a sample file (raw little-endian bytes) with the shape and datatype the manifest gives."""
    dtype = np.dtype(NUMPY_DTYPES[described["datatype"]]).newbyteorder("<")
    return np.fromfile(folder / described["file"], dtype=dtype).reshape(described["shape"])


def pinned_devices(model: Path) -> set[str]:
    """Devices written as constants into a TorchScript archive's code (none: it runs on any device)."""
    with zipfile.ZipFile(model) as archive:
        code = [archive.read(n).decode() for n in archive.namelist() if "/code/" in n and n.endswith(".py")]
    return {device for text in code for device in re.findall(r'torch\.device\("([^"]+)"\)', text)}
