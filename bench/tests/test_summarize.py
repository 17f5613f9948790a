"""bench/summarize.py: tables and target verdicts from a folder of reports."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from summarize import load_points, server_side, summarize, targets  # noqa: E402


def report(rps: float, p50: float, p99: float, rows: int = 1, errors=None) -> dict:
    return {"throughput_rps": rps, "rows_per_s": rps * rows, "ok": 100, "errors": errors or {},
            "latency_us": {"p50": p50, "p90": p50, "p99": p99, "max": p99, "min": 1, "mean": p50}}


def write(folder: Path, name: str, content) -> None:
    (folder / name).write_text(json.dumps(content))


def plain(rows: list[tuple[int, float, float]]) -> list[dict]:
    return [{"batch": b, "iterations": 10, "rows_per_s": r, "p50_us": p, "p90_us": p,
             "p99_us": p, "max_us": p} for b, r, p in rows]


def test_targets_compare_against_the_right_baselines(tmp_path):
    write(tmp_path, "plain-classifier.json", plain([(1, 800, 1250), (16, 1000, 16000)]))
    write(tmp_path, "plain-mlp.json", plain([(1, 13000, 75), (64, 110000, 580)]))
    write(tmp_path, "modelplane-classifier-grpc-c64.json", report(900, 60000, 90000))
    write(tmp_path, "modelplane-classifier-grpc-c1.json", report(700, 1500, 1600))
    write(tmp_path, "modelplane-mlp-rest-json-c64.json", report(9000, 6000, 9000))
    write(tmp_path, "modelplane-mlp-grpc-c1.json", report(5000, 180, 250))
    write(tmp_path, "modelplane-mlp-rest-binary-c1.json", report(4000, 300, 400))
    write(tmp_path, "kserve-mlp-rest-json-c64.json", report(760, 80000, 150000))
    lines = targets(load_points(tmp_path), {
        "classifier": plain([(1, 800, 1250), (16, 1000, 16000)]),
        "mlp": plain([(1, 13000, 75), (64, 110000, 580)]),
    })
    text = "\n".join(lines)
    assert "classifier c=64 grpc: 900 rows/s = 90% of the plain loop's best (1,000 rows/s at batch 16)" in text
    assert "target ≥ 85%: met" in text
    assert "mlp c=64 rest-json vs KServe REST JSON: 11.8× throughput" in text
    assert "mlp c=1 grpc: p50 180 µs vs plain forward 75 µs = +105 µs; target ≤ +150 µs: met" in text
    assert "mlp c=1 rest-binary: p50 300 µs vs plain forward 75 µs = +225 µs; target ≤ +150 µs: MISSED" in text
    assert "classifier c=1 grpc: p50 1,500 µs vs plain forward 1,250 µs = +250 µs" in text


def test_lower_throughput_or_higher_p99_than_kserve_misses(tmp_path):
    write(tmp_path, "modelplane-mlp-grpc-c64.json", report(20000, 500, 200000))
    write(tmp_path, "kserve-mlp-rest-json-c64.json", report(760, 80000, 150000))
    (line,) = targets(load_points(tmp_path), {})
    assert line.endswith("MISSED"), line


def test_summary_lists_every_point_and_errors(tmp_path):
    write(tmp_path, "plain-mlp.json", plain([(1, 13000, 75)]))
    write(tmp_path, "modelplane-mlp-rest-json-c8.json", report(5000, 1000, 2000, errors={"503": 3}))
    write(tmp_path, "kserve-mlp-rest-json-c8.json", report(700, 9000, 30000))
    write(tmp_path, "runtime.yaml.json", {"ignored": True})
    text = summarize(tmp_path)
    assert "| mlp | modelplane | rest-json | 8 | 5,000 |" in text
    assert "| mlp | kserve | rest-json | 8 | 700 | 9,000 | 9,000 | 30,000 | 30,000 | 100 | 0 |  |  |  |  |" in text
    assert "503: 3" in text
    assert "| mlp | 1 | 13,000 | 75.0 | 75.0 |" in text


def prom(request, queue, forward, batch_sum, batches, other_model_sum=99.0) -> str:
    return "\n".join([
        "# HELP modelplane_request_duration_seconds x",
        f'modelplane_request_duration_seconds_sum{{model="mlp",version="1"}} {request[0]}',
        f'modelplane_request_duration_seconds_count{{model="mlp",version="1"}} {request[1]}',
        f'modelplane_request_duration_seconds_sum{{model="classifier",version="1"}} {other_model_sum}',
        f'modelplane_request_duration_seconds_count{{model="classifier",version="1"}} 7',
        f'modelplane_queue_duration_seconds_sum{{model="mlp",version="1"}} {queue[0]}',
        f'modelplane_queue_duration_seconds_count{{model="mlp",version="1"}} {queue[1]}',
        f'modelplane_compute_duration_seconds_sum{{model="mlp",version="1"}} {forward[0]}',
        f'modelplane_compute_duration_seconds_count{{model="mlp",version="1"}} {forward[1]}',
        f'modelplane_batch_size_sum{{model="mlp",version="1"}} {batch_sum}',
        f'modelplane_batch_size_count{{model="mlp",version="1"}} {batches}',
        'modelplane_request_duration_seconds_bucket{model="mlp",version="1",le="0.001"} 5',
    ]) + "\n"


def test_server_side_means_come_from_the_difference_of_two_scrapes(tmp_path):
    metrics = tmp_path / "metrics"
    metrics.mkdir()
    (metrics / "p.before.prom").write_text(prom((1.0, 1000), (0.1, 1000), (0.5, 250), 1000, 250))
    (metrics / "p.after.prom").write_text(
        prom((1.3, 2000), (0.12, 2000), (0.6, 350), 2000, 350, other_model_sum=500.0))
    means = server_side(tmp_path, "p", "mlp")
    assert round(means["request_us"]) == 300
    assert round(means["queue_us"]) == 20
    assert round(means["forward_us"]) == 1000
    assert means["batch"] == 10.0


def test_server_side_is_empty_without_scrapes(tmp_path):
    assert server_side(tmp_path, "p", "mlp") == {}


def test_the_c1_report_shows_the_noop_floor_apart_from_the_forward(tmp_path):
    write(tmp_path, "modelplane-mlp-grpc-c1.json", report(5000, 180, 250))
    write(tmp_path, "modelplane-noop-grpc-c1.json", report(9000, 90, 120))
    lines = targets(load_points(tmp_path), {"mlp": plain([(1, 13000, 75)])})
    text = "\n".join(lines)
    assert "mlp c=1 grpc: p50 180 µs vs plain forward 75 µs = +105 µs" in text
    assert ("mlp c=1 grpc, apart from the floor: the noop model (same shapes, no compute, same "
            "server and client) p50 90 µs; the rest, +15 µs, is the forward running slower") in text
    assert "rest-binary, apart from the floor" not in text
