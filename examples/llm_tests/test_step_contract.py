"""The generate contract on the tiny random Llama: shapes, cache slots, batching, errors."""

import json
import shutil

import pytest
import torch

import exporter
from step_loop import Request, SlotScheduler, generate_alone


def prompts(vocab, lengths, seed=7):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(3, vocab, (n,), generator=g).tolist() for n in lengths]


def step(module, rows, slots, starts, cache):
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
    lengths = torch.tensor([len(r) for r in rows])
    with torch.no_grad():
        return module.step(ids, torch.tensor(slots), torch.tensor(starts), lengths, cache)


def test_config_method_agrees_with_config_json(tiny):
    facts = tiny.module.config()
    for key, value in facts.items():
        assert tiny.config[key] == value, key


def test_new_cache_has_documented_layout(tiny):
    c = tiny.config
    cache = tiny.module.new_cache(3, 50)
    assert list(cache.shape) == [c["num_layers"], 2, 3, c["num_kv_heads"], 50, c["head_dim"]]
    assert cache.dtype == torch.float32
    assert not cache.any()
    assert cache.numel() * cache.element_size() == c["kv_cache_bytes_per_token"] * 3 * 50


def test_new_cache_refuses_context_beyond_model(tiny):
    with pytest.raises(torch.jit.Error, match="max_context"):
        tiny.module.new_cache(1, tiny.config["max_context"] + 1)


def test_step_returns_last_token_logits_per_row(tiny):
    cache = tiny.module.new_cache(2, 32)
    a, b = prompts(tiny.config["vocab_size"], [5, 9])
    logits = step(tiny.module, [a, b], [0, 1], [0, 0], cache)
    assert list(logits.shape) == [2, tiny.config["vocab_size"]]
    assert logits.dtype == torch.float32
    alone = step(tiny.module, [a], [0], [0], tiny.module.new_cache(1, 32))
    torch.testing.assert_close(logits[0], alone[0], rtol=1e-4, atol=1e-4)


def test_step_writes_only_the_rows_slots_and_positions(tiny):
    cache = tiny.module.new_cache(3, 16)
    (p,) = prompts(tiny.config["vocab_size"], [4])
    step(tiny.module, [p], [1], [2], cache)
    written = cache.abs().sum(dim=(0, 1, 3, 5))  # [slot, position]
    assert written[1, 2:6].all()
    assert not written[1, :2].any() and not written[1, 6:].any()
    assert not written[0].any() and not written[2].any()


def test_chunked_prefill_equals_one_shot_prefill(tiny):
    (p,) = prompts(tiny.config["vocab_size"], [23])
    one = step(tiny.module, [p], [0], [0], tiny.module.new_cache(1, 32))
    cache = tiny.module.new_cache(1, 32)
    for start in range(0, len(p), 8):
        chunked = step(tiny.module, [p[start : start + 8]], [0], [start], cache)
    torch.testing.assert_close(chunked, one, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "lengths, slots, starts, message",
    [
        ([0], [0], [0], "lengths"),
        ([3], [0], [-1], "starts"),
        ([3], [0], [30], "max_context"),
        ([3], [0, 1], [0], "one entry per row"),
    ],
)
def test_step_rejects_inconsistent_rows(tiny, lengths, slots, starts, message):
    cache = tiny.module.new_cache(2, 32)
    ids = torch.ones(1, 3, dtype=torch.int64)
    with pytest.raises(torch.jit.Error, match=message):
        tiny.module.step(ids, torch.tensor(slots), torch.tensor(starts), torch.tensor(lengths), cache)


@pytest.mark.parametrize("slots", [[0, 0], [0, 2], [-1, 1]])
def test_step_rejects_shared_or_missing_slots(tiny, slots):
    cache = tiny.module.new_cache(2, 32)
    ids = torch.ones(2, 3, dtype=torch.int64)
    with pytest.raises(torch.jit.Error, match="slots must be distinct and within the cache"):
        tiny.module.step(ids, torch.tensor(slots), torch.zeros(2, dtype=torch.int64), torch.tensor([3, 3]), cache)


def test_step_rejects_a_cache_of_another_shape(tiny):
    cache = tiny.module.new_cache(2, 32).transpose(3, 4)
    ids = torch.ones(1, 3, dtype=torch.int64)
    with pytest.raises(torch.jit.Error, match="kv_cache is not"):
        tiny.module.step(ids, torch.tensor([0]), torch.tensor([0]), torch.tensor([3]), cache)


def test_greedy_matches_transformers_generate(tiny, tiny_hf, hf_greedy):
    for p in prompts(tiny.config["vocab_size"], [1, 6, 31]):
        assert generate_alone(tiny.module, p, 24, tiny.eos) == hf_greedy(tiny_hf, p, 24)


@pytest.mark.parametrize("separate_prefill", [False, True])
def test_continuous_batching_matches_running_alone(tiny, separate_prefill):
    vocab = tiny.config["vocab_size"]
    lengths = [3, 40, 7, 19, 1, 12]
    requests = [
        Request(p, max_new_tokens=n, join_step=j)
        for p, n, j in zip(prompts(vocab, lengths), [20, 9, 30, 14, 25, 6], [0, 0, 2, 5, 5, 11])
    ]
    alone = [generate_alone(tiny.module, r.prompt, r.max_new_tokens, tiny.eos) for r in requests]
    # Three slots for six requests: later requests wait and then reuse a freed slot;
    # chunks of 8 make the long prompt prefill beside the others' decode rows.
    scheduler = SlotScheduler(
        tiny.module, slots=3, max_context=64, eos_ids=tiny.eos, prefill_chunk=8, separate_prefill=separate_prefill
    )
    assert scheduler.run(requests) == alone
    assert scheduler.max_batch == 3


def test_export_is_current_only_with_matching_fingerprint(tiny, tmp_path):
    folder = tmp_path / "tiny"
    shutil.copytree(tiny.folder, folder)
    current = tiny.config["fingerprint"]
    assert exporter.is_current(folder, current)
    config = json.loads((folder / "config.json").read_text())
    config["fingerprint"] = "stale"
    (folder / "config.json").write_text(json.dumps(config))
    assert not exporter.is_current(folder, current)
    (folder / "model.pt").unlink()
    assert not exporter.is_current(folder, "stale")
