# Source this file: points tch/torch-sys at the project-local libtorch (PyPI torch wheel).
# shellcheck shell=bash
MODELPLANE_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export MODELPLANE_ROOT
export MODELPLANE_VENV="$MODELPLANE_ROOT/.venv"
export LIBTORCH_USE_PYTORCH=1
export PYTHON_SYS_EXECUTABLE="$MODELPLANE_VENV/bin/python"
# torch-sys finds libtorch through `python` on PATH when LIBTORCH_USE_PYTORCH is set.
case ":$PATH:" in
  *":$MODELPLANE_VENV/bin:"*) ;;
  *) export PATH="$MODELPLANE_VENV/bin:$PATH" ;;
esac
export HF_HUB_OFFLINE=1
export TRANSFORMERS_OFFLINE=1
