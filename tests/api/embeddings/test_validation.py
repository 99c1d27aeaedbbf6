"""Bad embeddings requests get a 400 naming the field, in the caller's envelope, and reach no
upstream; chat to an embedding model and embeddings from a chat model are clear 400s."""

import pytest

from tests.api.embeddings.conftest import GEMINI_MODEL, OPENAI_MODEL


@pytest.fixture
def settings(settings):
    return {**settings, "EMBEDDING_MAX_INPUT_TOKENS": 1200}


def embed(client, key, **body):
    return client.post("/v1/embeddings", json={"model": OPENAI_MODEL, **body},
                       headers={"Authorization": f"Bearer {key}"})


@pytest.mark.parametrize("body, param", [
    ({"input": []}, "input"),
    ({"input": ""}, "input"),
    ({"input": ["ok", ""]}, "input[1]"),
    ({"input": ["ok", 3]}, "input[1]"),
    ({"input": ["ok", None]}, "input[1]"),
    ({"input": [[1, 2], "text"]}, "input[1]"),
    ({"input": [[1, 2], []]}, "input[1]"),
    ({"input": [[1, -2]]}, "input[0]"),
    ({"input": {"text": "x"}}, "input"),
    ({"input": ["x"] * 2049}, "input"),
    ({"input": "x" * 4000}, "input"),  # about 1334 tokens, over this module's 1200
    ({}, "input"),
    ({"input": "x", "encoding_format": "binary"}, "encoding_format"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "dimensions": "8"}, "dimensions"),
    ({"input": "x", "model": ""}, "model"),
    ({"input": "x", "model": 5}, "model"),
])
def test_bad_input_is_400_with_param(client, api_key, upstream, body, param):
    resp = embed(client, api_key, **body)
    assert resp.status_code == 400, resp.json
    error = resp.json["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param
    assert upstream.received == []


def test_too_many_inputs_says_how_many(client, api_key):
    resp = embed(client, api_key, input=["x"] * 2049)
    assert "2048" in resp.json["error"]["message"] and "2049" in resp.json["error"]["message"]


def test_not_json_and_unknown_model(client, api_key, upstream):
    resp = client.post("/v1/embeddings", data="{", headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 400 and resp.json["error"]["type"] == "invalid_request_error"
    resp = embed(client, api_key, model="nope", input="x")
    assert resp.status_code == 404 and resp.json["error"]["code"] == "model_not_found"
    assert upstream.received == []


def test_needs_a_key(client):
    resp = client.post("/v1/embeddings", json={"model": OPENAI_MODEL, "input": "x"})
    assert resp.status_code == 401 and resp.json["error"]["code"] == "invalid_api_key"


@pytest.mark.parametrize("model, words", [("gpt-test", "chat model"),
                                          ("claude-test", "Anthropic API has no embeddings")])
def test_chat_models_cannot_embed(client, api_key, upstream, model, words):
    resp = embed(client, api_key, model=model, input="x")
    assert resp.status_code == 400
    assert resp.json["error"]["param"] == "model" and words in resp.json["error"]["message"]
    assert upstream.received == []


@pytest.mark.parametrize("model", [OPENAI_MODEL, GEMINI_MODEL, "small"])
def test_embedding_models_cannot_chat(client, api_key, upstream, model):
    headers = {"Authorization": f"Bearer {api_key}"}
    resp = client.post("/v1/chat/completions", headers=headers, json={
        "model": model, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json["error"]["param"] == "model"
    assert "embedding model" in resp.json["error"]["message"]
    resp = client.post("/v1/messages", headers={"x-api-key": api_key}, json={
        "model": model, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 400 and resp.json["type"] == "error"
    resp = client.post(f"/v1beta/models/{model}:generateContent",
                       headers={"x-goog-api-key": api_key},
                       json={"contents": [{"parts": [{"text": "hi"}]}]})
    assert resp.status_code == 400 and resp.json["error"]["status"] == "INVALID_ARGUMENT"
    assert upstream.received == []


def test_token_arrays_cannot_go_to_gemini(client, api_key, upstream):
    resp = embed(client, api_key, model=GEMINI_MODEL, input=[[1, 2], [3]])
    assert resp.status_code == 400 and resp.json["error"]["param"] == "input[0]"
    assert "token array" in resp.json["error"]["message"]
    assert upstream.received == []


def gemini(client, key, body, method="batchEmbedContents", model=GEMINI_MODEL):
    return client.post(f"/v1beta/models/{model}:{method}", json=body,
                       headers={"x-goog-api-key": key})


@pytest.mark.parametrize("method, body, where", [
    ("batchEmbedContents", {"requests": []}, "requests"),
    ("batchEmbedContents", {}, "requests"),
    ("batchEmbedContents", {"requests": [{"content": {"parts": []}}]},
     "requests[0].content.parts"),
    ("batchEmbedContents", {"requests": [{"content": {"parts": [{"text": 3}]}}]},
     "requests[0].content.parts[0]"),
    ("batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]},
                                          "output_dimensionality": -1}]},
     "requests[0].outputDimensionality"),
    ("batchEmbedContents", {"requests": [{"content": {"parts": [{"text": "x"}]}}] * 2049},
     "requests"),
    ("embedContent", {"content": {"parts": [{"text": ""}]}}, "content.parts"),
    ("embedContent", {"content": "text"}, "content"),
    ("embedContent", {"content": {"parts": [{"text": "x"}]}, "taskType": "TWO WORDS"},
     "taskType"),
])
def test_bad_gemini_input_is_400(client, api_key, upstream, method, body, where):
    resp = gemini(client, api_key, body, method)
    assert resp.status_code == 400, resp.json
    assert resp.json["error"]["status"] == "INVALID_ARGUMENT"
    assert f"'{where}'" in resp.json["error"]["message"]
    assert upstream.received == []


def test_gemini_inline_data_cannot_go_to_openai(client, api_key, upstream):
    body = {"content": {"parts": [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]}}
    resp = gemini(client, api_key, body, "embedContent", model=OPENAI_MODEL)
    assert resp.status_code == 400 and "text only" in resp.json["error"]["message"]
    assert upstream.received == []


def test_unknown_gemini_method_lists_the_embed_methods(client, api_key):
    resp = gemini(client, api_key, {}, "embedText")
    assert resp.status_code == 404 and "batchEmbedContents" in resp.json["error"]["message"]
