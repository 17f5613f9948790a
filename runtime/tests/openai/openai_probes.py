"""What the OpenAI tests share: the served models' names and sizes, and polling
helpers (read /metrics, wait for a condition, bounded)."""

from __future__ import annotations

import re
import time
import urllib.request

TINY = "tiny-llama"
SMOL = "smollm2"
MINILM = "minilm"
# tiny-llama again, with a request timeout far shorter than a long generation.
TINY_DEADLINE = "tiny-llama-deadline"
DEADLINE_TIMEOUT_S = 0.3
# tiny-llama: random weights, fast; 8 KV slots of 1024 positions (4 MiB).
TINY_SLOTS = 8
TINY_CONTEXT = 1024
SMOL_CONTEXT = 512


def metric(runtime_url: str, name: str, **labels: str) -> float:
    """The sum of the series of `name` in /metrics whose labels include `labels` (an
    unlabeled series has none)."""
    with urllib.request.urlopen(f"{runtime_url}/metrics", timeout=5) as response:
        text = response.read().decode()
    total = 0.0
    for match in re.finditer(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", text, re.M):
        series = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(series.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def wait_for(predicate, timeout_s: float, what: str) -> None:
    """Polls `predicate` every 50 ms until it holds, at most `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
