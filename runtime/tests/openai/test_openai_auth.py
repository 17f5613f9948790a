"""The `openai` client against a runtime with API keys and JWT configured: a missing or
unknown key raises AuthenticationError (401, `invalid_api_key`), a configured key or a
valid token is served, and a valid token that names no tenant raises
PermissionDeniedError (403). Its own runtime: the session one has no identity config."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import openai
import pytest
from harness import MODELS, Runtime, model_entry
from openai_probes import TINY

KEY = "sk-interop-team-a-0123456789"
SECRET = b"interop-test-hs256-secret-0123456789abcdef"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(claims: dict) -> str:
    """An HS256 JWT signed with SECRET under kid `hs`."""
    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "hs"}).encode())
    payload = b64(json.dumps(claims).encode())
    signature = hmac.new(SECRET, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{b64(signature)}"


@pytest.fixture(scope="module")
def secured(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("auth-runtime")
    keys = workdir / "keys"
    keys.write_text(f"# test keys\nteam-a:{KEY}\n")
    secret = workdir / "secret"
    secret.write_bytes(SECRET)
    config = {
        "identity": {
            "apiKeys": {"file": str(keys)},
            "jwt": {"keys": [{"id": "hs", "algorithm": "HS256", "file": str(secret)}]},
        },
        "models": [
            model_entry(TINY, {"1": MODELS / "tiny-llama"}, task="generate", generation={"slots": 2, "context": 256})
        ],
    }
    rt = Runtime(workdir=workdir, config=config)
    try:
        yield rt.start()
    finally:
        rt.stop()


def client(runtime: Runtime, api_key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{runtime.http_url}/v1", api_key=api_key, max_retries=0, timeout=60)


def complete(runtime: Runtime, api_key: str):
    return client(runtime, api_key).completions.create(model=TINY, prompt="Once upon", max_tokens=2)


@pytest.mark.parametrize("api_key", ["sk-wrong", "EMPTY"])
def test_an_unknown_key_is_an_authentication_error(secured, api_key):
    with pytest.raises(openai.AuthenticationError) as caught:
        complete(secured, api_key)
    err = caught.value
    assert err.status_code == 401
    assert err.body["type"] == "authentication_error", err.body
    assert err.body["code"] == "invalid_api_key", err.body
    assert err.body["message"] == "unknown API key"
    assert api_key not in err.body["message"]
    assert "invalid_token" in err.response.headers["www-authenticate"]


def test_a_configured_key_and_a_valid_token_are_served(secured):
    assert complete(secured, KEY).choices[0].text is not None
    token = hs256({"exp": int(time.time()) + 600, "tenant": "team-b"})
    assert complete(secured, token).usage.completion_tokens >= 1


def test_expired_and_tenantless_tokens_are_refused(secured):
    with pytest.raises(openai.AuthenticationError) as caught:
        complete(secured, hs256({"exp": int(time.time()) - 3600, "tenant": "team-b"}))
    assert caught.value.body["message"].startswith("token expired at "), caught.value.body
    with pytest.raises(openai.PermissionDeniedError) as caught:
        complete(secured, hs256({"exp": int(time.time()) + 600}))
    assert caught.value.status_code == 403
    assert "tenant" in caught.value.body["message"]


@pytest.fixture(scope="module")
def budgeted(tmp_path_factory):
    """Tenant team-a may send 1 request per second (burst 1)."""
    workdir = tmp_path_factory.mktemp("budget-runtime")
    keys = workdir / "keys"
    keys.write_text(f"team-a:{KEY}\n")
    config = {
        "identity": {"apiKeys": {"file": str(keys)}},
        "tenants": [{"name": "team-a", "requests": {"perSecond": 1, "burst": 1}}],
        "models": [
            model_entry(TINY, {"1": MODELS / "tiny-llama"}, task="generate", generation={"slots": 2, "context": 256})
        ],
    }
    rt = Runtime(workdir=workdir, config=config)
    try:
        yield rt.start()
    finally:
        rt.stop()


def test_over_budget_is_a_rate_limit_error_with_retry_after(budgeted):
    time.sleep(1.1)  # a full bucket
    complete(budgeted, KEY)
    with pytest.raises(openai.RateLimitError) as caught:
        complete(budgeted, KEY)
    err = caught.value
    assert err.status_code == 429
    assert err.body["code"] == "rate_limit_exceeded", err.body
    assert "team-a" in err.body["message"], err.body
    assert err.response.headers["retry-after"] == "1"
    assert 0 < int(err.response.headers["retry-after-ms"]) <= 1000


def test_the_client_retries_after_the_time_the_runtime_gave(budgeted):
    time.sleep(1.1)
    complete(budgeted, KEY)
    started = time.monotonic()
    retrying = openai.OpenAI(base_url=f"{budgeted.http_url}/v1", api_key=KEY, max_retries=2, timeout=60)
    retrying.completions.create(model=TINY, prompt="Once upon", max_tokens=2)
    waited = time.monotonic() - started
    assert 0.3 < waited < 5, f"the client waited {waited:.2f}s for the bucket to refill"
