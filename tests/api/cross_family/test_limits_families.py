"""Plans and rate limits hold on the Anthropic and Gemini endpoints as on the OpenAI one: the
chat family's per-minute limit is shared, model allow-lists apply, errors in each envelope."""

import pytest
import requests

from tests.conftest import every_provider_type

PLANS = {"default": {"requests_per_minute": {"chat": 3}, "models": ["gpt-*", "gemini-*"]}}


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream), "PLANS": PLANS,
            "DEFAULT_PLAN": "default", "RATELIMIT_ENABLED": True,
            "RATELIMIT_STORAGE_URI": "memory://"}


def anthropic_call(gateway, key, model="gpt-test"):
    return requests.post(f"{gateway}/v1/messages", headers={"x-api-key": key}, json={
        "model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]})


def gemini_call(gateway, key, model="gemini-test", method="generateContent"):
    return requests.post(f"{gateway}/v1beta/models/{model}:{method}",
                         headers={"x-goog-api-key": key},
                         json={"contents": [{"parts": [{"text": "x"}]}]})


def test_chat_family_limit_is_shared_across_formats(gateway, api_key, upstream):
    assert gemini_call(gateway, api_key, method="countTokens").status_code == 200  # not counted
    assert anthropic_call(gateway, api_key).status_code == 200
    assert gemini_call(gateway, api_key).status_code == 200
    assert anthropic_call(gateway, api_key).status_code == 200
    refused = gemini_call(gateway, api_key)
    assert refused.status_code == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert refused.headers["X-RateLimit-Remaining-Requests"] == "0"
    refused = anthropic_call(gateway, api_key)
    assert refused.status_code == 429 and refused.json()["error"]["type"] == "rate_limit_error"
    answered = [r for r in upstream.received if not r.path.endswith(":countTokens")]
    assert len(answered) == 3, "a refused request reached the upstream"


def test_plan_model_allow_list(gateway, api_key, upstream):
    resp = anthropic_call(gateway, api_key, model="claude-test")
    assert resp.status_code == 403 and resp.json()["error"]["type"] == "permission_error"
    resp = gemini_call(gateway, api_key, model="claude-test")
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    listed = requests.get(f"{gateway}/v1beta/models", headers={"x-goog-api-key": api_key})
    assert [m["name"] for m in listed.json()["models"]] == ["models/gemini-test",
                                                            "models/gpt-test"]
    assert upstream.received == []
