"""bench/bf16_compare.py on the tiny model: a model against itself, and against its bfloat16 export."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "bench"))

import bf16_compare  # noqa: E402

MODELS = ROOT / "examples" / "models"
PROMPTS = ["Hi", "What is the capital of France?"]


def test_a_model_against_itself_is_identical_and_as_fast():
    tiny = bf16_compare.ChatModel(MODELS / "tiny-llama")
    report = bf16_compare.compare(tiny, tiny, PROMPTS, max_tokens=4)
    assert report["identical_answers"] == 2 and report["first_difference_at"] == []
    assert report["first_step_logits"]["max_abs_diff_over_range"] == 0.0
    assert report["dtypes"] == {"reference": "float32", "candidate": "float32"}
    assert "identical answers: 2 of 2" in bf16_compare.summary(report)


def test_the_bfloat16_export_differs_by_its_rounding_only():
    report = bf16_compare.compare(bf16_compare.ChatModel(MODELS / "tiny-llama"),
                                  bf16_compare.ChatModel(MODELS / "tiny-llama-bf16"), PROMPTS, max_tokens=4)
    assert report["dtypes"]["candidate"] == "bfloat16"
    logits = report["first_step_logits"]
    assert 0.0 < logits["max_abs_diff_over_range"] < 0.05
    assert report["decode_step_ms"]["candidate"] > 0.0


def test_a_folder_that_is_no_export_is_refused(tmp_path, capsys):
    assert bf16_compare.main(["--candidate", str(tmp_path)]) == 2
    assert "is not an export" in capsys.readouterr().err
