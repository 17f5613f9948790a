"""Health and metadata through Triton's own clients, over REST and gRPC."""

import time

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from harness import Runtime, http_get, model_entry

MLP_INPUTS = [{"name": "input", "datatype": "FP32", "shape": [-1, 784]}]
MLP_OUTPUTS = [{"name": "logits", "datatype": "FP32", "shape": [-1, 10]}]


@pytest.fixture
def http(runtime):
    client = httpclient.InferenceServerClient(url=runtime.http_addr)
    yield client
    client.close()


@pytest.fixture
def grpc(runtime):
    client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
    yield client
    client.close()


def test_server_is_live_and_ready_over_both_protocols(http, grpc):
    assert http.is_server_live()
    assert http.is_server_ready()
    assert grpc.is_server_live()
    assert grpc.is_server_ready()


def test_server_metadata_agrees_across_protocols(http, grpc):
    rest = http.get_server_metadata()
    over_grpc = grpc.get_server_metadata(as_json=True)
    assert rest["name"]
    assert rest["version"]
    assert over_grpc["name"] == rest["name"]
    assert over_grpc["version"] == rest["version"]
    assert sorted(over_grpc.get("extensions", [])) == sorted(rest.get("extensions", []))


def test_rest_model_metadata_lists_versions_and_signature(http):
    meta = http.get_model_metadata("mlp")
    assert meta["name"] == "mlp"
    assert {"1", "2"} <= set(meta["versions"])
    assert meta["inputs"] == MLP_INPUTS
    assert meta["outputs"] == MLP_OUTPUTS


def test_grpc_model_metadata_matches_rest(http, grpc):
    rest = http.get_model_metadata("mlp", model_version="2")
    meta = grpc.get_model_metadata("mlp", model_version="2", as_json=True)
    assert meta["name"] == "mlp"
    assert set(meta["versions"]) == set(rest["versions"])
    # The protobuf JSON form writes int64 dimensions as strings.
    shapes = [[int(d) for d in t["shape"]] for t in meta["inputs"]]
    assert [t["name"] for t in meta["inputs"]] == ["input"]
    assert [t["datatype"] for t in meta["inputs"]] == ["FP32"]
    assert shapes == [[-1, 784]]
    assert [t["name"] for t in meta["outputs"]] == ["logits"]


@pytest.mark.parametrize("version", ["", "1", "2"])
def test_served_versions_are_ready(http, grpc, version):
    assert http.is_model_ready("mlp", model_version=version)
    assert grpc.is_model_ready("mlp", model_version=version)


def grpc_ready_or_not_found(grpc, model: str, version: str = "") -> bool:
    """Triton answers ModelReady for an unknown model with NOT_FOUND; ready=false is fine too."""
    try:
        return grpc.is_model_ready(model, model_version=version)
    except grpcclient.InferenceServerException as e:
        assert "NOT_FOUND" in str(e.status()), e
        return False


def test_unknown_models_and_versions_are_not_ready(http, grpc):
    assert not http.is_model_ready("no-such-model")
    assert not http.is_model_ready("mlp", model_version="99")
    assert not grpc_ready_or_not_found(grpc, "no-such-model")
    assert not grpc_ready_or_not_found(grpc, "mlp", "99")


def test_unknown_model_metadata_is_an_error_naming_the_model(http, grpc):
    with pytest.raises(httpclient.InferenceServerException) as rest:
        http.get_model_metadata("no-such-model")
    assert "no-such-model" in rest.value.message()
    with pytest.raises(grpcclient.InferenceServerException) as over_grpc:
        grpc.get_model_metadata("no-such-model")
    assert "NOT_FOUND" in str(over_grpc.value.status())


def test_server_is_not_ready_before_its_models(tmp_path, example_models):
    rt = Runtime(workdir=tmp_path, config={"models": [
        model_entry("mlp", {"1": example_models / "mlp/1/model.pt"}),
    ]})
    rt.start_process()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                server_ready = http_get(f"{rt.http_url}/v2/health/ready", timeout=1.0)[0] == 200
            except OSError:
                server_ready = False
            if server_ready:
                break
            time.sleep(0.02)
        assert server_ready, rt.log_text()
        assert http_get(f"{rt.http_url}/v2/models/mlp/ready")[0] == 200
    finally:
        rt.stop()
