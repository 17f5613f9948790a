"""bench/summarize_generate.py: tables and issue 6 target verdicts from a folder of reports."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summarize_generate import load_stream_points, summarize, targets  # noqa: E402


def millis(p50: float, p99: float) -> dict:
    return {"count": 10, "mean": p50, "p50": p50, "p90": p50, "p99": p99, "max": p99}


def stream(protocol: str, c: int, tokens_per_s: float, ttft: tuple, itl: tuple, mode: str = "closed") -> dict:
    scenario = {"label": "", "protocol": protocol, "url": "u", "model": "smollm2", "max_tokens": 64,
                "temperature": 0.0, "prompts": 12, "mode": mode}
    scenario["concurrency" if mode == "closed" else "rate"] = c
    return {"scenario": scenario, "requests": 10, "ok": 10, "errors": {}, "elapsed_s": 10.0,
            "throughput_rps": 1.0, "output_tokens": int(tokens_per_s * 10), "output_tokens_per_s": tokens_per_s,
            "prompt_tokens": 100, "chunks": 100, "requests_without_usage": 0, "requests_without_text": 0,
            "ttft_ms": millis(*ttft), "itl_ms": millis(*itl), "tpot_ms": millis(itl[0], itl[0]),
            "e2e_ms": millis(1000, 2000), "jitter": {"ttft_ms": ttft[1] - ttft[0], "itl_ms": itl[1] - itl[0]}}


def baseline(loop_tps: float, first_p50: float) -> dict:
    first = millis(first_p50, first_p50 * 2)
    return {"prompts": 12, "max_tokens": 64,
            "loop": {"requests": 12, "output_tokens": 600, "seconds": 600 / loop_tps, "tokens_per_s": loop_tps,
                     "first_step_ms": first},
            "loop_batched": {"requests": 12, "batch": 12, "output_tokens": 600, "seconds": 10.0, "tokens_per_s": 60.0},
            "transformers": {"requests": 12, "output_tokens": 600, "seconds": 30.0, "tokens_per_s": 20.0,
                             "first_step_ms": first}}


def write(folder: Path, name: str, content) -> None:
    (folder / name).write_text(json.dumps(content))


def test_each_target_compares_against_its_baseline(tmp_path):
    write(tmp_path, "llm-baseline.json", baseline(loop_tps=20.0, first_p50=100.0))
    write(tmp_path, "gen-openai-chat-c1.json", stream("openai-chat", 1, 19.0, (105.0, 130.0), (50.0, 60.0)))
    write(tmp_path, "gen-openai-chat-c16.json", stream("openai-chat", 16, 90.0, (300.0, 1000.0), (80.0, 200.0)))
    lines = targets(load_stream_points(tmp_path), json.loads((tmp_path / "llm-baseline.json").read_text()))
    text = "\n".join(lines)
    assert "= 4.50×; target ≥ 4×: met" in text  # 90 / 20
    assert "= 1.05× (+5 %); target within 10 %: met" in text  # 105 / 100
    assert "700.0 ms = 2.33× the p50" in text and "target ≤ 2×: MISSED" in text
    assert "inter-token jitter (p99 − p50) at c=16 (openai-chat): 120.0 ms" in text
    assert "4.50× (20.0 tokens/s)" in text  # against transformers


def test_missed_targets_say_so(tmp_path):
    write(tmp_path, "gen-a.json", stream("openai-chat", 1, 19.0, (150.0, 160.0), (50.0, 60.0)))
    write(tmp_path, "gen-b.json", stream("openai-chat", 16, 60.0, (300.0, 400.0), (80.0, 90.0)))
    text = "\n".join(targets(load_stream_points(tmp_path), baseline(20.0, 100.0)))
    assert "= 3.00×; target ≥ 4×: MISSED" in text
    assert "(+50 %); target within 10 %: MISSED" in text
    assert "0.33× the p50" in text and "target ≤ 2×: met" in text


def test_points_come_from_the_scenario_and_open_loop_runs_are_left_out(tmp_path):
    write(tmp_path, "gen-x.json", stream("grpc-stream", 16, 50.0, (1.0, 2.0), (1.0, 2.0)))
    write(tmp_path, "gen-y.json", stream("openai-chat", 5, 50.0, (1.0, 2.0), (1.0, 2.0), mode="open"))
    write(tmp_path, "other.json", {"not": "a stream report"})
    points = load_stream_points(tmp_path)
    assert [(p.protocol, p.concurrency) for p in points] == [("grpc-stream", 16)]


def test_server_means_come_from_the_metrics_scraped_around_the_point(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()

    def scrape(name: str, ttft_sum: float, ttft_count: int) -> None:
        (metrics / name).write_text(
            "# TYPE gen_ai_server_time_to_first_token_seconds histogram\n"
            f'gen_ai_server_time_to_first_token_seconds_sum{{model="smollm2",version="1"}} {ttft_sum}\n'
            f'gen_ai_server_time_to_first_token_seconds_count{{model="smollm2",version="1"}} {ttft_count}\n'
            'gen_ai_server_time_to_first_token_seconds_bucket{le="0.1",model="smollm2",version="1"} 1\n')

    scrape("gen-c16.before.prom", 1.0, 10)
    scrape("gen-c16.after.prom", 5.0, 30)  # 4 s over 20 requests: 200 ms
    report = stream("openai-chat", 16, 90.0, (300.0, 400.0), (80.0, 90.0))
    report["scenario"]["label"] = "c16"
    write(tmp_path, "gen-c16.json", report)
    [point] = load_stream_points(tmp_path)
    assert point.server["ttft"] == pytest.approx(200.0)
    assert "tpot" not in point.server
    assert "| 200.0 |  |" in summarize(tmp_path)


def test_summary_has_both_tables_and_says_when_nothing_ran(tmp_path):
    assert "nothing to compare" in summarize(tmp_path)
    write(tmp_path, "llm-baseline.json", baseline(20.0, 100.0))
    write(tmp_path, "gen-c16.json", stream("openai-chat", 16, 90.0, (300.0, 400.0), (80.0, 90.0)))
    (tmp_path / "machine.txt").write_text("load average before the run: 1.0")
    text = summarize(tmp_path)
    assert "| Python step loop, one request at a time | 12 | 600 |" in text
    assert "| openai-chat | 16 | 1.00 | 90.0 |  | 300.0 |" in text  # no samples: no full-load rate
    assert "load average before the run" in text


def samples(rows: list[tuple[float, float, int]]) -> str:
    return "".join(f"{t} {tokens} {running}\n" for t, tokens, running in rows)


def test_the_throughput_target_uses_the_rate_while_every_request_ran(tmp_path):
    """Ramp-up and drain are left out: only samples with 16 running count."""
    write(tmp_path, "llm-baseline.json", baseline(loop_tps=20.0, first_p50=100.0))
    report = stream("openai-chat", 16, 60.0, (300.0, 400.0), (80.0, 90.0))
    report["scenario"]["label"] = "openai-chat-c16"
    write(tmp_path, "gen-openai-chat-c16.json", report)
    (tmp_path / "metrics").mkdir()
    rows = [(0.0, 0, 0), (1.0, 10, 8)]  # ramp-up
    rows += [(2.0 + i, 100 + 90 * i, 16) for i in range(21)]  # 20 s at 90 tokens/s, all running
    rows += [(23.0, 1990, 15), (24.0, 2000, 12), (30.0, 2010, 0)]  # drain
    (tmp_path / "metrics" / "gen-openai-chat-c16.samples").write_text(samples(rows) + "garbage line\n")
    text = "\n".join(targets(load_stream_points(tmp_path), baseline(20.0, 100.0)))
    assert "while 16 requests ran (20.0 s, server counter): 90.0 vs 20.0 = 4.50×; target ≥ 4×: met" in text
    assert "whole point: 60.0 vs 20.0 for the single-request loop = 3.00× (ramp-up and drain included)" in text


def test_a_point_that_never_filled_up_falls_back_to_the_whole_point(tmp_path):
    report = stream("openai-chat", 16, 60.0, (300.0, 400.0), (80.0, 90.0))
    report["scenario"]["label"] = "openai-chat-c16"
    write(tmp_path, "gen-openai-chat-c16.json", report)
    (tmp_path / "metrics").mkdir()
    rows = [(float(i), 10 * i, 15) for i in range(30)] + [(30.0, 300, 16), (35.0, 350, 16)]  # 5 s at 16
    (tmp_path / "metrics" / "gen-openai-chat-c16.samples").write_text(samples(rows))
    text = "\n".join(targets(load_stream_points(tmp_path), baseline(20.0, 100.0)))
    assert "whole point: 60.0 vs 20.0 for the single-request loop = 3.00×; target ≥ 4×: MISSED" in text
    assert "while 16 requests ran" not in text


def test_the_comparison_with_vllm_gives_each_ratio_and_verdict(tmp_path):
    write(tmp_path, "cmp-modelplane-off-c16.json", stream("openai-chat", 16, 90.0, (500.0, 900.0), (120.0, 300.0)))
    write(tmp_path, "cmp-vllm-off-c16.json", stream("openai-chat", 16, 100.0, (400.0, 800.0), (100.0, 200.0)))
    write(tmp_path, "cmp-modelplane-on-c16.json", stream("openai-chat", 16, 120.0, (200.0, 900.0), (120.0, 300.0)))
    write(tmp_path, "cmp-vllm-on-c16.json", stream("openai-chat", 16, 100.0, (250.0, 800.0), (100.0, 200.0)))
    write(tmp_path, "cmp-modelplane-on-c1.json", stream("openai-chat", 1, 20.0, (90.0, 100.0), (45.0, 50.0)))
    write(tmp_path, "cmp-vllm-on-c1.json", stream("openai-chat", 1, 25.0, (100.0, 120.0), (40.0, 50.0)))
    write(tmp_path, "cmp-bogus.json", {"not": "a point"})  # not a comparison file name: ignored
    text = summarize(tmp_path)
    assert "| modelplane | off | 16 | 90.0 |" in text and "| vLLM | on | 1 | 25.0 |" in text
    assert "prefix caching off on both: 90.0 vs vLLM 100.0 = 0.90×; target ≥ 1×: MISSED" in text
    assert "prefix caching on on both: 120.0 vs vLLM 100.0 = 1.20×; target ≥ 1×: met" in text
    assert "TTFT p50 at c=16, prefix caching off: 500.0 ms vs vLLM 400.0 ms = 1.25×; target ≤ 1×: MISSED" in text
    assert "TTFT p50 at c=1, prefix caching on: 90.0 ms vs vLLM 100.0 ms = 0.90×; target ≤ 1×: met" in text


def test_a_skipped_vllm_side_says_why(tmp_path):
    write(tmp_path, "cmp-modelplane-off-c16.json", stream("openai-chat", 16, 90.0, (500.0, 900.0), (120.0, 300.0)))
    (tmp_path / "vllm-skipped.txt").write_text("vLLM skipped: BENCH_VLLM=0\n")
    text = summarize(tmp_path)
    assert "vLLM skipped: BENCH_VLLM=0" in text and "no vLLM points to compare with" in text
    # The comparison points never enter the runtime's own table and targets.
    assert load_stream_points(tmp_path) == []
