#!/usr/bin/env python3
"""Python baselines for the generative-serving benchmark (docs/benchmarks.md).

    python bench/llm_baseline.py [--model examples/models/smollm2] [--prompts bench/prompts.jsonl]
        [--max-tokens 64] [--threads 1] [--batch 12] [--skip-transformers] [--json baseline.json]

Over the prompts the load generator sends (bench/prompts.jsonl, each as one user
message through the model's chat template, as /v1/chat/completions does), greedy,
stopping at end-of-sequence or --max-tokens like the server:

1. ``loop``: a plain Python loop over the TorchScript file (torch.jit.load, the
   contract's ``step``), one request at a time: output tokens/s and the first
   step (prefill) time of each prompt;
2. ``loop_batched``: the same module driven by examples/llm/step_loop.py's
   SlotScheduler, --batch prompts at once (separate prefill and decode calls);
3. ``transformers``: ``generate`` on the same weights (the GGUF that the
   export came from), one request at a time.

Threads: --threads libtorch intra-op threads for every side (pin the process
with taskset to give it the same cores as the server).

    python bench/llm_baseline.py --render-chat-prompts chat-prompts.jsonl

writes the prompts rendered through the chat template instead (one JSON string a
line), for the protocols that take raw text (gRPC ModelStreamInfer,
/v1/completions): they then send the very tokens /v1/chat/completions sends.
"""

import argparse
import json
import math
import os
import pathlib
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Dict, List, Sequence

import torch

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "llm"))

from chat import ChatModel  # noqa: E402
from step_loop import Request, SlotScheduler, _step  # noqa: E402

DEFAULT_PROMPTS = ROOT / "bench" / "prompts.jsonl"


def load_prompts(path: pathlib.Path) -> List[str]:
    """One prompt a line, a JSON string or plain text, as modelplane-bench reads it."""
    prompts = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line:
            continue
        if line.startswith('"'):
            try:
                line = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: line {number}: {e}") from e
        prompts.append(line)
    if not prompts:
        raise ValueError(f"{path}: no prompts")
    return prompts


def percentiles_ms(seconds: Sequence[float]) -> Dict[str, float]:
    """Nearest-rank p50/p90/p99, max and mean of durations, in milliseconds."""
    if not seconds:
        return {"count": 0, "mean": 0.0, "p50": 0.0, "p90": 0.0, "p99": 0.0, "max": 0.0}
    ordered = sorted(seconds)

    def rank(q: float) -> float:
        index = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
        return ordered[index] * 1e3

    return {
        "count": len(ordered),
        "mean": statistics.fmean(ordered) * 1e3,
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": ordered[-1] * 1e3,
    }


@dataclass
class Timed:
    """One greedy request through the step loop, with each step's time."""

    tokens: List[int] = field(default_factory=list)
    first_step_s: float = 0.0
    decode_steps_s: List[float] = field(default_factory=list)

    @property
    def total_s(self) -> float:
        return self.first_step_s + sum(self.decode_steps_s)


def timed_generate(module, prompt: Sequence[int], max_tokens: int, eos_ids: Sequence[int]) -> Timed:
    """``step_loop.generate_alone`` with a clock around every step: prefill, then one token a step."""
    cache = module.new_cache(1, len(prompt) + max_tokens)
    timed = Timed()
    feed, start = list(prompt), 0
    while len(timed.tokens) < max_tokens:
        began = time.perf_counter()
        logits = _step(module, [feed], [0], [start], cache)
        token = int(logits[0].argmax())
        took = time.perf_counter() - began
        if timed.tokens:
            timed.decode_steps_s.append(took)
        else:
            timed.first_step_s = took
        timed.tokens.append(token)
        if token in eos_ids:
            break
        start += len(feed)
        feed = [token]
    return timed


def single_loop(module, prompts: List[List[int]], max_tokens: int, eos_ids: Sequence[int]) -> dict:
    """Every prompt alone, one after the other."""
    timed_generate(module, prompts[0], 4, [])  # warm up (allocator, thread pool)
    runs = [timed_generate(module, p, max_tokens, eos_ids) for p in prompts]
    tokens = sum(len(r.tokens) for r in runs)
    seconds = sum(r.total_s for r in runs)
    return {
        "requests": len(runs),
        "output_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "first_step_ms": percentiles_ms([r.first_step_s for r in runs]),
        "decode_step_ms": percentiles_ms([s for r in runs for s in r.decode_steps_s]),
        "outputs": [r.tokens for r in runs],
    }


def batched_loop(module, prompts: List[List[int]], max_tokens: int, eos_ids: Sequence[int], batch: int) -> dict:
    """Prompts in groups of ``batch`` through the slotted scheduler (continuous batching in Python)."""
    tokens, seconds, outputs = 0, 0.0, []
    for first in range(0, len(prompts), batch):
        group = prompts[first : first + batch]
        context = max(len(p) for p in group) + max_tokens
        scheduler = SlotScheduler(module, slots=len(group), max_context=context, eos_ids=eos_ids, separate_prefill=True)
        requests = [Request(list(p), max_tokens) for p in group]
        began = time.perf_counter()
        group_outputs = scheduler.run(requests)
        seconds += time.perf_counter() - began
        tokens += sum(len(o) for o in group_outputs)
        outputs += group_outputs
    return {
        "requests": len(prompts),
        "batch": batch,
        "output_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "outputs": outputs,
    }


