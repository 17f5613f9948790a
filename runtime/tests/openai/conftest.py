"""One runtime serving tiny-llama, SmolLM2 and MiniLM, and `openai` clients for it.

The runtime is the real binary (`target/debug/modelplane-runtime`, or
`$MODELPLANE_RUNTIME_BIN`) started by the interop harness on free 127.0.0.1 ports;
it is stopped when the session ends.
"""

from __future__ import annotations

import sys
from pathlib import Path

import openai
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "interop"))

from harness import MODELS, Runtime, model_entry  # noqa: E402
from openai_probes import (  # noqa: E402
    DEADLINE_TIMEOUT_S,
    MINILM,
    SMOL,
    SMOL_CONTEXT,
    TINY,
    TINY_CONTEXT,
    TINY_DEADLINE,
    TINY_SLOTS,
)

CLIENT_TIMEOUT_S = 120


def models_config() -> list[dict]:
    return [
        model_entry(
            TINY,
            {"1": MODELS / "tiny-llama"},
            task="generate",
            generation={"slots": TINY_SLOTS, "context": TINY_CONTEXT, "maxWaiting": 16},
            limits={"requestTimeout": "120s"},
        ),
        model_entry(
            TINY_DEADLINE,
            {"1": MODELS / "tiny-llama"},
            task="generate",
            generation={"slots": 2, "context": TINY_CONTEXT},
            limits={"requestTimeout": f"{int(DEADLINE_TIMEOUT_S * 1000)}ms"},
        ),
        model_entry(
            SMOL,
            {"1": MODELS / "smollm2"},
            task="generate",
            generation={"slots": 2, "context": SMOL_CONTEXT},
            limits={"requestTimeout": "300s"},
        ),
        model_entry(
            MINILM,
            {"1": MODELS / "minilm" / "1" / "model.pt"},
            task="embed",
            limits={"maxElements": 4096},
        ),
    ]


@pytest.fixture(scope="session")
def runtime(tmp_path_factory):
    for folder in ("tiny-llama", "smollm2", "minilm/1"):
        if not (MODELS / folder / "model.pt").exists():
            pytest.fail(f"examples/models/{folder} is missing: run examples/make_chat_model.py / make_models.py")
    rt = Runtime(workdir=tmp_path_factory.mktemp("openai-runtime"), config={"models": models_config()})
    try:
        yield rt.start()
    finally:
        rt.stop()


@pytest.fixture(scope="session")
def client(runtime) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"{runtime.http_url}/v1", api_key="unused", max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
