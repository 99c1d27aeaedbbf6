"""Errors raised outside the chat views (out of credits, oversized bodies, wrong routes) come
in the envelope of the API family the path belongs to."""

from decimal import Decimal

import pytest
import requests

from tests.conftest import every_provider_type, make_user


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream), "MAX_CONTENT_LENGTH": 2000}


ANTHROPIC = ("/v1/messages", {"model": "gpt-test", "max_tokens": 10,
                              "messages": [{"role": "user", "content": "x"}]})
GEMINI = ("/v1beta/models/claude-test:generateContent",
          {"contents": [{"parts": [{"text": "x"}]}]})


def test_out_of_credits(app, gateway, upstream):
    _, key = make_user(app, "poor", credits=Decimal("0.001"))
    resp = requests.post(gateway + ANTHROPIC[0], json=ANTHROPIC[1], headers={"x-api-key": key})
    assert resp.status_code == 402
    assert resp.json()["error"]["type"] == "billing_error" and resp.json()["type"] == "error"
    resp = requests.post(gateway + GEMINI[0], json=GEMINI[1], headers={"x-goog-api-key": key})
    assert resp.status_code == 402 and resp.json()["error"]["code"] == 402
    assert upstream.received == []


@pytest.mark.parametrize("path, body, check", [
    (ANTHROPIC[0], ANTHROPIC[1], lambda e: e["error"]["type"] == "request_too_large"),
    (GEMINI[0], GEMINI[1], lambda e: e["error"]["status"] == "INVALID_ARGUMENT"),
    ("/v1/models/gemini-test:generateContent", GEMINI[1],
     lambda e: e["error"]["status"] == "INVALID_ARGUMENT"),
])
def test_oversized_body(gateway, api_key, upstream, path, body, check):
    big = {**body, "padding": "x" * 5000}
    resp = requests.post(gateway + path, json=big, headers={"x-api-key": api_key})
    assert resp.status_code == 413 and check(resp.json())
    assert upstream.received == []


def test_wrong_methods_and_routes(gateway, api_key):
    resp = requests.get(f"{gateway}/v1beta/models/gpt-test:generateContent",
                        headers={"x-goog-api-key": api_key})
    assert resp.status_code in (404, 405) and "status" in resp.json()["error"]
    resp = requests.delete(f"{gateway}/api/v1/messages", headers={"x-api-key": api_key})
    assert resp.status_code == 405 and resp.json()["type"] == "error"
    resp = requests.get(f"{gateway}/v1/nothing", headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "invalid_request_error"
