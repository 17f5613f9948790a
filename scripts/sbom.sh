#!/usr/bin/env bash
# CycloneDX SBOMs (JSON, spec 1.5) of the workspace's binaries into target/sbom/, then a
# well-formedness check of each: valid JSON, bomFormat CycloneDX, specVersion, a non-empty
# component list, and the binary's own crate as metadata.component. The operator and the
# runtime SBOMs must be present.
#
# Usage: scripts/sbom.sh            (installs cargo-cyclonedx 0.5.9 with --locked if missing)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="$root/target/sbom"
cyclonedx_version="0.5.9"
required=(modelplane-operator modelplane-runtime)

if ! cargo cyclonedx --version >/dev/null 2>&1; then
    cargo install cargo-cyclonedx --version "$cyclonedx_version" --locked
fi

mkdir -p "$out"
stamp="$(mktemp)"
trap 'rm -f "$stamp"' EXIT
# Reproducible timestamps; the tool writes <bin>_bin.cdx.json beside each package's manifest.
SOURCE_DATE_EPOCH="${SOURCE_DATE_EPOCH:-0}" cargo cyclonedx \
    --manifest-path "$root/Cargo.toml" --format json --spec-version 1.5 \
    --describe binaries --no-build-deps --quiet
while IFS= read -r -d '' file; do
    mv -f "$file" "$out/$(basename "$file")"
done < <(find "$root" \( -path "$root/target" -o -path "$root/.venv" -o -path "$root/.git" \) -prune -o -name '*_bin.cdx.json' -newer "$stamp" -print0)

"$root/.venv/bin/python" - "$out" "${required[@]}" <<'PY'
"""Checks that each CycloneDX SBOM in argv[1] is well formed and that argv[2:] are present."""
import json
import pathlib
import sys

out = pathlib.Path(sys.argv[1])
required = sys.argv[2:]
problems = []
checked = []
for path in sorted(out.glob("*_bin.cdx.json")):
    crate = path.name.removesuffix("_bin.cdx.json")
    try:
        bom = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problems.append(f"{path.name}: not JSON: {error}")
        continue
    if bom.get("bomFormat") != "CycloneDX":
        problems.append(f"{path.name}: bomFormat is {bom.get('bomFormat')!r}")
    if bom.get("specVersion") not in {"1.3", "1.4", "1.5", "1.6"}:
        problems.append(f"{path.name}: specVersion is {bom.get('specVersion')!r}")
    components = bom.get("components") or []
    if not components or not all(c.get("name") and c.get("version") for c in components):
        problems.append(f"{path.name}: components empty or missing name/version")
    component = (bom.get("metadata") or {}).get("component") or {}
    if component.get("name") != crate or component.get("type") != "application":
        problems.append(f"{path.name}: metadata.component is {component.get('name')!r}, not {crate}")
    checked.append(f"{path.relative_to(out.parent.parent)} ({len(components)} components)")
for crate in required:
    if not (out / f"{crate}_bin.cdx.json").exists():
        problems.append(f"no SBOM for {crate}")
if problems:
    sys.exit("SBOM check failed:\n  " + "\n  ".join(problems))
print("SBOMs well formed:\n  " + "\n  ".join(checked))
PY
