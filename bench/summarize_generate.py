"""Turns one `scripts/bench.sh generate` run (a folder of JSON reports) into markdown
tables and the target ratios of issue 6.

Files it reads, all written by scripts/bench.sh:
  llm-baseline.json   bench/llm_baseline.py: "loop", "loop_batched" and (when run)
                      "transformers", each with "tokens_per_s"; the loops'
                      "first_step_ms" percentiles
  gen-*.json          modelplane-bench streaming reports (openai-chat,
                      openai-completions, grpc-stream); the point is read from
                      the report's scenario, not from the file name
  metrics/gen-<label>.{before,after}.prom   the runtime's /metrics around a point:
                      server-side mean TTFT and time per output token come from
                      the difference of the gen_ai histograms (warm-up included)
  metrics/gen-<label>.samples   "unix-time output-tokens running" once a second
                      through a point: the steady-state output rate while all of
                      the point's requests ran (ramp-up and drain left out)
  cmp-<server>-<off|on>-c<c>.json   the side-by-side comparison of issue 15:
                      modelplane and vLLM, prefix caching off and on, c=1 and c=16
  vllm-skipped.txt    why the vLLM side did not run, when it did not

Usage: python bench/summarize_generate.py OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

# The targets of issue 6.
THROUGHPUT_FACTOR = 4.0  # output tokens/s at c16 over the single-request loop
TTFT_MARGIN = 0.10  # TTFT p50 at c1 over the loop's first step, at most +10 %
TTFT_JITTER_FACTOR = 2.0  # TTFT p99 − p50 at c16, at most 2 × p50
TARGET_CONCURRENCY = 16
# Issue 15: against vLLM on the same core, output tokens/s at c=16 at least 1.0x with
# prefix caching off on both sides and with it on on both; TTFT p50 at most vLLM's at
# c=1 and c=16.
VLLM_FACTOR = 1.0
COMPARISON_FILE = re.compile(r"^cmp-(?P<server>[a-z]+)-(?P<caching>off|on)-c(?P<c>\d+)\.json$")

HISTOGRAM_LINE = re.compile(r"^(gen_ai_server_\w+?)_(sum|count)(?:\{[^}]*\})? (\S+)$")
SERVER_TTFT = "gen_ai_server_time_to_first_token_seconds"
SERVER_TPOT = "gen_ai_server_time_per_output_token_seconds"


@dataclass(frozen=True)
class StreamPoint:
    """One streaming load-generator run."""

    protocol: str
    concurrency: int
    rps: float
    tokens_per_s: float
    output_tokens: int
    ttft: dict
    itl: dict
    tpot: dict
    e2e: dict
    ok: int
    errors: dict
    without_usage: int
    server: dict  # server-side means in ms ("ttft", "tpot"), when scraped
    steady: "Steady | None" = None  # the rate while `concurrency` requests ran, when sampled


@dataclass(frozen=True)
class Steady:
    """Output tokens/s from the server's counter while the point ran at full concurrency."""

    tokens_per_s: float
    seconds: float
    tokens: float


# A steady window shorter than this says nothing (a point that never filled up).
MIN_STEADY_SECONDS = 10.0


def steady_rate(path: Path, concurrency: int) -> Steady | None:
    """The output rate between the first and the last sample with `concurrency` requests
    running: the point at full load, without its ramp-up and its drain (closed-loop
    streams that outlive the point's issuing run with fewer and fewer neighbours)."""
    if not path.exists():
        return None
    full = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            at, tokens, running = float(parts[0]), float(parts[1]), float(parts[2])
        except ValueError:
            continue
        if running >= concurrency:
            full.append((at, tokens))
    if len(full) < 2:
        return None
    (t0, n0), (t1, n1) = full[0], full[-1]
    if t1 - t0 < MIN_STEADY_SECONDS:
        return None
    return Steady((n1 - n0) / (t1 - t0), t1 - t0, n1 - n0)


def histogram_totals(path: Path) -> dict[tuple[str, str], float]:
    """`(metric, "sum"|"count")` of the gen_ai histograms in a scrape, summed over labels."""
    totals: dict[tuple[str, str], float] = {}
    if not path.exists():
        return totals
    for line in path.read_text().splitlines():
        match = HISTOGRAM_LINE.match(line)
        if match:
            key = (match.group(1), match.group(2))
            totals[key] = totals.get(key, 0.0) + float(match.group(3))
    return totals


