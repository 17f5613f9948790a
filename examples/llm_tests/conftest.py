"""Shared fixtures: the exported models (made when stale) and the transformers reference."""

import json
import os
import pathlib
import sys

import pytest
import torch

EXAMPLES = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(EXAMPLES / "llm"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import exporter  # noqa: E402

MODELS = EXAMPLES / "models"
# As the runtime does (docs/generate-contract.md §4): no re-profiling on new shapes.
torch._C._set_graph_executor_optimize(False)


class Exported:
    """An exported model folder, loaded: the TorchScript module and its config.json."""

    def __init__(self, folder: pathlib.Path):
        self.folder = folder
        self.config = json.loads((folder / "config.json").read_text())
        self.module = torch.jit.load(str(folder / "model.pt"))
        self.eos = self.config["eos_token_ids"]


@pytest.fixture(scope="session")
def smollm2_hf():
    """SmolLM2-135M-Instruct in transformers: (model, tokenizer); loaded once (~20 s)."""
    return exporter.load_smollm2()


@pytest.fixture(scope="session")
def smollm2(request) -> Exported:
    """The exported SmolLM2 (exported now, from the shared transformers model, when stale)."""
    exporter.export_smollm2(MODELS / "smollm2", load=lambda: request.getfixturevalue("smollm2_hf"))
    return Exported(MODELS / "smollm2")


@pytest.fixture(scope="session")
def tiny() -> Exported:
    """The exported tiny random Llama."""
    exporter.export_tiny(MODELS / "tiny-llama")
    return Exported(MODELS / "tiny-llama")


@pytest.fixture(scope="session")
def tiny_hf(tiny):
    """The transformers twin of the tiny model (same seed, same weights)."""
    c = tiny.config
    return exporter.tiny_llama(c["vocab_size"], c["bos_token_id"], c["eos_token_ids"][0], c["pad_token_id"])


@pytest.fixture(scope="session")
def hf_greedy():
    """transformers' greedy ``generate`` as a function: (model, prompt ids, max new) -> new ids."""

    def generate(model, prompt, max_new_tokens):
        ids = torch.tensor([prompt])
        out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False)
        return out[0, len(prompt) :].tolist()

    return generate
