"""A model pulled by digest from a real OCI registry (CNCF distribution, Debian's
`docker-registry`) on 127.0.0.1, pushed there with a real client (`oras`)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import oras.client
import pytest
import tritonclient.http as httpclient
from harness import ROOT, Runtime, sample

REGISTRY_SH = ROOT / "scripts" / "registry.sh"
RELOAD_TIMEOUT_S = 60
MLP_SIGNATURE = {
    "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}],
    "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}],
}


@pytest.fixture
def registry(tmp_path):
    """A registry on a free loopback port, storing blobs under tmp_path/registry/storage."""
    if not Path("/usr/bin/docker-registry").exists():
        pytest.fail("docker-registry is not installed (apt-get install docker-registry)")
    workdir = tmp_path / "registry"
    started = subprocess.run([str(REGISTRY_SH), "start", str(workdir)], capture_output=True,
                             text=True, timeout=30, check=True)
    try:
        yield started.stdout.strip(), workdir / "storage"
    finally:
        subprocess.run([str(REGISTRY_SH), "stop", str(workdir)], timeout=30, check=False)


def push(addr: str, tag: str, folder: Path, staging: Path, monkeypatch) -> tuple[str, dict]:
    """Pushes folder's model.pt and signature.json as one artifact; returns its digest and manifest."""
    staging.mkdir()
    for name in ("model.pt", "signature.json"):
        shutil.copy(folder / name, staging / name)
    client = oras.client.OrasClient(hostname=addr, insecure=True)
    target = f"{addr}/models/mlp:{tag}"
    monkeypatch.chdir(staging)  # oras titles each layer with the path it is given
    response = client.push(files=["model.pt", "signature.json"], target=target)
    assert response.status_code == 201, response.text
    digest = response.headers["Docker-Content-Digest"]
    return digest, client.get_manifest(f"{addr}/models/mlp@{digest}")


def oci_model(addr: str, digest: str) -> dict:
    source = {"oci": {"reference": f"{addr}/models/mlp@{digest}", "plainHttp": True}}
    return {"name": "mlp-oci", **MLP_SIGNATURE, "versions": [{"version": "1", "source": source}]}


def blob(storage: Path, digest: str) -> Path:
    hex_ = digest.removeprefix("sha256:")
    return storage / "docker/registry/v2/blobs/sha256" / hex_[:2] / hex_ / "data"


def layer_digest(manifest: dict, title: str) -> str:
    return next(l["digest"] for l in manifest["layers"]
                if l["annotations"]["org.opencontainers.image.title"] == title)


def sha256_file(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def wait_for_log(rt: Runtime, *needles: str) -> str:
    deadline = time.monotonic() + RELOAD_TIMEOUT_S
    while time.monotonic() < deadline:
        lines = [l for l in rt.log_text().splitlines() if all(n in l for n in needles)]
        if lines:
            return lines[0]
        time.sleep(0.2)
    raise AssertionError(f"no log line with {needles} in {RELOAD_TIMEOUT_S} s:\n{rt.log_text()}")


def infer_logits(rt: Runtime, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url=rt.http_addr)
    try:
        t = httpclient.InferInput("input", list(x.shape), "FP32")
        t.set_data_from_numpy(x)
        return client.infer("mlp-oci", [t]).as_numpy("logits")
    finally:
        client.close()


@pytest.fixture
def oci_runtime(tmp_path, registry, example_models, monkeypatch):
    """A runtime serving mlp version 1 pulled by digest; yields it with registry facts."""
    addr, storage = registry
    digest, manifest = push(addr, "v1", example_models / "mlp/1", tmp_path / "v1", monkeypatch)
    rt = Runtime(workdir=tmp_path / "runtime", config={"models": [oci_model(addr, digest)]})
    rt.workdir.mkdir()
    try:
        yield rt.start(), addr, storage, digest, manifest
    finally:
        rt.stop()


def test_model_pulled_by_digest_serves_and_is_cached(oci_runtime, example_models):
    rt, _, _, digest, _ = oci_runtime
    x, expected = sample(example_models, "mlp", "1")
    np.testing.assert_allclose(infer_logits(rt, x), expected, rtol=1e-4, atol=1e-5)
    cached = rt.cache_dir / "oci" / digest.removeprefix("sha256:") / "model.pt"
    assert cached.exists(), sorted(p.name for p in rt.cache_dir.rglob("*"))
    assert sha256_file(cached) == sha256_file(example_models / "mlp/1/model.pt")


def test_corrupt_layer_names_both_digests_and_the_old_version_keeps_serving(
    oci_runtime, example_models, tmp_path, monkeypatch
):
    rt, addr, storage, _, _ = oci_runtime
    digest2, manifest2 = push(addr, "v2", example_models / "mlp/2", tmp_path / "v2", monkeypatch)
    expected_layer = layer_digest(manifest2, "model.pt")
    data = blob(storage, expected_layer)
    corrupt = bytearray(data.read_bytes())
    corrupt[len(corrupt) // 2] ^= 0xFF  # same size, different bytes: the registry serves them as is
    data.write_bytes(bytes(corrupt))
    actual_layer = "sha256:" + hashlib.sha256(corrupt).hexdigest()

    rt.write_config([oci_model(addr, digest2)])
    line = wait_for_log(rt, expected_layer, actual_layer)
    assert "mismatch" in line.lower(), line

    x, expected1 = sample(example_models, "mlp", "1")
    np.testing.assert_allclose(infer_logits(rt, x), expected1, rtol=1e-4, atol=1e-5)
    cached = [p for p in rt.cache_dir.rglob("*") if p.is_file()]
    assert all(sha256_file(p) != actual_layer for p in cached), cached


def test_tampered_manifest_names_both_digests_and_the_old_version_keeps_serving(
    oci_runtime, example_models, tmp_path, monkeypatch
):
    rt, addr, storage, _, _ = oci_runtime
    digest2, _ = push(addr, "v2", example_models / "mlp/2", tmp_path / "v2", monkeypatch)
    data = blob(storage, digest2)
    tampered = data.read_bytes().replace(b'"signature.json"', b'"signature.jsoN"')
    assert tampered != data.read_bytes()
    data.write_bytes(tampered)
    actual = "sha256:" + hashlib.sha256(tampered).hexdigest()

    rt.write_config([oci_model(addr, digest2)])
    wait_for_log(rt, digest2, actual)

    x, expected1 = sample(example_models, "mlp", "1")
    np.testing.assert_allclose(infer_logits(rt, x), expected1, rtol=1e-4, atol=1e-5)
