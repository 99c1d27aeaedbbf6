"""Embeddings have a rate-limit family of their own (with the rate-limit headers), plans'
model allow-lists apply to them, and /v1/models lists embedding models."""

import openai
import pytest
import requests

from tests.api.embeddings.conftest import GEMINI_MODEL, OPENAI_MODEL, embedding_providers
from tests.conftest import STORAGES, limit_storage

PLANS = {"default": {"requests_per_hour": 100,
                     "requests_per_minute": {"chat": 1, "embeddings": 3},
                     "models": ["gpt-*", "text-embedding-*", "gemini-embedding-*"]}}


@pytest.fixture(params=STORAGES)
def settings(request, upstream):
    return {"PROVIDERS": embedding_providers(upstream), "PLANS": PLANS,
            "DEFAULT_PLAN": "default", **limit_storage(request.param)}


def openai_call(gateway, key):
    return requests.post(f"{gateway}/v1/embeddings", json={"model": OPENAI_MODEL, "input": "x"},
                         headers={"Authorization": f"Bearer {key}"}, timeout=10)


def gemini_call(gateway, key, model=GEMINI_MODEL):
    return requests.post(f"{gateway}/v1/models/{model}:batchEmbedContents",
                         json={"requests": [{"content": {"parts": [{"text": "x"}]}}]},
                         headers={"x-goog-api-key": key}, timeout=10)


def test_the_embeddings_family_is_shared_by_both_formats_and_apart_from_chat(
        gateway, api_key, upstream):
    chat = requests.post(f"{gateway}/v1/chat/completions", timeout=10,
                         headers={"Authorization": f"Bearer {api_key}"},
                         json={"model": "gpt-test", "messages": [{"role": "user",
                                                                  "content": "hi"}]})
    assert chat.status_code == 200  # the chat minute is now used up; embeddings are not
    for call, left in ((openai_call, "2"), (gemini_call, "1"), (openai_call, "0")):
        resp = call(gateway, api_key)
        assert resp.status_code == 200, resp.text
        assert resp.headers["X-RateLimit-Limit-Requests"] == "3"
        assert resp.headers["X-RateLimit-Remaining-Requests"] == left
        assert int(resp.headers["X-RateLimit-Reset-Requests"]) > 0
    refused = openai_call(gateway, api_key)
    assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
    assert int(refused.headers["Retry-After"]) >= 1
    refused = gemini_call(gateway, api_key)
    assert refused.status_code == 429
    assert refused.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
    assert len(upstream.received) == 4, "a refused request reached the upstream"


def test_plan_allow_list_applies(gateway, api_key, upstream):
    """gemini-test is a chat model outside the plan: 403 before anything else."""
    resp = gemini_call(gateway, api_key, model="gemini-test")
    assert resp.status_code == 403 and resp.json()["error"]["status"] == "PERMISSION_DENIED"
    assert upstream.received == []


def test_models_list_embedding_models(gateway, api_key):
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)
    # claude-test, gemini-test and the alias "small" are outside the plan
    assert [m.id for m in sdk.models.list()] == [GEMINI_MODEL, "gpt-test", OPENAI_MODEL]
    assert sdk.models.retrieve(OPENAI_MODEL).owned_by == "fake"