def transformers_generate(prompts: List[List[int]], max_tokens: int, eos_ids: Sequence[int]) -> dict:
    """``generate`` (greedy) on the GGUF weights the export came from, one request at a time."""
    import exporter  # noqa: E402  (imports transformers: only when this side runs)

    began = time.perf_counter()
    model, _ = exporter.load_smollm2()
    load_s = time.perf_counter() - began
    eos = list(eos_ids)

    def generate(ids: torch.Tensor, n: int) -> torch.Tensor:
        return model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=n,
            do_sample=False,
            eos_token_id=eos,
            pad_token_id=eos[0],
        )

    firsts, tokens, seconds = [], 0, 0.0
    with torch.no_grad():
        generate(torch.tensor([prompts[0]]), 4)  # warm up
        for prompt in prompts:
            ids = torch.tensor([prompt])
            began = time.perf_counter()
            model(ids, attention_mask=torch.ones_like(ids), use_cache=True)
            firsts.append(time.perf_counter() - began)
            began = time.perf_counter()
            out = generate(ids, max_tokens)
            seconds += time.perf_counter() - began
            tokens += out.shape[1] - ids.shape[1]
    return {
        "requests": len(prompts),
        "output_tokens": tokens,
        "seconds": seconds,
        "tokens_per_s": tokens / seconds,
        "first_step_ms": percentiles_ms(firsts),
        "load_s": load_s,
    }


def render_chat_prompts(chat: ChatModel, prompts: List[str]) -> List[str]:
    """Each prompt as one user message through the model's chat template, as text."""
    config = chat.config
    return [
        chat.template.render(
            messages=[{"role": "user", "content": p}],
            add_generation_prompt=True,
            bos_token=config["bos_token"],
            eos_token=config["eos_token"],
        )
        for p in prompts
    ]


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "affinity": sorted(os.sched_getaffinity(0)),
        "load_average": list(os.getloadavg()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=pathlib.Path, default=ROOT / "examples" / "models" / "smollm2")
    parser.add_argument("--prompts", type=pathlib.Path, default=DEFAULT_PROMPTS)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="libtorch intra-op threads (default 1)")
    parser.add_argument("--batch", type=int, default=0, help="prompts per batch in loop_batched (default: all)")
    parser.add_argument("--skip-transformers", action="store_true")
    parser.add_argument("--json", type=pathlib.Path, help="also write the report here")
    parser.add_argument("--render-chat-prompts", type=pathlib.Path, metavar="FILE",
                        help="write the prompts through the chat template to FILE and exit")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    # What the runtime does (docs/generate-contract.md §4).
    torch._C._set_graph_executor_optimize(False)

    chat = ChatModel(args.model)
    texts = load_prompts(args.prompts)
    if args.render_chat_prompts:
        lines = [json.dumps(t) + "\n" for t in render_chat_prompts(chat, texts)]
        args.render_chat_prompts.write_text("".join(lines))
        return 0
    prompts = [chat.prompt_ids([{"role": "user", "content": p}]) for p in texts]
    eos_ids = chat.config["eos_token_ids"]
    report = {
        "model": str(args.model),
        "prompts": len(prompts),
        "prompt_tokens": [len(p) for p in prompts],
        "max_tokens": args.max_tokens,
        "torch_threads": torch.get_num_threads(),
        "machine": machine(),
        "loop": single_loop(chat.module, prompts, args.max_tokens, eos_ids),
        "loop_batched": batched_loop(chat.module, prompts, args.max_tokens, eos_ids, args.batch or len(prompts)),
    }
    if not args.skip_transformers and chat.config.get("source", {}).get("pypi"):
        report["transformers"] = transformers_generate(prompts, args.max_tokens, eos_ids)
    report["machine"]["load_average_after"] = list(os.getloadavg())
    print(summary(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def summary(report: dict) -> str:
    """A few readable lines: tokens/s and first-step time of each side."""
    lines = [f"{report['prompts']} prompts ({min(report['prompt_tokens'])}–{max(report['prompt_tokens'])} tokens), "
             f"max_tokens {report['max_tokens']}, {report['torch_threads']} torch thread(s)"]
    for side in ("loop", "loop_batched", "transformers"):
        if side not in report:
            continue
        r = report[side]
        line = f"  {side:<13} {r['output_tokens']:>5} tokens in {r['seconds']:.2f} s: {r['tokens_per_s']:.1f} tokens/s"
        if "first_step_ms" in r:
            f = r["first_step_ms"]
            line += f"; first step ms p50 {f['p50']:.1f} p90 {f['p90']:.1f} max {f['max']:.1f}"
        lines.append(line)
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
