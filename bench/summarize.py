"""Turns one scripts/bench.sh run (a folder of JSON reports) into markdown tables and
the issue's target ratios.

Files it reads, all written by scripts/bench.sh:
  plain-<model>.json                   runtime/examples/plain_loop: a list of
                                       {"batch", "rows_per_s", "p50_us", "p99_us", ...}
  <server>-<model>-<protocol>-c<N>.json  modelplane-bench reports; server is
                                       `modelplane` or `kserve`
  metrics/<report>.{before,after}.prom   the runtime's /metrics around a modelplane
                                       point: server-side means come from the difference

Usage: python bench/summarize.py OUT_DIR
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path

METRIC_LINE = re.compile(r'^(modelplane_\w+)_(sum|count)\{model="([^"]*)"[^}]*\} (\S+)$')
REPORT_NAME = re.compile(r"^(modelplane|kserve)-(.+)-(rest-json|rest-binary|grpc)-c(\d+)\.json$")

# The targets of issue 4.
CLASSIFIER_SHARE = 0.85
MLP_KSERVE_FACTOR = 10.0
ADDED_P50_US = 150.0


@dataclass(frozen=True)
class Point:
    """One load-generator run against one server."""

    server: str
    model: str
    protocol: str
    concurrency: int
    rps: float
    rows_per_s: float
    p50: float
    p90: float
    p99: float
    max: float
    ok: int
    errors: dict


def load_points(folder: Path) -> list[Point]:
    points = []
    for path in sorted(folder.glob("*.json")):
        match = REPORT_NAME.match(path.name)
        if not match:
            continue
        server, model, protocol, concurrency = match.groups()
        report = json.loads(path.read_text())
        latency = report["latency_us"]
        points.append(Point(server, model, protocol, int(concurrency), report["throughput_rps"],
                            report["rows_per_s"], latency["p50"], latency["p90"], latency["p99"],
                            latency["max"], report["ok"], report["errors"]))
    return points


def prom_sums(path: Path, model: str) -> dict[tuple[str, str], float]:
    """`(metric, "sum"|"count")` totals of one model's histograms in a Prometheus scrape."""
    totals: dict[tuple[str, str], float] = {}
    if not path.exists():
        return totals
    for line in path.read_text().splitlines():
        match = METRIC_LINE.match(line)
        if match and match.group(3) == model:
            key = (match.group(1), match.group(2))
            totals[key] = totals.get(key, 0.0) + float(match.group(4))
    return totals


def server_side(folder: Path, report: str, model: str) -> dict[str, float]:
    """Mean server-side request, queue and forward time (µs) and rows per forward while
    `report` ran (warm-up included), from the runtime's metrics scraped around it."""
    before = prom_sums(folder / "metrics" / f"{report}.before.prom", model)
    after = prom_sums(folder / "metrics" / f"{report}.after.prom", model)

    def mean(metric: str, scale: float) -> float | None:
        count = after.get((metric, "count"), 0.0) - before.get((metric, "count"), 0.0)
        total = after.get((metric, "sum"), 0.0) - before.get((metric, "sum"), 0.0)
        return total / count * scale if count > 0 else None

    means = {
        "request_us": mean("modelplane_request_duration_seconds", 1e6),
        "queue_us": mean("modelplane_queue_duration_seconds", 1e6),
        "forward_us": mean("modelplane_compute_duration_seconds", 1e6),
        "batch": mean("modelplane_batch_size", 1.0),
    }
    return {k: v for k, v in means.items() if v is not None}


def load_plain(folder: Path) -> dict[str, list[dict]]:
    return {
        path.stem.removeprefix("plain-"): json.loads(path.read_text())
        for path in sorted(folder.glob("plain-*.json"))
    }


