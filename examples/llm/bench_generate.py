#!/usr/bin/env python3
"""Greedy decoding speed: the exported TorchScript step module vs transformers' generate.

    python examples/llm/bench_generate.py [--model examples/models/smollm2] [--new-tokens 64]
        [--repeats 3] [--batch 8] [--threads N] [--json report.json]

Measures, for one chat prompt: the first step (prefill) time and output tokens/s of
one request through the contract loop, the same for transformers' generate on the
same weights, and output tokens/s of a batch of requests through the slotted
scheduler. Eos is ignored so that every run decodes exactly --new-tokens tokens.
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import torch

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import exporter  # noqa: E402
from step_loop import Request, SlotScheduler, _step, generate_alone  # noqa: E402

QUESTION = "Write a short story about a robot who learns to paint."


def timed(fn):
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def median_of(repeats: int, fn) -> float:
    return statistics.median(timed(fn)[1] for _ in range(repeats))


def bench_module(module, prompt, new_tokens: int, repeats: int) -> dict:
    def prefill():
        _step(module, [prompt], [0], [0], module.new_cache(1, len(prompt) + 1))

    generate_alone(module, prompt, 4, [])  # warm up (allocator, thread pool)
    first = median_of(repeats, prefill)
    total = median_of(repeats, lambda: generate_alone(module, prompt, new_tokens, []))
    return {"first_step_s": first, "total_s": total, "tokens_per_s": new_tokens / total}


def bench_transformers(model, prompt, new_tokens: int, repeats: int) -> dict:
    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)

    def generate(n):
        return model.generate(ids, attention_mask=mask, max_new_tokens=n, min_new_tokens=n, do_sample=False)

    with torch.no_grad():
        generate(4)
        first = median_of(repeats, lambda: model(ids, attention_mask=mask, use_cache=True))
        total = median_of(repeats, lambda: generate(new_tokens))
    return {"first_step_s": first, "total_s": total, "tokens_per_s": new_tokens / total}


def bench_batch(module, prompt, new_tokens: int, batch: int) -> dict:
    requests = [Request(list(prompt), new_tokens) for _ in range(batch)]
    scheduler = SlotScheduler(module, slots=batch, max_context=len(prompt) + new_tokens, eos_ids=[])
    _, seconds = timed(lambda: scheduler.run(requests))
    return {"requests": batch, "total_s": seconds, "tokens_per_s": batch * new_tokens / seconds}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=HERE.parent / "models" / "smollm2")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's choice)")
    parser.add_argument("--json", type=pathlib.Path, help="also write the report here")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    # What the runtime does (docs/generate-contract.md §4): no re-profiling on new shapes.
    torch._C._set_graph_executor_optimize(False)

    hf, tokenizer = exporter.load_smollm2()
    prompt = tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)[
        "input_ids"
    ]
    module = torch.jit.load(str(args.model / "model.pt"))
    report = {
        "prompt_tokens": len(prompt),
        "new_tokens": args.new_tokens,
        "torch_threads": torch.get_num_threads(),
        "graph_executor_optimize": torch._C._get_graph_executor_optimize(),
        "load_average": os.getloadavg()[0],
        "step_module": bench_module(module, prompt, args.new_tokens, args.repeats),
        "transformers_generate": bench_transformers(hf, prompt, args.new_tokens, args.repeats),
        "step_module_batched": bench_batch(module, prompt, args.new_tokens, args.batch),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
