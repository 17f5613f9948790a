"""Reference greedy generation loops over the modelplane generate contract.

``generate_alone`` runs one request: prefill then one-token decode steps.
``SlotScheduler`` is what a continuous-batching engine does, in plain Python:
requests join at any step, their prompts are fed in chunks beside the decode
rows of the running requests (one ``step`` call per iteration), and a finished
request leaves its slot to the next one. The Rust engine must produce the same
tokens; the tests and the benchmark use these loops as the baseline.
"""

from dataclasses import dataclass, field
from typing import List, Optional, Sequence

import torch


@torch.no_grad()
def _step(model, rows: List[List[int]], slots: List[int], starts: List[int], cache) -> torch.Tensor:
    """One contract ``step`` over ``rows`` (token lists, right-padded here)."""
    t = max(len(r) for r in rows)
    ids = torch.zeros(len(rows), t, dtype=torch.int64)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r, dtype=torch.int64)
    lengths = torch.tensor([len(r) for r in rows], dtype=torch.int64)
    return model.step(ids, torch.tensor(slots), torch.tensor(starts), lengths, cache)


def generate_alone(model, prompt: Sequence[int], max_new_tokens: int, eos_ids: Sequence[int], cache=None) -> List[int]:
    """Greedy tokens for one request: prefill the whole prompt, then decode one token per step."""
    if cache is None:
        cache = model.new_cache(1, len(prompt) + max_new_tokens)
    out: List[int] = []
    feed, start = list(prompt), 0
    while len(out) < max_new_tokens:
        logits = _step(model, [feed], [0], [start], cache)
        token = int(logits[0].argmax())
        out.append(token)
        if token in eos_ids:
            break
        start += len(feed)
        feed = [token]
    return out


@dataclass
class Request:
    """One generation request; ``join_step`` is the iteration at which it arrives."""

    prompt: List[int]
    max_new_tokens: int
    join_step: int = 0
    output: List[int] = field(default_factory=list)
    slot: Optional[int] = None
    fed: int = 0  # tokens already written to the cache

    def pending(self) -> List[int]:
        """Tokens to feed next: the rest of the prompt, or the last generated token."""
        if self.fed < len(self.prompt):
            return self.prompt[self.fed :]
        return self.output[-1:]

    def done(self, eos_ids: Sequence[int]) -> bool:
        return len(self.output) >= self.max_new_tokens or (bool(self.output) and self.output[-1] in eos_ids)


class SlotScheduler:
    """Continuous batching over a slotted cache: join, chunked prefill beside decode, leave.

    With ``separate_prefill`` an iteration makes two ``step`` calls, one for the rows
    still feeding their prompt and one (``T = 1``) for the decoding rows, instead of
    one padded call for all (docs/generate-contract.md §4).
    """

    def __init__(
        self,
        model,
        slots: int,
        max_context: int,
        eos_ids: Sequence[int],
        prefill_chunk: int = 64,
        separate_prefill: bool = False,
    ):
        self.model = model
        self.cache = model.new_cache(slots, max_context)
        self.max_context = max_context
        self.free = list(range(slots))
        self.eos_ids = list(eos_ids)
        self.prefill_chunk = prefill_chunk
        self.separate_prefill = separate_prefill
        self.steps = 0
        self.max_batch = 0

    def run(self, requests: List[Request]) -> List[List[int]]:
        """Runs every request to completion; returns their output tokens in order."""
        for request in requests:
            if len(request.prompt) + request.max_new_tokens > self.max_context:
                raise ValueError(f"prompt + max_new_tokens exceeds the cache's {self.max_context} positions")
        waiting = sorted(requests, key=lambda r: r.join_step)
        running: List[Request] = []
        while waiting or running:
            while waiting and self.free and waiting[0].join_step <= self.steps:
                request = waiting.pop(0)
                request.slot = self.free.pop(0)
                running.append(request)
            if running:
                self.max_batch = max(self.max_batch, len(running))
                prefilling = [r for r in running if r.fed < len(r.prompt)]
                decoding = [r for r in running if r.fed >= len(r.prompt)]
                if self.separate_prefill:
                    for group in (prefilling, decoding):
                        if group:
                            self._iterate(group)
                else:
                    self._iterate(running)
                for request in [r for r in running if r.done(self.eos_ids)]:
                    running.remove(request)
                    self.free.append(request.slot)
            self.steps += 1
        return [r.output for r in requests]

    def _iterate(self, rows: List[Request]) -> None:
        feeds = [r.pending()[: self.prefill_chunk] for r in rows]
        logits = _step(self.model, feeds, [r.slot for r in rows], [r.fed for r in rows], self.cache)
        for i, request in enumerate(rows):
            request.fed += len(feeds[i])
            if request.fed >= len(request.prompt):  # the row's last token was a real position: sample
                request.output.append(int(logits[i].argmax()))