def find(points: list[Point], server: str, model: str, protocol: str, c: int) -> Point | None:
    return next((p for p in points if (p.server, p.model, p.protocol, p.concurrency)
                 == (server, model, protocol, c)), None)


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def targets(points: list[Point], plain: dict[str, list[dict]]) -> list[str]:
    """One line per target of issue 4, with the measured ratio; missing data says so."""
    lines = []
    classifier = plain.get("classifier")
    best = max(classifier, key=lambda r: r["rows_per_s"]) if classifier else None
    for protocol in ("rest-json", "rest-binary", "grpc"):
        point = find(points, "modelplane", "classifier", protocol, 64)
        if best and point:
            share = point.rows_per_s / best["rows_per_s"]
            lines.append(f"classifier c=64 {protocol}: {point.rows_per_s:,.0f} rows/s = "
                         f"{share:.0%} of the plain loop's best ({best['rows_per_s']:,.0f} rows/s "
                         f"at batch {best['batch']}); target ≥ {CLASSIFIER_SHARE:.0%}: "
                         f"{verdict(share >= CLASSIFIER_SHARE)}")
    kserve = find(points, "kserve", "mlp", "rest-json", 64)
    for protocol in ("rest-json", "rest-binary", "grpc"):
        point = find(points, "modelplane", "mlp", protocol, 64)
        if kserve and point and kserve.rps > 0:
            factor = point.rps / kserve.rps
            lower_p99 = point.p99 < kserve.p99
            lines.append(f"mlp c=64 {protocol} vs KServe REST JSON: {factor:.1f}× throughput "
                         f"({point.rps:,.0f} vs {kserve.rps:,.0f} req/s), p99 {point.p99:,.0f} vs "
                         f"{kserve.p99:,.0f} µs; target ≥ {MLP_KSERVE_FACTOR:.0f}× with lower p99: "
                         f"{verdict(factor >= MLP_KSERVE_FACTOR and lower_p99)}")
    for model, rows in sorted(plain.items()):
        batch1 = next((r for r in rows if r["batch"] == 1), None)
        for protocol in ("rest-binary", "grpc"):
            point = find(points, "modelplane", model, protocol, 1)
            if batch1 and point:
                added = point.p50 - batch1["p50_us"]
                lines.append(f"{model} c=1 {protocol}: p50 {point.p50:,.0f} µs vs plain forward "
                             f"{batch1['p50_us']:,.0f} µs = +{added:,.0f} µs; target ≤ "
                             f"+{ADDED_P50_US:.0f} µs: {verdict(added <= ADDED_P50_US)}")
                floor = find(points, "modelplane", "noop", protocol, 1)
                if floor and model == "mlp":
                    lines.append(f"{model} c=1 {protocol}, apart from the floor: the noop model "
                                 f"(same shapes, no compute, same server and client) p50 "
                                 f"{floor.p50:,.0f} µs; the rest, {added - floor.p50:+,.0f} µs, "
                                 f"is the forward running slower in the server than in the loop")
    return lines


def plain_table(plain: dict[str, list[dict]]) -> list[str]:
    lines = ["| model | batch | rows/s | p50 µs | p99 µs |", "|---|---:|---:|---:|---:|"]
    for model, rows in sorted(plain.items()):
        for r in sorted(rows, key=lambda r: r["batch"]):
            lines.append(f"| {model} | {r['batch']} | {r['rows_per_s']:,.0f} | "
                         f"{r['p50_us']:,.1f} | {r['p99_us']:,.1f} |")
    return lines


def server_table(folder: Path, points: list[Point]) -> list[str]:
    lines = ["| model | server | protocol | c | req/s | p50 µs | p90 µs | p99 µs | max µs | ok | errors "
             "| server µs | queue µs | forward µs | rows/forward |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|"]
    order = {"modelplane": 0, "kserve": 1}
    for p in sorted(points, key=lambda p: (p.model, order.get(p.server, 2), p.protocol, p.concurrency)):
        errors = ", ".join(f"{k}: {v}" for k, v in p.errors.items()) or "0"
        inside = server_side(folder, f"{p.server}-{p.model}-{p.protocol}-c{p.concurrency}", p.model)
        cells = [f"{inside[k]:,.0f}" if k in inside else "" for k in ("request_us", "queue_us", "forward_us")]
        cells.append(f"{inside['batch']:.1f}" if "batch" in inside else "")
        lines.append(f"| {p.model} | {p.server} | {p.protocol} | {p.concurrency} | {p.rps:,.0f} | "
                     f"{p.p50:,.0f} | {p.p90:,.0f} | {p.p99:,.0f} | {p.max:,.0f} | {p.ok:,} | "
                     f"{errors} | {' | '.join(cells)} |")
    return lines


def summarize(folder: Path) -> str:
    points, plain = load_points(folder), load_plain(folder)
    parts = ["### Plain libtorch loop (no server)", "", *plain_table(plain), "",
             "### Servers (one row per request)", "", *server_table(folder, points), "",
             "### Targets", "", *[f"- {line}" for line in targets(points, plain)]]
    return "\n".join(parts) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: summarize.py OUT_DIR")
    print(summarize(Path(sys.argv[1])), end="")