def server_means(folder: Path, label: str) -> dict[str, float]:
    """Mean server-side TTFT and time per output token (ms) while the point `label` ran."""
    before = histogram_totals(folder / "metrics" / f"gen-{label}.before.prom")
    after = histogram_totals(folder / "metrics" / f"gen-{label}.after.prom")
    means = {}
    for name, metric in (("ttft", SERVER_TTFT), ("tpot", SERVER_TPOT)):
        count = after.get((metric, "count"), 0.0) - before.get((metric, "count"), 0.0)
        total = after.get((metric, "sum"), 0.0) - before.get((metric, "sum"), 0.0)
        if count > 0:
            means[name] = total / count * 1e3
    return means


def load_stream_points(folder: Path) -> list[StreamPoint]:
    points = []
    for path in sorted(folder.glob("gen-*.json")):
        report = json.loads(path.read_text())
        scenario = report["scenario"]
        if scenario.get("mode") != "closed":
            continue
        points.append(StreamPoint(
            scenario["protocol"], int(scenario["concurrency"]), report["throughput_rps"],
            report["output_tokens_per_s"], report["output_tokens"], report["ttft_ms"], report["itl_ms"],
            report["tpot_ms"], report["e2e_ms"], report["ok"], report["errors"],
            report["requests_without_usage"], server_means(folder, scenario.get("label", "")),
            steady_rate(folder / "metrics" / f"gen-{scenario.get('label', '')}.samples",
                        int(scenario["concurrency"]))))
    return sorted(points, key=lambda p: (p.protocol, p.concurrency))


def load_baseline(folder: Path) -> dict | None:
    path = folder / "llm-baseline.json"
    return json.loads(path.read_text()) if path.exists() else None


def fmt(x: float, digits: int = 1) -> str:
    return f"{x:,.{digits}f}"


def errors_text(errors: dict) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(errors.items())) or "0"


def baseline_table(baseline: dict) -> list[str]:
    rows = ["| side | requests | output tokens | seconds | tokens/s | first step p50 ms | first step p90 ms |",
            "|---|---:|---:|---:|---:|---:|---:|"]
    names = {"loop": "Python step loop, one request at a time",
             "loop_batched": f"Python step loop, batches of {baseline.get('loop_batched', {}).get('batch', '?')}",
             "transformers": "transformers generate, one request at a time"}
    for side, name in names.items():
        r = baseline.get(side)
        if r is None:
            continue
        first = r.get("first_step_ms")
        p50 = fmt(first["p50"]) if first else ""
        p90 = fmt(first["p90"]) if first else ""
        rows.append(f"| {name} | {r['requests']} | {r['output_tokens']} | {fmt(r['seconds'], 2)} | "
                    f"{fmt(r['tokens_per_s'])} | {p50} | {p90} |")
    return rows


def stream_table(points: list[StreamPoint]) -> list[str]:
    rows = ["| protocol | c | req/s | output tok/s | at full load | TTFT p50 ms | TTFT p90 | TTFT p99 | TTFT jitter | "
            "ITL p50 ms | ITL p99 | ITL jitter | TPOT p50 ms | E2E p50 ms | ok | errors | "
            "server TTFT ms | server TPOT ms |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|"]
    for p in points:
        rows.append(
            f"| {p.protocol} | {p.concurrency} | {fmt(p.rps, 2)} | {fmt(p.tokens_per_s)} | "
            f"{fmt(p.steady.tokens_per_s) if p.steady else ''} | {fmt(p.ttft['p50'])} | "
            f"{fmt(p.ttft['p90'])} | {fmt(p.ttft['p99'])} | {fmt(p.ttft['p99'] - p.ttft['p50'])} | "
            f"{fmt(p.itl['p50'])} | {fmt(p.itl['p99'])} | {fmt(p.itl['p99'] - p.itl['p50'])} | "
            f"{fmt(p.tpot['p50'])} | {fmt(p.e2e['p50'])} | {p.ok} | {errors_text(p.errors)} | "
            f"{server_cell(p, 'ttft')} | {server_cell(p, 'tpot')} |")
    return rows


