"""The Grafana dashboards: rendered from charts/modelplane/dashboards/render.py, valid JSON
with a query in every panel, and shipped verbatim by the chart's optional ConfigMap. (That
every query names an exported metric is checked in Rust, against the running runtime and
the operator's registry: runtime/tests/dashboards.rs, operator/src/metrics.rs.)"""

import importlib.util
import json
import pathlib

import pytest
import yaml

from test_chart_values import HELM, template

DASHBOARDS = pathlib.Path(__file__).resolve().parents[1] / "modelplane" / "dashboards"
spec = importlib.util.spec_from_file_location("render_dashboards", DASHBOARDS / "render.py")
render = importlib.util.module_from_spec(spec)
spec.loader.exec_module(render)


@pytest.mark.parametrize("name", ["runtime.json", "operator.json"])
def test_dashboards_are_rendered_and_every_panel_queries(name):
    board = render.dashboards()[name]
    assert (DASHBOARDS / name).read_text() == render.text(board), "run python charts/modelplane/dashboards/render.py"
    panels = [p for p in board["panels"] if p["type"] != "row"]
    assert panels and all(p["targets"] and all(t["expr"] for t in p["targets"]) for p in panels)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"


@pytest.mark.skipif(not pathlib.Path(HELM).is_file(), reason="no helm")
def test_the_chart_ships_the_dashboards_with_the_sidecar_label():
    off = template()
    assert off.returncode == 0 and "modelplane-dashboards" not in off.stdout
    result = template("dashboards.enabled=true", 'dashboards.annotations={"grafana_folder":"modelplane"}')
    assert result.returncode == 0, result.stderr
    config_map = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "ConfigMap"
                      and d["metadata"]["name"].endswith("-dashboards"))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "modelplane"}
    for key, name in [("modelplane-runtime.json", "runtime.json"), ("modelplane-operator.json", "operator.json")]:
        assert json.loads(config_map["data"][key]) == json.loads((DASHBOARDS / name).read_text())
