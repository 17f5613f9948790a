#!/usr/bin/env python3
"""bfloat16 against float32 on the benchmark prompts: what the precision costs, what it buys.

    python bench/bf16_compare.py [--reference examples/models/smollm2]
        [--candidate examples/models/smollm2-bf16] [--prompts bench/prompts.jsonl]
        [--max-tokens 128] [--threads 1] [--json out.json]

Each prompt goes through the chat template (as /v1/chat/completions sends it) and is
decoded greedily, one request at a time, by both exports (examples/make_chat_model.py
--only smollm2-bf16 makes the candidate). Reported:

- accuracy: how many answers are token for token the same, where the others first
  differ, and the largest and mean difference of the first step's logits against the
  float32 logits' range;
- speed: tokens/s of the single-request loop and the time of one 16-row decode step
  (300 cached positions a row), on the same core and thread count.
"""

import argparse
import json
import pathlib
import statistics
import sys
import time
from typing import List

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "llm"))
sys.path.insert(0, str(ROOT / "bench"))

from chat import ChatModel  # noqa: E402
from llm_baseline import DEFAULT_PROMPTS, load_prompts  # noqa: E402
from step_loop import _step, generate_alone  # noqa: E402

DECODE_ROWS = 16
DECODE_CONTEXT = 300


def first_logits(model: ChatModel, prompt: List[int]) -> torch.Tensor:
    cache = model.module.new_cache(1, len(prompt) + 1)
    return _step(model.module, [prompt], [0], [0], cache)[0]


def decode_step_ms(model: ChatModel, vocab: int, repeats: int = 5) -> float:
    """The median time of one decode step over DECODE_ROWS rows of DECODE_CONTEXT cached tokens."""
    module = model.module
    cache = module.new_cache(DECODE_ROWS, DECODE_CONTEXT + repeats + 2)
    g = torch.Generator().manual_seed(0)
    for slot in range(DECODE_ROWS):
        prompt = torch.randint(0, vocab, (DECODE_CONTEXT,), generator=g).tolist()
        _step(module, [prompt], [slot], [0], cache)
    times = []
    for i in range(repeats + 1):
        rows = torch.randint(0, vocab, (DECODE_ROWS, 1), generator=g).tolist()
        start = time.perf_counter()
        _step(module, rows, list(range(DECODE_ROWS)), [DECODE_CONTEXT + i] * DECODE_ROWS, cache)
        if i > 0:  # the first one warms up
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def compare(reference: ChatModel, candidate: ChatModel, texts: List[str], max_tokens: int) -> dict:
    eos = reference.config["eos_token_ids"]
    same = 0
    divergences = []
    logit_max, logit_mean = [], []
    seconds = {"reference": 0.0, "candidate": 0.0}
    tokens = {"reference": 0, "candidate": 0}
    for text in texts:
        prompt = reference.prompt_ids([{"role": "user", "content": text}])
        answers = {}
        for side, model in (("reference", reference), ("candidate", candidate)):
            start = time.perf_counter()
            answers[side] = generate_alone(model.module, prompt, max_tokens, eos)
            seconds[side] += time.perf_counter() - start
            tokens[side] += len(answers[side])
        want, got = answers["reference"], answers["candidate"]
        if want == got:
            same += 1
        else:
            common = next((i for i, (a, b) in enumerate(zip(want, got)) if a != b), min(len(want), len(got)))
            divergences.append(common)
        ref_logits, cand_logits = first_logits(reference, prompt), first_logits(candidate, prompt)
        spread = float(ref_logits.max() - ref_logits.min())
        diff = (ref_logits - cand_logits).abs()
        logit_max.append(float(diff.max()) / spread)
        logit_mean.append(float(diff.mean()) / spread)
    vocab = reference.config["vocab_size"]
    return {
        "prompts": len(texts),
        "max_tokens": max_tokens,
        "identical_answers": same,
        "first_difference_at": sorted(divergences),
        "first_step_logits": {
            "max_abs_diff_over_range": max(logit_max),
            "mean_abs_diff_over_range": statistics.mean(logit_mean),
        },
        "loop_tokens_per_s": {side: tokens[side] / seconds[side] for side in seconds},
        "decode_step_ms": {
            "rows": DECODE_ROWS,
            "cached_positions": DECODE_CONTEXT,
            "reference": decode_step_ms(reference, vocab),
            "candidate": decode_step_ms(candidate, vocab),
        },
        "dtypes": {"reference": reference.config["dtype"], "candidate": candidate.config["dtype"]},
    }


def summary(report: dict) -> str:
    d = report["decode_step_ms"]
    loop = report["loop_tokens_per_s"]
    logits = report["first_step_logits"]
    return "\n".join([
        f"{report['dtypes']['candidate']} against {report['dtypes']['reference']}, {report['prompts']} prompts, "
        f"greedy, max_tokens {report['max_tokens']}:",
        f"  identical answers: {report['identical_answers']} of {report['prompts']}; the others first differ at "
        f"output token {report['first_difference_at'] or '-'}",
        f"  first-step logits: max |diff| {logits['max_abs_diff_over_range'] * 100:.2f} % of the float32 range, "
        f"mean {logits['mean_abs_diff_over_range'] * 100:.3f} %",
        f"  single-request loop: {loop['candidate']:.1f} vs {loop['reference']:.1f} tokens/s "
        f"= {loop['candidate'] / loop['reference']:.2f}x",
        f"  {d['rows']}-row decode step ({d['cached_positions']} cached positions a row): {d['candidate']:.1f} vs "
        f"{d['reference']:.1f} ms = {d['reference'] / d['candidate']:.2f}x the speed",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    models = ROOT / "examples" / "models"
    parser.add_argument("--reference", type=pathlib.Path, default=models / "smollm2")
    parser.add_argument("--candidate", type=pathlib.Path, default=models / "smollm2-bf16")
    parser.add_argument("--prompts", type=pathlib.Path, default=DEFAULT_PROMPTS)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=pathlib.Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch._C._set_graph_executor_optimize(False)
    for folder in (args.reference, args.candidate):
        if not (folder / "config.json").is_file():
            print(f"bf16_compare: {folder} is not an export (python examples/make_chat_model.py "
                  f"--only {folder.name})", file=sys.stderr)
            return 2
    report = compare(ChatModel(args.reference), ChatModel(args.candidate), load_prompts(args.prompts),
                     args.max_tokens)
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