def server_cell(point: StreamPoint, name: str) -> str:
    return fmt(point.server[name]) if name in point.server else ""


def verdict(met: bool) -> str:
    return "met" if met else "MISSED"


def targets(points: list[StreamPoint], baseline: dict | None, protocol: str = "openai-chat") -> list[str]:
    """One line per target of issue 6, with the ratio; `protocol` is the SSE protocol measured."""
    by_c = {p.concurrency: p for p in points if p.protocol == protocol}
    lines = []
    loop = (baseline or {}).get("loop")
    c16 = by_c.get(TARGET_CONCURRENCY)
    if loop and c16:
        ratio = c16.tokens_per_s / loop["tokens_per_s"]
        whole = (f"- output tokens/s at c={TARGET_CONCURRENCY} ({protocol}), whole point: {fmt(c16.tokens_per_s)} vs "
                 f"{fmt(loop['tokens_per_s'])} for the single-request loop = {ratio:.2f}×")
        if c16.steady:
            steady = c16.steady.tokens_per_s / loop["tokens_per_s"]
            lines.append(f"- output tokens/s at c={TARGET_CONCURRENCY} ({protocol}), while {TARGET_CONCURRENCY} "
                         f"requests ran ({fmt(c16.steady.seconds)} s, server counter): "
                         f"{fmt(c16.steady.tokens_per_s)} vs {fmt(loop['tokens_per_s'])} = {steady:.2f}×; "
                         f"target ≥ {THROUGHPUT_FACTOR:g}×: {verdict(steady >= THROUGHPUT_FACTOR)}")
            lines.append(whole + " (ramp-up and drain included)")
        else:
            lines.append(whole + f"; target ≥ {THROUGHPUT_FACTOR:g}×: {verdict(ratio >= THROUGHPUT_FACTOR)}")
        hf = (baseline or {}).get("transformers")
        if hf:
            lines.append(f"- (for scale) c={TARGET_CONCURRENCY} vs transformers generate one request: "
                         f"{c16.tokens_per_s / hf['tokens_per_s']:.2f}× ({fmt(hf['tokens_per_s'])} tokens/s)")
    c1 = by_c.get(1)
    if loop and c1:
        first = loop["first_step_ms"]["p50"]
        ratio = c1.ttft["p50"] / first
        lines.append(f"- TTFT p50 at c=1 ({protocol}): {fmt(c1.ttft['p50'])} ms vs the loop's first step "
                     f"{fmt(first)} ms = {ratio:.2f}× ({(ratio - 1) * 100:+.0f} %); target within "
                     f"{TTFT_MARGIN * 100:.0f} %: {verdict(ratio <= 1 + TTFT_MARGIN)}")
    if c16:
        jitter = c16.ttft["p99"] - c16.ttft["p50"]
        ratio = jitter / c16.ttft["p50"] if c16.ttft["p50"] > 0 else float("inf")
        lines.append(f"- TTFT jitter (p99 − p50) at c={TARGET_CONCURRENCY} ({protocol}): {fmt(jitter)} ms = "
                     f"{ratio:.2f}× the p50 ({fmt(c16.ttft['p50'])} ms); target ≤ {TTFT_JITTER_FACTOR:g}×: "
                     f"{verdict(ratio <= TTFT_JITTER_FACTOR)}")
    for p in sorted(by_c.values(), key=lambda p: p.concurrency):
        lines.append(f"- inter-token jitter (p99 − p50) at c={p.concurrency} ({protocol}): "
                     f"{fmt(p.itl['p99'] - p.itl['p50'])} ms (ITL p50 {fmt(p.itl['p50'])} ms, p99 {fmt(p.itl['p99'])} ms)")
    return lines


def load_comparison(folder: Path) -> dict[tuple[str, str, int], StreamPoint]:
    """The comparison points by `(server, "off"|"on", concurrency)`."""
    points = {}
    for path in sorted(folder.glob("cmp-*.json")):
        match = COMPARISON_FILE.match(path.name)
        if not match:
            continue
        report = json.loads(path.read_text())
        label = path.stem
        points[(match["server"], match["caching"], int(match["c"]))] = StreamPoint(
            report["scenario"]["protocol"], int(report["scenario"]["concurrency"]), report["throughput_rps"],
            report["output_tokens_per_s"], report["output_tokens"], report["ttft_ms"], report["itl_ms"],
            report["tpot_ms"], report["e2e_ms"], report["ok"], report["errors"],
            report["requests_without_usage"], server_means(folder, label), None)
    return points


