"""The script's contract: what it writes, that it is reproducible, and that the models run."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from made_models import SCRIPT, SMALL_MODELS, entries, pinned_devices, read_manifest, read_tensor, run_script

TORCH_DTYPES = {"FP32": torch.float32, "INT64": torch.int64}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def example_input(described: dict, vocab_size: int, batch: int, length: int) -> torch.Tensor:
    """A random tensor for a declared input, with -1 dims filled by `batch` and then `length`."""
    fill = iter([batch, length])
    shape = [next(fill) if d == -1 else d for d in described["shape"]]
    if described["datatype"] == "INT64":
        return torch.randint(0, vocab_size, shape)
    return torch.randn(shape)


def fits(value: torch.Tensor, described: dict) -> bool:
    want = described["shape"]
    return (
        value.dtype == TORCH_DTYPES[described["datatype"]]
        and value.dim() == len(want)
        and all(w in (-1, g) for w, g in zip(want, value.shape))
    )


def test_manifest_lists_every_version_with_its_task(small_models):
    made = entries(small_models)
    assert set(made) == {("classifier", "1"), ("classifier", "2"), ("mlp", "1"), ("mlp", "2"), ("tiny-lm", "1")}
    assert {name: m["task"] for (name, _), m in made.items()} == {
        "classifier": "classify",
        "mlp": "tensor",
        "tiny-lm": "generate",
    }
    assert read_manifest(small_models)["schema"] == 1


def test_manifest_sha256_matches_every_file_on_disk(small_models):
    for entry in entries(small_models).values():
        folder = small_models / entry["path"]
        assert sorted(p.name for p in folder.iterdir()) == sorted(entry["files"])
        for name, meta in entry["files"].items():
            assert sha256(folder / name) == meta["sha256"], f"{entry['path']}/{name}"
            assert (folder / name).stat().st_size == meta["bytes"]
        assert entry["sha256"] == entry["files"][entry["model"]]["sha256"]


def test_rebuild_into_another_folder_gives_identical_bytes(small_models, tmp_path):
    run_script(tmp_path, "--only", *SMALL_MODELS)
    assert (tmp_path / "manifest.json").read_bytes() == (small_models / "manifest.json").read_bytes()
    for entry in entries(tmp_path).values():
        for name in entry["files"]:
            assert sha256(tmp_path / entry["path"] / name) == sha256(small_models / entry["path"] / name)


def test_second_run_skips_models_that_are_up_to_date(small_models, tmp_path):
    out = tmp_path / "models"
    shutil.copytree(small_models, out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("model.pt")}
    stdout = run_script(out, "--only", *SMALL_MODELS)
    assert "made " not in stdout
    assert stdout.count("up to date") == len(before)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("model.pt")} == before


def test_damaged_model_file_is_rebuilt_and_others_kept(small_models, tmp_path):
    out = tmp_path / "models"
    shutil.copytree(small_models, out)
    damaged = out / "mlp" / "2" / "model.pt"
    damaged.write_bytes(b"not a torchscript archive")
    stdout = run_script(out, "--only", *SMALL_MODELS)
    assert "made        mlp/2" in stdout
    assert stdout.count("made ") == 1
    # Rebuilt alone, it is the same file as when it was built after the others.
    assert sha256(damaged) == entries(small_models)[("mlp", "2")]["sha256"]
    assert read_manifest(out) == read_manifest(small_models)


def test_model_bytes_do_not_depend_on_what_else_is_built(small_models, tmp_path):
    run_script(tmp_path, "--only", "tiny-lm")
    assert entries(tmp_path)[("tiny-lm", "1")] == entries(small_models)[("tiny-lm", "1")]


def test_force_rebuilds_named_models_only_and_keeps_other_entries(small_models, tmp_path):
    out = tmp_path / "models"
    shutil.copytree(small_models, out)
    stdout = run_script(out, "--only", "mlp", "--force")
    assert stdout.count("made ") == 2 and "up to date" not in stdout
    assert set(entries(out)) == set(entries(small_models))


def test_unknown_model_name_is_refused(tmp_path):
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", "resnet"],
        capture_output=True,
        text=True,
    )
    assert done.returncode != 0
    assert "invalid choice" in done.stderr


@pytest.mark.parametrize("name", ["classifier", "mlp", "tiny-lm"])
@pytest.mark.parametrize("batch,length", [(1, 1), (3, 7)])
def test_model_loads_and_gives_declared_outputs_for_any_batch(small_models, name, batch, length):
    entry = entries(small_models)[(name, "1")]
    module = torch.jit.load(str(small_models / entry["path"] / entry["model"])).eval()
    vocab_size = entry["config"].get("vocab_size", 0)
    inputs = [example_input(d, vocab_size, batch, length) for d in entry["inputs"]]
    with torch.no_grad():
        output = module(*inputs)
    assert all(fits(x, d) for x, d in zip(inputs, entry["inputs"]))
    assert fits(output, entry["outputs"][0]), f"{output.dtype} {list(output.shape)}"
    assert output.shape[0] == batch


@pytest.mark.parametrize("name", ["classifier", "mlp", "tiny-lm"])
def test_sample_output_is_what_the_saved_model_computes(small_models, name):
    entry = entries(small_models)[(name, "1")]
    folder = small_models / entry["path"]
    module = torch.jit.load(str(folder / entry["model"])).eval()
    inputs = [torch.from_numpy(read_tensor(folder, d)) for d in entry["sample"]["inputs"]]
    (expected,) = [read_tensor(folder, d) for d in entry["sample"]["outputs"]]
    with torch.no_grad():
        got = module(*inputs).numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-5)


def test_no_model_is_pinned_to_the_cpu(small_models):
    for entry in entries(small_models).values():
        assert pinned_devices(small_models / entry["path"] / entry["model"]) == set(), entry["path"]


@pytest.mark.parametrize("name", ["classifier", "mlp"])
def test_versions_share_a_signature_but_compute_differently(small_models, name):
    made = entries(small_models)
    first, second = made[(name, "1")], made[(name, "2")]
    assert first["sha256"] != second["sha256"]
    assert (first["inputs"], first["outputs"]) == (second["inputs"], second["outputs"])
    outputs = [read_tensor(small_models / e["path"], e["sample"]["outputs"][0]) for e in (first, second)]
    assert not np.allclose(*outputs, atol=1e-3)


def test_corrupt_model_file_fails_to_load(small_models, tmp_path):
    # The runtime's failure tests truncate a real model the same way.
    good = small_models / "mlp" / "1" / "model.pt"
    corrupt = tmp_path / "model.pt"
    corrupt.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(RuntimeError):
        torch.jit.load(str(corrupt))


def test_signature_file_beside_each_model_is_its_manifest_signature(small_models):
    for entry in entries(small_models).values():
        signature = json.loads((small_models / entry["path"] / "signature.json").read_text())
        assert signature == {"inputs": entry["inputs"], "outputs": entry["outputs"]}


def test_classifier_labels_file_names_one_class_per_logit(small_models):
    entry = entries(small_models)[("classifier", "1")]
    labels = (small_models / entry["path"] / "labels.txt").read_text().splitlines()
    assert labels == entry["config"]["labels"]
    assert len(labels) == entry["outputs"][0]["shape"][-1] == len(set(labels))
