"""Bad requests get a clear 4xx with `{"error": ...}` (or the matching gRPC code),
and the server keeps serving good requests afterwards."""

import http.client
import json
import urllib.error
import urllib.parse
import urllib.request

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from harness import MAX_BODY_BYTES, mixed_names

ROW = [0.0] * 784


def infer_json(name="input", shape=(1, 784), datatype="FP32", data=ROW) -> bytes:
    return json.dumps(
        {"inputs": [{"name": name, "shape": list(shape), "datatype": datatype, "data": data}]}
    ).encode()


def binary_body(shape, raw: bytes, declared: int | None = None) -> tuple[bytes, dict]:
    header = json.dumps({"inputs": [{
        "name": "input", "shape": list(shape), "datatype": "FP32",
        "parameters": {"binary_data_size": len(raw) if declared is None else declared},
    }]}).encode()
    headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(len(header)),
    }
    return header + raw, headers


def post(url: str, body: bytes, headers: dict | None = None) -> tuple[int, bytes]:
    """POSTs and returns the answer, even one sent before the body was read
    (a server refusing an oversize body may close while the client still writes)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        try:
            conn.request("POST", parts.path, body=body,
                         headers=headers or {"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            pass
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def assert_error(status: int, body: bytes, expected: int, *mentions: str) -> str:
    assert status == expected, body
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message
    for word in mentions:
        assert word in message, message
    return message


@pytest.fixture(autouse=True)
def server_still_serves(runtime):
    """After every bad request, a good one still succeeds on the same process."""
    yield
    status, body = post(f"{runtime.http_url}/v2/models/mlp/infer", infer_json())
    assert status == 200, body
    assert len(json.loads(body)["outputs"][0]["data"]) == 10
    assert runtime.alive()


def truncated_binary():
    return binary_body((1, 784), b"\0" * 100, declared=784 * 4)


def header_past_body():
    body, headers = binary_body((1, 784), b"\0" * 784 * 4)
    headers["Inference-Header-Content-Length"] = str(len(body) + 10)
    return body, headers


def too_many_elements():
    # 300 x 784 FP32 is under the body limit but over maxElements (200,000).
    return binary_body((300, 784), np.zeros((300, 784), np.float32).tobytes())


REST_CASES = {
    "wrong shape": (infer_json(shape=(1, 783), data=[0.0] * 783), None, 400, ["783"]),
    "wrong datatype": (infer_json(datatype="FP64"), None, 400, ["FP64"]),
    "unknown input name": (infer_json(name="nope"), None, 400, ["nope"]),
    "data does not fill the shape": (infer_json(data=[0.0] * 10), None, 400, []),
    "non-numeric data": (infer_json(data=["x"] * 784), None, 400, []),
    "malformed json": (b'{"inputs": [', None, 400, []),
    "empty body": (b"", None, 400, []),
    "oversize body": (b"{" + b" " * (MAX_BODY_BYTES + 1024) + b"}", None, 413, []),
    "too many elements": (*too_many_elements(), 413, []),
    "truncated binary section": (*truncated_binary(), 400, []),
    "header length past the body": (*header_past_body(), 400, []),
}


@pytest.mark.parametrize("case", REST_CASES, ids=list(REST_CASES))
def test_bad_rest_request_is_a_clear_4xx(runtime, case):
    body, headers, expected, mentions = REST_CASES[case]
    status, answer = post(f"{runtime.http_url}/v2/models/mlp/infer", body, headers)
    assert_error(status, answer, expected, *mentions)


def test_missing_input_is_named(runtime):
    names = mixed_names()
    present = {"name": names[0], "shape": [1, 3], "datatype": "FP64", "data": [1.0, 2.0, 3.0]}
    status, answer = post(f"{runtime.http_url}/v2/models/mixed/infer",
                          json.dumps({"inputs": [present]}).encode())
    assert_error(status, answer, 400, names[1])


@pytest.mark.parametrize("path", ["/v2/models/no-such-model/infer",
                                  "/v2/models/mlp/versions/99/infer"])
def test_unknown_model_or_version_is_404(runtime, path):
    status, answer = post(f"{runtime.http_url}{path}", infer_json())
    assert_error(status, answer, 404)


def test_unknown_model_metadata_is_404(runtime):
    request = urllib.request.Request(f"{runtime.http_url}/v2/models/no-such-model")
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(request, timeout=10)
    assert_error(e.value.code, e.value.read(), 404, "no-such-model")


def grpc_status(runtime, model: str, array: np.ndarray, datatype="FP32", version="") -> str:
    client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
    try:
        t = grpcclient.InferInput("input", list(array.shape), datatype)
        t.set_data_from_numpy(array)
        with pytest.raises(grpcclient.InferenceServerException) as e:
            client.infer(model, [t], model_version=version)
        return str(e.value.status())
    finally:
        client.close()


def test_grpc_wrong_shape_is_invalid_argument(runtime):
    assert "INVALID_ARGUMENT" in grpc_status(runtime, "mlp", np.zeros((1, 783), np.float32))


def test_grpc_wrong_datatype_is_invalid_argument(runtime):
    status = grpc_status(runtime, "mlp", np.zeros((1, 784), np.float64), datatype="FP64")
    assert "INVALID_ARGUMENT" in status


def test_grpc_unknown_model_and_version_are_not_found(runtime):
    row = np.zeros((1, 784), np.float32)
    assert "NOT_FOUND" in grpc_status(runtime, "no-such-model", row)
    assert "NOT_FOUND" in grpc_status(runtime, "mlp", row, version="99")
