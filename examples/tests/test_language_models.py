"""The tiny causal LM against Hugging Face Llama, and the traced MiniLM against its meaning."""

from __future__ import annotations

import json
import os

import jinja2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from made_models import entries, pinned_devices, read_tensor
from tokenizers import Tokenizer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_lm(small_models):
    entry = entries(small_models)[("tiny-lm", "1")]
    folder = small_models / entry["path"]
    module = torch.jit.load(str(folder / entry["model"])).eval()
    return entry, folder, module


@pytest.fixture(scope="module")
def minilm(minilm_models):
    entry = entries(minilm_models)[("minilm", "1")]
    folder = minilm_models / entry["path"]
    module = torch.jit.load(str(folder / entry["model"])).eval()
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    return entry, module, tokenizer


def embed(module, tokenizer, texts: list[str]) -> torch.Tensor:
    encodings = tokenizer.encode_batch(texts)
    ids = torch.tensor([e.ids for e in encodings])
    mask = torch.tensor([e.attention_mask for e in encodings])
    with torch.no_grad():
        return module(ids, mask)


def test_tiny_lm_config_file_is_the_manifest_config(tiny_lm):
    entry, folder, _ = tiny_lm
    assert json.loads((folder / "config.json").read_text()) == entry["config"]
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    assert tokenizer.get_vocab_size() == entry["config"]["vocab_size"]
    assert tokenizer.token_to_id("<|im_start|>") == entry["config"]["bos_token_id"]
    assert tokenizer.token_to_id("<|im_end|>") == entry["config"]["eos_token_id"]


def test_tiny_lm_tokenizer_round_trips_any_text(tiny_lm):
    _, folder, _ = tiny_lm
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for text in ["The capital of France is Paris.", "naïve café ☕ — 東京", "  spaces\tand\nnewlines "]:
        assert tokenizer.decode(tokenizer.encode(text).ids) == text


def test_tiny_lm_sample_is_the_rendered_chat_template(tiny_lm):
    entry, folder, _ = tiny_lm
    sample = entry["sample"]
    prompt = jinja2.Template(entry["config"]["chat_template"]).render(
        messages=sample["messages"], add_generation_prompt=True
    )
    assert prompt == sample["prompt"]
    assert prompt.endswith("<|im_start|>assistant\n")
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    ids = read_tensor(folder, sample["inputs"][0])
    assert ids.tolist() == [tokenizer.encode(prompt).ids]


def test_tiny_lm_equals_transformers_llama_with_the_same_weights(tiny_lm):
    from transformers import LlamaConfig, LlamaForCausalLM

    entry, folder, module = tiny_lm
    config = {k: v for k, v in entry["config"].items() if k != "chat_template"}
    reference = LlamaForCausalLM(LlamaConfig(**config, attn_implementation="eager")).eval()
    # TorchScript keeps the rotary table (a non-persistent buffer in both) in its state_dict.
    weights = {k: v for k, v in module.state_dict().items() if k != "model.rotary_emb.inv_freq"}
    reference.load_state_dict(weights, strict=True)
    ids = torch.from_numpy(read_tensor(folder, entry["sample"]["inputs"][0]))
    with torch.no_grad():
        torch.testing.assert_close(module(ids), reference(ids).logits, atol=1e-4, rtol=1e-4)
        # An explicit mask: without one, generate() masks every <|im_end|> (the pad id, as in SmolLM2).
        generated = reference.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=len(entry["sample"]["greedy_ids"]),
            do_sample=False,
            eos_token_id=None,
        )
    assert generated[0, ids.shape[1] :].tolist() == entry["sample"]["greedy_ids"]


def test_tiny_lm_greedy_continuation_depends_on_the_context(tiny_lm):
    entry, _, _ = tiny_lm
    greedy = entry["sample"]["greedy_ids"]
    assert len(set(greedy)) > len(greedy) // 2


def test_minilm_similar_sentences_are_closer_than_unrelated_ones(minilm):
    _, module, tokenizer = minilm
    a, b, unrelated = embed(
        module,
        tokenizer,
        ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell sharply on Monday."],
    )
    similar, different = float(a @ b), float(a @ unrelated)
    assert similar > 0.5 > different, (similar, different)


def test_minilm_trace_is_not_pinned_to_the_cpu(minilm_models):
    # Traced on the CPU, yet the runtime loads it on CUDA too: no device may be a constant.
    entry = entries(minilm_models)[("minilm", "1")]
    assert pinned_devices(minilm_models / entry["path"] / entry["model"]) == set()


def test_minilm_embeddings_are_unit_length_for_any_batch_and_length(minilm):
    entry, module, tokenizer = minilm
    for texts in (["x"], ["one", "two words", "a somewhat longer third sentence here"]):
        out = embed(module, tokenizer, texts)
        assert out.dtype == torch.float32 and list(out.shape) == [len(texts), entry["outputs"][0]["shape"][1]]
        torch.testing.assert_close(out.norm(dim=1), torch.ones(len(texts)))


def test_minilm_padding_does_not_change_an_embedding(minilm):
    _, module, tokenizer = minilm
    text = "Padding must be masked out of the mean."
    alone = embed(module, tokenizer, [text])[0]
    padded = embed(module, tokenizer, [text, text + " " + "and much more text " * 10])[0]
    assert float((alone - padded).abs().max()) < 1e-5


def test_minilm_sample_matches_sentence_transformers_reference(minilm, minilm_models):
    entry, module, tokenizer = minilm
    folder = minilm_models / entry["path"]
    inputs = [torch.from_numpy(read_tensor(folder, d)) for d in entry["sample"]["inputs"]]
    expected = torch.from_numpy(read_tensor(folder, entry["sample"]["outputs"][0]))
    assert [e.ids for e in tokenizer.encode_batch(entry["sample"]["texts"])] == inputs[0].tolist()
    with torch.no_grad():
        got = module(*inputs)
    assert float((got - expected).abs().max()) < 1e-4
    assert float(F.cosine_similarity(got[0], got[1], dim=0)) > float(F.cosine_similarity(got[0], got[2], dim=0))
    assert np.isclose(entry["config"]["embedding_dim"], got.shape[1])
