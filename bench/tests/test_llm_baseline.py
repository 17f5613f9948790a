"""bench/llm_baseline.py: prompt file, percentiles, and the timed loops on the tiny model."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import llm_baseline  # noqa: E402

TINY = ROOT / "examples" / "models" / "tiny-llama"
needs_tiny = pytest.mark.skipif(not (TINY / "model.pt").exists(), reason="run examples/make_chat_model.py first")


def test_prompt_file_rules_match_the_load_generator(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('"two\\nlines"\n\n  plain prompt  \n')
    assert llm_baseline.load_prompts(path) == ["two\nlines", "plain prompt"]
    path.write_text("\n")
    with pytest.raises(ValueError):
        llm_baseline.load_prompts(path)


def test_builtin_prompt_file_is_the_one_the_load_generator_compiles_in():
    prompts = llm_baseline.load_prompts(llm_baseline.DEFAULT_PROMPTS)
    assert len(prompts) >= 8
    assert max(map(len, prompts)) > 20 * min(map(len, prompts))


def test_percentiles_are_nearest_rank_in_milliseconds():
    p = llm_baseline.percentiles_ms([i / 1000 for i in range(1, 101)])  # 1..100 ms
    assert p["count"] == 100
    assert p["p50"] == pytest.approx(50.0)
    assert p["p90"] == pytest.approx(90.0)
    assert p["p99"] == pytest.approx(99.0)
    assert p["max"] == pytest.approx(100.0)
    assert p["mean"] == pytest.approx(50.5)
    assert llm_baseline.percentiles_ms([])["p50"] == 0.0


@needs_tiny
def test_timed_loop_gives_the_reference_tokens_and_times_every_step():
    import torch
    from step_loop import generate_alone

    torch._C._set_graph_executor_optimize(False)
    module = torch.jit.load(str(TINY / "model.pt"))
    prompt = [1, 5, 9, 200, 31]
    timed = llm_baseline.timed_generate(module, prompt, 6, [])
    assert timed.tokens == generate_alone(module, prompt, 6, [])
    assert len(timed.decode_steps_s) == 5
    assert timed.first_step_s > 0
    assert timed.total_s == pytest.approx(timed.first_step_s + sum(timed.decode_steps_s))


@needs_tiny
def test_batched_loop_makes_the_same_tokens_as_the_single_loop():
    import torch

    module = torch.jit.load(str(TINY / "model.pt"))
    prompts = [[1, 2, 3], list(range(10, 60)), [7] * 20]
    single = llm_baseline.single_loop(module, prompts, 5, [])
    batched = llm_baseline.batched_loop(module, prompts, 5, [], batch=2)
    assert batched["outputs"] == single["outputs"]
    assert single["output_tokens"] == batched["output_tokens"] == 15
    assert single["first_step_ms"]["count"] == 3
    assert single["tokens_per_s"] > 0 and batched["tokens_per_s"] > 0


@needs_tiny
def test_cli_writes_the_report_without_transformers_for_a_seeded_model(tmp_path, capsys):
    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"Hello there"\n"Tell me a story"\n')
    out = tmp_path / "baseline.json"
    args = ["--model", str(TINY), "--prompts", str(prompts), "--max-tokens", "3", "--json", str(out)]
    assert llm_baseline.main(args) == 0
    report = json.loads(out.read_text())
    assert report["prompts"] == 2 and report["torch_threads"] == 1
    assert "transformers" not in report, "the tiny model has no GGUF weights to compare with"
    assert report["loop"]["output_tokens"] <= 6
    assert "tokens/s" in capsys.readouterr().out


@needs_tiny
def test_rendered_chat_prompts_encode_to_the_chat_ids(tmp_path):
    from chat import ChatModel

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('"What is the capital of France?"\n"Say hi"\n')
    out = tmp_path / "chat.jsonl"
    assert llm_baseline.main(["--model", str(TINY), "--prompts", str(prompts), "--render-chat-prompts", str(out)]) == 0
    rendered = llm_baseline.load_prompts(out)
    chat = ChatModel(TINY)
    assert len(rendered) == 2 and rendered[0].endswith("<|im_start|>assistant\n")
    for text, prompt in zip(rendered, ["What is the capital of France?", "Say hi"]):
        ids = chat.tokenizer.encode(text, add_special_tokens=False).ids
        assert ids == chat.prompt_ids([{"role": "user", "content": prompt}])
