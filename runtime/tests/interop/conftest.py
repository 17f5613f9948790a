"""Session fixtures: the example models, a mixed-datatype model, and one running runtime."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from harness import (
    MAX_BATCH,
    MAX_BODY_BYTES,
    MIXED_SOURCE,
    MIXED_TYPES,
    MODELS,
    ROOT,
    Runtime,
    mixed_names,
    model_entry,
)


@pytest.fixture(scope="session")
def example_models() -> Path:
    """The example TorchScript models (made by examples/make_models.py when missing)."""
    wanted = [MODELS / m / v / "model.pt" for m in ("mlp", "classifier") for v in ("1", "2")]
    if not all(p.exists() for p in wanted):
        subprocess.run(
            [sys.executable, str(ROOT / "examples" / "make_models.py"), "--only", "mlp", "classifier"],
            cwd=ROOT,
            check=True,
            timeout=600,
        )
    return MODELS


@pytest.fixture(scope="session")
def mixed_model(tmp_path_factory) -> Path:
    """A scripted model with one input and one output of each datatype in MIXED_TYPES."""
    out = tmp_path_factory.mktemp("mixed") / "1"
    out.mkdir()
    model = out / "model.pt"
    # TorchScript compiles from source, so the model class lives in a real file.
    script = out.parent / "make_mixed.py"
    script.write_text(MIXED_SOURCE)
    subprocess.run([sys.executable, str(script), str(model)], check=True, timeout=120)
    names = mixed_names()
    spec = lambda n, t: {"name": n, "datatype": t, "shape": [-1, 3]}  # noqa: E731
    signature = {
        "inputs": [spec(n, t) for n, (t, _) in zip(names, MIXED_TYPES)],
        "outputs": [spec(f"out_{n}", t) for n, (t, _) in zip(names, MIXED_TYPES)],
    }
    (out / "signature.json").write_text(json.dumps(signature))
    return model


@pytest.fixture(scope="session")
def runtime(tmp_path_factory, example_models, mixed_model):
    """One runtime serving mlp (versions 1 and 2, batching) and the mixed-datatype model."""
    limits = {"maxBodyBytes": MAX_BODY_BYTES, "maxElements": 200_000}
    models = [
        model_entry(
            "mlp",
            {"1": example_models / "mlp/1/model.pt", "2": example_models / "mlp/2/model.pt"},
            defaultVersion="1",
            batching={"maxBatchSize": MAX_BATCH, "maxQueueDelay": "1ms"},
            limits=limits,
        ),
        model_entry("mixed", {"1": mixed_model}, limits=limits),
    ]
    rt = Runtime(workdir=tmp_path_factory.mktemp("runtime"), config={"models": models})
    try:
        yield rt.start()
    finally:
        rt.stop()