def comparison(folder: Path) -> list[str]:
    """The side-by-side table and the issue 15 verdicts (empty without comparison points)."""
    points = load_comparison(folder)
    if not points:
        return []
    names = {"modelplane": "modelplane", "vllm": "vLLM"}
    rows = ["| server | prefix caching | c | output tok/s | TTFT p50 ms | TTFT p99 | ITL p50 ms | ITL p99 | "
            "E2E p50 ms | ok | errors | output tokens |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for (server, caching, c), p in sorted(points.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0])):
        rows.append(f"| {names.get(server, server)} | {caching} | {c} | {fmt(p.tokens_per_s)} | "
                    f"{fmt(p.ttft['p50'])} | {fmt(p.ttft['p99'])} | {fmt(p.itl['p50'])} | {fmt(p.itl['p99'])} | "
                    f"{fmt(p.e2e['p50'])} | {p.ok} | {errors_text(p.errors)} | {p.output_tokens} |")
    out = ["#### Side by side: modelplane and vLLM on the same core", ""] + rows + [""]
    skipped = folder / "vllm-skipped.txt"
    if skipped.exists():
        out += [skipped.read_text().strip(), ""]
    lines = []
    for caching in ("off", "on"):
        ours, theirs = points.get(("modelplane", caching, TARGET_CONCURRENCY)), points.get(("vllm", caching, TARGET_CONCURRENCY))
        if ours and theirs and theirs.tokens_per_s > 0:
            ratio = ours.tokens_per_s / theirs.tokens_per_s
            lines.append(f"- output tokens/s at c={TARGET_CONCURRENCY}, prefix caching {caching} on both: "
                         f"{fmt(ours.tokens_per_s)} vs vLLM {fmt(theirs.tokens_per_s)} = {ratio:.2f}×; "
                         f"target ≥ {VLLM_FACTOR:g}×: {verdict(ratio >= VLLM_FACTOR)}")
        for c in (1, TARGET_CONCURRENCY):
            ours, theirs = points.get(("modelplane", caching, c)), points.get(("vllm", caching, c))
            if ours and theirs and theirs.ttft["p50"] > 0:
                ratio = ours.ttft["p50"] / theirs.ttft["p50"]
                lines.append(f"- TTFT p50 at c={c}, prefix caching {caching}: {fmt(ours.ttft['p50'])} ms vs vLLM "
                             f"{fmt(theirs.ttft['p50'])} ms = {ratio:.2f}×; target ≤ 1×: {verdict(ratio <= 1.0)}")
    return out + (lines or ["- no vLLM points to compare with"]) + [""]


def summarize(folder: Path) -> str:
    baseline = load_baseline(folder)
    points = load_stream_points(folder)
    out = []
    machine = folder / "machine.txt"
    if machine.exists():
        out += ["```", machine.read_text().rstrip(), "```", ""]
    if baseline:
        out += ["#### Baselines (Python, same TorchScript file / same weights)", ""] + baseline_table(baseline) + [""]
    if points:
        out += ["#### modelplane-runtime (streamed, closed loop)", ""] + stream_table(points) + [""]
        missing = sum(p.without_usage for p in points)
        if missing:
            out += [f"{missing} requests came without usage: their tokens were counted as chunks.", ""]
        out += ["Client-side percentiles from modelplane-bench; \"server\" columns are the runtime's own "
                "means (gen_ai metrics, warm-up included); \"at full load\" is the server's output-token "
                "rate while all c requests ran (sampled once a second; ramp-up and drain left out).", ""]
    out += ["#### Targets", ""] + (targets(points, baseline) or ["- nothing to compare (no runtime points)"])
    cmp = comparison(folder)
    if cmp:
        out += [""] + cmp
    return "\n".join(out)


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    print(summarize(Path(sys.argv[1])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
