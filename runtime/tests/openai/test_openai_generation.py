"""Completions and chat through the `openai` client: JSON and streamed answers, usage,
stop sequences, and the model list."""

from __future__ import annotations

import openai
import pytest
from openai_probes import SMOL, TINY


def stream_text(stream) -> tuple[str, list]:
    """The text of a completions or chat stream, and its chunks."""
    chunks = list(stream)
    parts = []
    for chunk in chunks:
        for choice in chunk.choices:
            parts.append(choice.text if hasattr(choice, "text") else (choice.delta.content or ""))
    return "".join(parts), chunks


def test_models_lists_generate_and_embed_models_by_name_and_version(client):
    ids = {m.id for m in client.models.list()}
    assert {TINY, f"{TINY}:1", SMOL, f"{SMOL}:1", "minilm", "minilm:1"} <= ids
    card = client.models.retrieve(SMOL)
    assert card.owned_by == "modelplane"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_a_completion_reports_text_finish_reason_and_usage(client):
    out = client.completions.create(model=TINY, prompt="Once upon a time", max_tokens=12, temperature=0)
    choice = out.choices[0]
    assert out.object == "text_completion"
    assert out.model == f"{TINY}:1"
    assert choice.finish_reason in ("stop", "length")
    assert out.usage.prompt_tokens > 0
    assert 1 <= out.usage.completion_tokens <= 12
    assert out.usage.total_tokens == out.usage.prompt_tokens + out.usage.completion_tokens
    if choice.finish_reason == "length":
        assert out.usage.completion_tokens == 12


def test_token_id_prompts_and_name_colon_version_are_accepted(client):
    by_text = client.completions.create(model=TINY, prompt="Hello there", max_tokens=8, temperature=0)
    ids = [1, 19556, 665]
    by_ids = client.completions.create(model=f"{TINY}:1", prompt=ids, max_tokens=8, temperature=0)
    assert by_ids.usage.prompt_tokens == len(ids)
    assert by_text.usage.completion_tokens >= 1 and by_ids.usage.completion_tokens >= 1


@pytest.mark.parametrize("model", [TINY, SMOL])
def test_streamed_completion_equals_the_json_answer_under_greedy(client, model):
    kwargs = dict(model=model, prompt="The three primary colors are", max_tokens=24, temperature=0, seed=3)
    whole = client.completions.create(**kwargs)
    text, chunks = stream_text(
        client.completions.create(stream=True, stream_options={"include_usage": True}, **kwargs)
    )
    assert text == whole.choices[0].text
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == whole.choices[0].finish_reason
    assert all(f is None for f in finishes[:-1])
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == whole.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == whole.usage.prompt_tokens


def test_seeded_sampling_repeats_itself(client):
    kwargs = dict(model=TINY, prompt="Sampling with a seed", max_tokens=16, temperature=0.9, top_p=0.95, seed=11)
    first = client.completions.create(**kwargs).choices[0].text
    again = client.completions.create(**kwargs).choices[0].text
    assert first == again


def test_smollm2_knows_the_capital_of_france(client):
    out = client.chat.completions.create(
        model=SMOL,
        messages=[{"role": "user", "content": "What is the capital of France?"}],
        max_tokens=32,
        temperature=0,
    )
    assert out.object == "chat.completion"
    assert out.choices[0].message.role == "assistant"
    assert out.choices[0].message.content == "The capital of France is Paris."
    assert out.choices[0].finish_reason == "stop"
    assert out.usage.completion_tokens >= 7


def test_chat_stream_opens_with_the_role_and_matches_the_json_answer(client):
    messages = [
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
    ]
    kwargs = dict(model=SMOL, messages=messages, max_completion_tokens=32, temperature=0)
    whole = client.chat.completions.create(**kwargs)
    text, chunks = stream_text(client.chat.completions.create(stream=True, **kwargs))
    assert chunks[0].object == "chat.completion.chunk"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert text == whole.choices[0].message.content
    assert "Paris" in text
    assert chunks[-1].choices[0].finish_reason == whole.choices[0].finish_reason
    assert all(c.usage is None for c in chunks)


def test_a_stop_sequence_ends_the_answer_before_it(client):
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    out = client.chat.completions.create(model=SMOL, messages=messages, max_tokens=32, temperature=0, stop=["Paris"])
    assert out.choices[0].finish_reason == "stop"
    assert out.choices[0].message.content == "The capital of France is "
