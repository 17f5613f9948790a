"""Inference through Triton's own clients: JSON and binary REST, gRPC unary and stream."""

import queue
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from harness import MIXED_TYPES, mixed_expected, mixed_inputs, mixed_names, sample

STREAM_TIMEOUT_S = 30


def assert_logits(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def http_infer(addr: str, model: str, inputs: list[np.ndarray], names, datatypes, *,
               binary: bool, version: str = "", outputs=None):
    client = httpclient.InferenceServerClient(url=addr)
    try:
        tensors = []
        for name, dtype, array in zip(names, datatypes, inputs):
            t = httpclient.InferInput(name, list(array.shape), dtype)
            t.set_data_from_numpy(array, binary_data=binary)
            tensors.append(t)
        requested = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in outputs or []]
        return client.infer(model, tensors, model_version=version, outputs=requested or None)
    finally:
        client.close()


def grpc_inputs(names, datatypes, inputs):
    tensors = []
    for name, dtype, array in zip(names, datatypes, inputs):
        t = grpcclient.InferInput(name, list(array.shape), dtype)
        t.set_data_from_numpy(array)
        tensors.append(t)
    return tensors


@pytest.mark.parametrize("binary", [False, True], ids=["json", "binary"])
def test_rest_infer_matches_the_models_sample_output(runtime, example_models, binary):
    x, expected = sample(example_models, "mlp", "1")
    result = http_infer(runtime.http_addr, "mlp", [x], ["input"], ["FP32"], binary=binary,
                        version="1", outputs=["logits"])
    assert_logits(result.as_numpy("logits"), expected)
    response = result.get_response()
    assert response["model_name"] == "mlp"
    assert response["model_version"] == "1"


def test_rest_default_version_and_outputs_when_none_are_named(runtime, example_models):
    x, expected = sample(example_models, "mlp", "1")
    result = http_infer(runtime.http_addr, "mlp", [x], ["input"], ["FP32"], binary=True)
    assert_logits(result.as_numpy("logits"), expected)


def test_each_version_serves_its_own_weights(runtime, example_models):
    # Both versions' samples share one input tensor; their weights differ.
    x, expected1 = sample(example_models, "mlp", "1")
    x2, expected2 = sample(example_models, "mlp", "2")
    assert np.array_equal(x, x2)
    result = http_infer(runtime.http_addr, "mlp", [x], ["input"], ["FP32"], binary=True,
                        version="2")
    got = result.as_numpy("logits")
    assert_logits(got, expected2)
    assert not np.allclose(got, expected1)


def test_grpc_infer_matches_the_models_sample_output(runtime, example_models):
    x, expected = sample(example_models, "mlp", "1")
    client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
    try:
        result = client.infer("mlp", grpc_inputs(["input"], ["FP32"], [x]), model_version="1",
                              outputs=[grpcclient.InferRequestedOutput("logits")],
                              request_id="req-7")
    finally:
        client.close()
    assert_logits(result.as_numpy("logits"), expected)
    assert result.get_response().id == "req-7"


def stream_results(client, requests):
    """Sends `requests` (kwargs of async_stream_infer) on one stream; returns callbacks by id."""
    answers: queue.Queue = queue.Queue()
    client.start_stream(callback=partial(lambda q, result, error: q.put((result, error)), answers))
    try:
        for kwargs in requests:
            client.async_stream_infer(**kwargs)
        got = [answers.get(timeout=STREAM_TIMEOUT_S) for _ in requests]
    finally:
        client.stop_stream()
    return got


def test_grpc_stream_answers_every_request(runtime, example_models):
    x, expected = sample(example_models, "mlp", "1")
    client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
    requests = [
        {"model_name": "mlp", "model_version": "1", "request_id": f"r{i}",
         "inputs": grpc_inputs(["input"], ["FP32"], [x[i:i + 1]])}
        for i in range(len(x))
    ]
    try:
        answers = stream_results(client, requests)
    finally:
        client.close()
    by_id = {}
    for result, error in answers:
        assert error is None, error
        by_id[result.get_response().id] = result.as_numpy("logits")
    assert sorted(by_id) == [f"r{i}" for i in range(len(x))]
    for i in range(len(x)):
        assert_logits(by_id[f"r{i}"], expected[i:i + 1])


def test_grpc_stream_reports_a_bad_request_in_band_and_stays_open(runtime, example_models):
    x, expected = sample(example_models, "mlp", "1")
    bad = np.zeros((1, 783), dtype=np.float32)
    client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
    requests = [
        {"model_name": "mlp", "request_id": "bad", "inputs": grpc_inputs(["input"], ["FP32"], [bad])},
        {"model_name": "mlp", "model_version": "1", "request_id": "good",
         "inputs": grpc_inputs(["input"], ["FP32"], [x[:1]])},
    ]
    try:
        answers = stream_results(client, requests)
    finally:
        client.close()
    errors = [error for result, error in answers if error is not None]
    results = [result for result, error in answers if error is None]
    assert len(errors) == 1
    assert "783" in errors[0].message() or "shape" in errors[0].message().lower()
    assert len(results) == 1
    assert_logits(results[0].as_numpy("logits"), expected[:1])


@pytest.mark.parametrize("protocol", ["json", "binary", "grpc"])
def test_every_datatype_round_trips(runtime, protocol):
    inputs = mixed_inputs(rows=2)
    names = mixed_names()
    datatypes = [t for t, _ in MIXED_TYPES]
    outputs = [f"out_{n}" for n in names]
    if protocol == "grpc":
        client = grpcclient.InferenceServerClient(url=runtime.grpc_addr)
        try:
            result = client.infer("mixed", grpc_inputs(names, datatypes, inputs))
        finally:
            client.close()
    else:
        result = http_infer(runtime.http_addr, "mixed", inputs, names, datatypes,
                            binary=protocol == "binary", outputs=outputs)
    for name, (datatype, np_type), want in zip(outputs, MIXED_TYPES, mixed_expected(inputs)):
        got = result.as_numpy(name)
        assert got is not None, f"{name} missing"
        assert got.dtype == np.dtype(np_type), f"{name}: {got.dtype} for {datatype}"
        np.testing.assert_array_equal(got, want, err_msg=name)


def test_concurrent_single_rows_are_batched_and_split_back_correctly(runtime, example_models):
    x, expected = sample(example_models, "mlp", "1")
    rows = [i % len(x) for i in range(32)]

    def one(i: int) -> np.ndarray:
        result = http_infer(runtime.http_addr, "mlp", [x[i:i + 1]], ["input"], ["FP32"],
                            binary=True, version="1")
        return result.as_numpy("logits")

    with ThreadPoolExecutor(max_workers=16) as pool:
        got = list(pool.map(one, rows))
    for i, logits in zip(rows, got):
        assert_logits(logits, expected[i:i + 1])
