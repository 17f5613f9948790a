"""/v1/embeddings on the real MiniLM model: the PyTorch sample reproduced, batching
that does not change a vector, base64, usage, and clear errors."""

from __future__ import annotations

import base64
import json

import numpy as np
import openai
import pytest
from harness import MODELS
from openai_probes import MINILM, TINY

TOLERANCE = 1e-4


def manifest_sample() -> tuple[list[str], np.ndarray]:
    """The sample texts of examples/models/minilm/1 and their sentence-transformers vectors."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    entry = next(m for m in manifest["models"] if m["name"] == MINILM)
    output = entry["sample"]["outputs"][0]
    vectors = np.fromfile(MODELS / entry["path"] / output["file"], dtype=np.float32).reshape(output["shape"])
    return entry["sample"]["texts"], vectors


def test_a_batch_reproduces_the_sentence_transformers_sample(client):
    texts, expected = manifest_sample()
    out = client.embeddings.create(model=MINILM, input=texts)
    got = np.array([d.embedding for d in out.data], dtype=np.float32)
    assert [d.index for d in out.data] == list(range(len(texts)))
    assert got.shape == expected.shape == (len(texts), 384)
    assert np.abs(got - expected).max() < TOLERANCE
    assert out.model == f"{MINILM}:1"
    assert out.usage.prompt_tokens == out.usage.total_tokens
    assert out.usage.prompt_tokens > 4 * len(texts)


def test_one_text_alone_equals_its_row_in_a_padded_batch(client):
    texts, expected = manifest_sample()
    alone = client.embeddings.create(model=MINILM, input=texts[-1]).data[0].embedding
    assert np.abs(np.array(alone, dtype=np.float32) - expected[-1]).max() < TOLERANCE


def test_base64_carries_the_same_float32_values(client):
    texts, expected = manifest_sample()
    # The client asks for base64 by default and decodes it; ask explicitly to see the wire value.
    raw = client.embeddings.with_raw_response.create(model=MINILM, input=texts[:2], encoding_format="base64")
    body = json.loads(raw.http_response.text)
    vectors = [np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in body["data"]]
    assert np.abs(np.stack(vectors) - expected[:2]).max() < TOLERANCE


def test_long_texts_are_truncated_like_sentence_transformers(client):
    # MiniLM's tokenizer.json truncates at 256 tokens; past that, more text changes nothing.
    long_text = " ".join(f"sentence {i} talks about serving models." for i in range(120))
    longer = long_text + " An ending the model never sees."
    out = client.embeddings.create(model=MINILM, input=[long_text, longer])
    a, b = (np.array(d.embedding, dtype=np.float32) for d in out.data)
    assert np.abs(a - b).max() < TOLERANCE
    assert out.usage.prompt_tokens == 2 * 256


@pytest.mark.parametrize(
    "kwargs, error",
    [
        (dict(model=MINILM, input=""), openai.BadRequestError),
        (dict(model=MINILM, input=[]), openai.BadRequestError),
        (dict(model=MINILM, input=["a", ""]), openai.BadRequestError),
        (dict(model=MINILM, input="a", encoding_format="int8"), openai.BadRequestError),
        (dict(model=MINILM, input="a", dimensions=128), openai.UnprocessableEntityError),
        (dict(model=TINY, input="a"), openai.BadRequestError),
        (dict(model="no-such-model", input="a"), openai.NotFoundError),
        (dict(model=MINILM, input=["word " * 200] * 40), openai.APIStatusError),
    ],
    ids=["empty", "no-inputs", "one-empty", "format", "dimensions", "not-embed", "unknown", "too-many-tokens"],
)
def test_bad_embedding_requests_are_clear_4xx(client, kwargs, error):
    with pytest.raises(error) as caught:
        client.embeddings.create(**kwargs)
    assert 400 <= caught.value.status_code < 500
    assert caught.value.body["message"]
