"""Routing of embeddings: providers tried in order when one is unavailable, and a provider
forced by the request."""

import pytest
import requests

from tests.api.embeddings.conftest import OPENAI_MODEL
from tests.conftest import provider_entry
from tests.fake_embeddings import vector
from tests.fake_upstream import Script


@pytest.fixture
def settings(upstream):
    """The same embedding model on an OpenAI-type and a Gemini-type provider, in that order."""
    return {"PROVIDERS": [
        provider_entry(upstream, "first", (), embedding_models=[OPENAI_MODEL]),
        provider_entry(upstream, "second", (), type="gemini", embedding_models=[OPENAI_MODEL])]}


def embed(gateway, key, **extra):
    return requests.post(f"{gateway}/v1/embeddings", timeout=10,
                         headers={"Authorization": f"Bearer {key}"},
                         json={"model": OPENAI_MODEL, "input": ["a", "b"],
                               "encoding_format": "float", **extra})


def test_an_unavailable_provider_moves_on_to_the_next(gateway, api_key, upstream):
    upstream.push(Script(status=503))
    resp = embed(gateway, api_key)
    assert resp.status_code == 200
    assert [d["embedding"] for d in resp.json()["data"]] == [vector("a"), vector("b")]
    assert [r.path for r in upstream.received] == [
        "/v1/embeddings", f"/v1beta/models/{OPENAI_MODEL}:batchEmbedContents"]


def test_a_client_error_does_not_move_on(gateway, api_key, upstream):
    upstream.push(Script(status=400))
    assert embed(gateway, api_key).status_code == 400
    assert len(upstream.received) == 1


def test_a_forced_provider(gateway, api_key, upstream):
    assert embed(gateway, api_key, provider="second").status_code == 200
    assert [r.path for r in upstream.received] == [
        f"/v1beta/models/{OPENAI_MODEL}:batchEmbedContents"]
    resp = embed(gateway, api_key, provider="nowhere")
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "provider"
