"""Bad generation requests get a clear 4xx in OpenAI's error shape: 400 for input that
cannot be understood, 404 for an unknown model, 422 for invalid generation parameters."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import openai
import pytest
from openai_probes import SMOL, TINY, TINY_CONTEXT

CHAT = [{"role": "user", "content": "hi"}]


def completion_error(client, **kwargs) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        client.completions.create(**{"model": TINY, "prompt": "hi", "max_tokens": 4, **kwargs})
    return caught.value


def chat_error(client, **kwargs) -> openai.APIStatusError:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(**{"model": SMOL, "messages": CHAT, "max_tokens": 4, **kwargs})
    return caught.value


def assert_error(err: openai.APIStatusError, status: int, param: str | None = None) -> None:
    assert err.status_code == status, err.body
    assert err.body["message"], err.body
    assert err.body["type"] == "invalid_request_error"
    if param is not None:
        assert err.body["param"] == param, err.body


@pytest.mark.parametrize(
    "kwargs, param",
    [
        (dict(max_tokens=0), "max_tokens"),
        (dict(max_tokens=-5), "max_tokens"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=1.5), "top_p"),
        (dict(top_k=-3), "top_k"),
        (dict(repetition_penalty=0), "repetition_penalty"),
        (dict(n=2), "n"),
        (dict(logprobs=2), "logprobs"),
        (dict(presence_penalty=1.0), "presence_penalty"),
        (dict(stop=[""]), "stop"),
    ],
    ids=lambda v: json.dumps(v) if isinstance(v, dict) else str(v),
)
def test_invalid_generation_parameters_are_422_naming_the_parameter(client, kwargs, param):
    extra = {k: kwargs.pop(k) for k in ("top_k", "repetition_penalty") if k in kwargs}
    assert_error(completion_error(client, extra_body=extra or None, **kwargs), 422, param)


def test_an_empty_prompt_is_400(client):
    assert_error(completion_error(client, prompt=""), 400, "prompt")
    assert_error(completion_error(client, prompt=[]), 400, "prompt")


def test_a_prompt_longer_than_the_context_is_400(client):
    too_long = [5] * (TINY_CONTEXT + 10)
    err = completion_error(client, prompt=too_long, max_tokens=None)
    assert_error(err, 400, "prompt")
    # OpenAI's code, which clients look for to shorten the conversation.
    assert err.body["code"] == "context_length_exceeded"
    fits_alone = [5] * (TINY_CONTEXT - 2)
    err = completion_error(client, prompt=fits_alone, max_tokens=8)
    assert_error(err, 400, "max_tokens")
    assert err.body["code"] == "context_length_exceeded"
    assert str(TINY_CONTEXT) in err.body["message"]


def test_token_ids_outside_the_vocabulary_are_400(client):
    assert_error(completion_error(client, prompt=[1, 10**9]), 400, "prompt")


def test_an_unknown_model_is_404(client):
    err = completion_error(client, model="no-such-model")
    assert_error(err, 404, "model")
    assert err.body["code"] == "model_not_found"
    assert_error(chat_error(client, model=f"{SMOL}:99"), 404)


@pytest.mark.parametrize(
    "messages",
    [
        [],
        [{"role": "wizard", "content": "hi"}],
        [{"role": "user"}],
        [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
        [{"content": "no role"}],
        "not a list",
    ],
    ids=["empty", "unknown-role", "no-content", "image-part", "no-role", "not-a-list"],
)
def test_malformed_messages_are_400(client, messages):
    assert_error(chat_error(client, messages=messages), 400)


def test_unsupported_chat_features_are_422(client):
    assert_error(chat_error(client, logprobs=True), 422, "logprobs")
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    assert_error(chat_error(client, tools=tools), 422, "tools")


def test_chat_on_an_embedding_model_is_400(client):
    assert_error(chat_error(client, model="minilm"), 400)


def test_a_body_that_is_not_json_is_400_in_openais_shape(runtime):
    request = urllib.request.Request(
        f"{runtime.http_url}/v1/chat/completions",
        data=b"{not json",
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == 400
    body = json.loads(caught.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert "malformed" in body["error"]["message"]


def test_a_body_over_the_limit_is_413_in_openais_shape(runtime):
    prompt = "hello world " * ((3 << 20) // 12)
    request = urllib.request.Request(
        f"{runtime.http_url}/v1/completions",
        data=json.dumps({"model": TINY, "prompt": prompt}).encode(),
        headers={"content-type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=30)
    assert caught.value.code == 413
    body = json.loads(caught.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert body["error"]["code"] == "request_too_large"
    assert "MiB" in body["error"]["message"]


@pytest.mark.parametrize(
    "method, path, status",
    [
        ("POST", "/v1/responses", 404),
        ("GET", "/v1/models/org/name", 404),
        ("GET", "/v1/completions", 405),
        ("DELETE", "/v1/models/x", 405),
    ],
)
def test_unknown_routes_and_methods_answer_in_openais_shape(runtime, method, path, status):
    request = urllib.request.Request(f"{runtime.http_url}{path}", data=b"{}", method=method)
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request, timeout=10)
    assert caught.value.code == status
    error = json.loads(caught.value.read())["error"]
    assert error["type"] == "invalid_request_error"
    assert path in error["message"] and "/v1/chat/completions" in error["message"]
