"""google-genai's models.embed_content through the gateway, to Gemini-type and OpenAI-type fake
upstreams, at /v1 (the SDK's default) and /v1beta; and :embedContent, which the SDK does not
send to the Developer API but REST clients do."""

import pytest
import requests
from google import genai
from google.genai import errors, types

from tests.api.embeddings.conftest import GEMINI_MODEL, OPENAI_MODEL
from tests.conftest import UPSTREAM_KEY
from tests.fake_embeddings import vector
from tests.fake_upstream import Script

TEXTS = ["What is a gateway?", "A gateway forwards API calls.", "Third."]


def client_for(base_url, key, version=None):
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base_url, api_version=version,
        retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture
def sdk(gateway, api_key):
    return client_for(gateway, api_key)


def test_one_content_to_gemini(sdk, upstream):
    reply = sdk.models.embed_content(model=GEMINI_MODEL, contents="hello there")
    assert [e.values for e in reply.embeddings] == [vector("hello there")]
    sent = upstream.last
    assert sent.path == f"/v1beta/models/{GEMINI_MODEL}:batchEmbedContents"
    assert sent.headers["X-Goog-Api-Key"] == UPSTREAM_KEY
    assert sent.json == {"requests": [{"model": f"models/{GEMINI_MODEL}",
                                       "content": {"parts": [{"text": "hello there"}],
                                                   "role": "user"}}]}


def test_several_contents_with_config_to_gemini(gateway, api_key, upstream):
    """At /v1beta and /api/v1beta too; taskType, title and outputDimensionality go as sent."""
    config = types.EmbedContentConfig(task_type="RETRIEVAL_DOCUMENT", title="Glossary",
                                      output_dimensionality=6)
    for base in (gateway, f"{gateway}/api"):
        sdk = client_for(base, api_key, "v1beta")
        reply = sdk.models.embed_content(model=GEMINI_MODEL, contents=TEXTS, config=config)
        assert [e.values for e in reply.embeddings] == [vector(t, 6) for t in TEXTS]
        items = upstream.last.json["requests"]
        assert [i["content"]["parts"][0]["text"] for i in items] == TEXTS
        assert {(i["taskType"], i["title"], i["outputDimensionality"]) for i in items} == {
            ("RETRIEVAL_DOCUMENT", "Glossary", 6)}


def test_usage_is_passed_on_when_gemini_reports_it(sdk, upstream):
    upstream.push(Script(usage={"promptTokenCount": 17}))
    reply = sdk.models.embed_content(model=GEMINI_MODEL, contents=TEXTS)
    assert reply.usage_metadata.prompt_token_count == 17


def test_to_openai(sdk, upstream):
    """A Gemini client reaches an OpenAI embedding model: one /embeddings call, in order."""
    config = types.EmbedContentConfig(output_dimensionality=4, task_type="RETRIEVAL_QUERY")
    reply = sdk.models.embed_content(model=OPENAI_MODEL, contents=TEXTS, config=config)
    assert [e.values for e in reply.embeddings] == [vector(t, 4) for t in TEXTS]
    assert reply.usage_metadata.prompt_token_count == 10  # the upstream's count
    sent = upstream.last
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": OPENAI_MODEL, "input": TEXTS, "encoding_format": "base64",
                         "dimensions": 4}


def test_mixed_dimensions_to_openai_are_separate_calls(gateway, api_key, upstream):
    body = {"requests": [
        {"model": f"models/{OPENAI_MODEL}", "content": {"parts": [{"text": t}]},
         **({"outputDimensionality": 3} if i % 2 else {})} for i, t in enumerate(TEXTS)]}
    reply = requests.post(f"{gateway}/v1beta/models/{OPENAI_MODEL}:batchEmbedContents",
                          json=body, headers={"x-goog-api-key": api_key}, timeout=10)
    assert reply.status_code == 200, reply.text
    assert [e["values"] for e in reply.json()["embeddings"]] == [
        vector(TEXTS[0]), vector(TEXTS[1], 3), vector(TEXTS[2])]
    calls = [r.json for r in upstream.received]
    assert [(c["input"], c.get("dimensions")) for c in calls] == [
        ([TEXTS[0], TEXTS[2]], None), ([TEXTS[1]], 3)]


@pytest.mark.parametrize("model", [GEMINI_MODEL, OPENAI_MODEL])
def test_embed_content_over_rest(gateway, api_key, upstream, model):
    """:embedContent answers {"embedding": {...}}; several parts make one vector."""
    body = {"content": {"parts": [{"text": "two"}, {"text": "parts"}]},
            "task_type": "SEMANTIC_SIMILARITY"}
    reply = requests.post(f"{gateway}/v1beta/models/{model}:embedContent?key={api_key}",
                          json=body, timeout=10)
    assert reply.status_code == 200, reply.text
    assert reply.json()["embedding"]["values"] == vector("two\nparts")
    if model == GEMINI_MODEL:  # same format: forwarded as it came
        assert upstream.last.path == f"/v1beta/models/{model}:embedContent"
        assert upstream.last.json == {"content": body["content"],  # keys in camelCase
                                      "taskType": "SEMANTIC_SIMILARITY"}
    else:
        assert upstream.last.json["input"] == ["two\nparts"]


def test_errors_in_gemini_shape(sdk, gateway, api_key):
    with pytest.raises(errors.ClientError) as caught:
        sdk.models.embed_content(model="gpt-test", contents="x")
    assert caught.value.code == 400 and "not an embedding model" in caught.value.message
    with pytest.raises(errors.ClientError) as caught:
        sdk.models.embed_content(model="no-such-model", contents="x")
    assert caught.value.code == 404
    reply = requests.post(f"{gateway}/v1/models/{GEMINI_MODEL}:batchEmbedContents",
                          json={"requests": [{"content": {"parts": [{"text": "x"}]},
                                              "model": "models/other"}]},
                          headers={"x-goog-api-key": api_key}, timeout=10)
    assert reply.status_code == 400
    assert reply.json()["error"]["status"] == "INVALID_ARGUMENT"
    assert "requests[0].model" in reply.json()["error"]["message"]


def test_model_list_names_the_embed_methods(sdk):
    methods = {m.name: m.supported_actions for m in sdk.models.list()}
    assert methods[f"models/{GEMINI_MODEL}"] == ["embedContent", "batchEmbedContents"]
    assert methods[f"models/{OPENAI_MODEL}"] == ["embedContent", "batchEmbedContents"]
    assert "generateContent" in methods["models/gemini-test"]


def test_a_large_gemini_batch_is_split_with_each_items_settings(gateway, api_key, upstream):
    body = {"requests": [{"content": {"parts": [{"text": f"t{i}"}]},
                          "outputDimensionality": 3 + i % 2, "taskType": "CLUSTERING"}
                         for i in range(150)]}
    reply = requests.post(f"{gateway}/v1beta/models/{GEMINI_MODEL}:batchEmbedContents",
                          json=body, headers={"x-goog-api-key": api_key}, timeout=10)
    assert [e["values"] for e in reply.json()["embeddings"]] == [
        vector(f"t{i}", 3 + i % 2) for i in range(150)]
    calls = [r.json["requests"] for r in upstream.received]
    assert [len(c) for c in calls] == [100, 50]
    assert calls[1][0] == {"model": f"models/{GEMINI_MODEL}", "content": {"parts": [
        {"text": "t100"}]}, "outputDimensionality": 3, "taskType": "CLUSTERING"}
