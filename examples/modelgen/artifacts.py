"""What a model builder hands back, and helpers to write its files."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# Open Inference Protocol datatype names, as the runtime reports them in model metadata.
DATATYPES = {torch.float32: "FP32", torch.int64: "INT64"}


@dataclass(frozen=True)
class Tensor:
    """One named input or output of a model; -1 marks a dynamic dimension."""

    name: str
    dtype: torch.dtype
    shape: tuple[int, ...]

    def metadata(self) -> dict:
        return {"name": self.name, "datatype": DATATYPES[self.dtype], "shape": list(self.shape)}

    def accepts(self, value: torch.Tensor) -> bool:
        """True when `value` has this tensor's dtype and a shape that fits its dims."""
        return (
            value.dtype == self.dtype
            and value.dim() == len(self.shape)
            and all(want in (-1, got) for want, got in zip(self.shape, value.shape))
        )


@dataclass
class Artifacts:
    """A built model version: its signature, sample files and task-specific settings."""

    inputs: list[Tensor]
    outputs: list[Tensor]
    sample: dict = field(default_factory=dict)
    config: dict = field(default_factory=dict)


def save_sample(folder: Path, spec: list[Tensor], values: list[torch.Tensor]) -> list[dict]:
    """Writes each value as raw little-endian bytes (`sample.<name>.bin`); returns their metadata.

    Raw bytes are what the Open Inference Protocol's binary extension carries, so tests can send a
    file as it is; the manifest gives its shape and datatype.
    """
    described = []
    for tensor, value in zip(spec, values, strict=True):
        if not tensor.accepts(value):
            got = f"{value.dtype} {list(value.shape)}"
            raise ValueError(f"sample {tensor.name}: {got} does not fit {tensor.metadata()}")
        file = f"sample.{tensor.name}.bin"
        array = value.detach().cpu().contiguous().numpy()
        (folder / file).write_bytes(array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes())
        described.append({**tensor.metadata(), "shape": list(value.shape), "file": file})
    return described


def save_torchscript(module: torch.jit.ScriptModule, folder: Path) -> Path:
    """Saves a TorchScript module as `model.pt` and returns its path."""
    path = folder / "model.pt"
    torch.jit.save(module, str(path))
    return path


def check_matches(name: str, got: torch.Tensor, want: torch.Tensor, tolerance: float) -> float:
    """Raises when two outputs differ by more than `tolerance`; returns the max abs difference."""
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {list(got.shape)} != {list(want.shape)}")
    diff = (got - want).abs().max().item()
    if not np.isfinite(diff) or diff > tolerance:
        raise AssertionError(f"{name}: max abs diff {diff:.3g} exceeds {tolerance:.1g}")
    return diff
