"""docs/api-reference.md is what crds/reference.py writes from the checked-in CRDs (which a
Rust test keeps equal to the Rust types): the reference cannot drift from the API."""

import importlib.util
import pathlib

ROOT = pathlib.Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("reference", ROOT / "crds" / "reference.py")
reference = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reference)


def test_the_api_reference_is_generated_from_the_crds():
    assert (ROOT / "docs" / "api-reference.md").read_text() == reference.page(), (
        "run python crds/reference.py and commit docs/api-reference.md"
    )


def test_every_spec_field_is_in_the_reference():
    page = reference.page()
    for path in ["spec.runtime.replicas", "spec.analysis.minSamples", "spec.hard.cpu", "status.promotion.changes"]:
        assert f"`{path}`" in page, path
