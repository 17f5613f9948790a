"""Fixtures that run examples/make_models.py into temporary folders."""

from __future__ import annotations

from pathlib import Path

import pytest
from made_models import SMALL_MODELS, run_script


@pytest.fixture(scope="session")
def small_models(tmp_path_factory) -> Path:
    """The classifier, MLP and tiny LM, made once for the session."""
    out = tmp_path_factory.mktemp("small-models")
    run_script(out, "--only", *SMALL_MODELS)
    return out


@pytest.fixture(scope="session")
def minilm_models(tmp_path_factory) -> Path:
    """The traced MiniLM model, made once for the session (about 10 s)."""
    out = tmp_path_factory.mktemp("minilm")
    run_script(out, "--only", "minilm")
    return out


def pytest_configure(config):
    # TorchScript is deprecated upstream but is the format modelplane serves (DESIGN §6).
    config.addinivalue_line("filterwarnings", "ignore:`torch.jit.:DeprecationWarning")
