"""The official openai SDK's embeddings.create through the gateway, to OpenAI-type and
Gemini-type fake upstreams: what the provider was sent, and the vectors coming back in order."""

import base64
import struct

import openai
import pytest
import requests

from tests.api.embeddings.conftest import GEMINI_MODEL, OPENAI_MODEL
from tests.conftest import UPSTREAM_KEY
from tests.fake_embeddings import tokens_text, vector
from tests.fake_upstream import Script

TEXTS = ["the first text", "the second, longer text", "a third"]


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


def test_default_base64_to_openai_is_passed_through(sdk, upstream):
    """The SDK asks for base64 unless told otherwise; the upstream's bytes come back as they
    were, and the SDK decodes them to the fake's vectors."""
    reply = sdk.embeddings.create(model=OPENAI_MODEL, input=TEXTS)
    assert [d.embedding for d in reply.data] == [vector(t) for t in TEXTS]
    assert [d.index for d in reply.data] == [0, 1, 2]
    assert reply.usage.prompt_tokens == reply.usage.total_tokens == 9
    sent = upstream.last
    assert sent.path == "/v1/embeddings"
    assert sent.json == {"model": OPENAI_MODEL, "input": TEXTS, "encoding_format": "base64"}
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_float_encoding_and_dimensions(sdk, upstream):
    reply = sdk.embeddings.create(model=OPENAI_MODEL, input="one text", dimensions=5,
                                  encoding_format="float", user="u-1")
    assert reply.data[0].embedding == vector("one text", 5)
    assert reply.model == OPENAI_MODEL and reply.object == "list"
    assert upstream.last.json == {"model": OPENAI_MODEL, "input": "one text", "dimensions": 5,
                                  "encoding_format": "float", "user": "u-1"}


def test_alias_and_token_arrays(sdk, upstream):
    """Token arrays go to OpenAI-type providers as they are; an alias names the upstream model."""
    reply = sdk.embeddings.create(model="small", input=[[1, 2, 3], [4]],
                                  encoding_format="float")
    assert [d.embedding for d in reply.data] == [vector(tokens_text([1, 2, 3])),
                                                 vector(tokens_text([4]))]
    assert upstream.last.json["input"] == [[1, 2, 3], [4]]
    assert upstream.last.json["model"] == OPENAI_MODEL


def test_vectors_follow_indexes_not_positions(sdk, upstream):
    upstream.push(Script(reverse_order=True))
    reply = sdk.embeddings.create(model=OPENAI_MODEL, input=TEXTS, encoding_format="float")
    by_index = {d.index: d.embedding for d in reply.data}
    assert by_index == {i: vector(t) for i, t in enumerate(TEXTS)}


@pytest.mark.parametrize("encoding", [None, "float", "base64"])
def test_to_gemini(sdk, upstream, encoding):
    """An OpenAI client reaches a Gemini embedding model: one :batchEmbedContents call,
    dimensions as outputDimensionality, vectors in order and encoded as the client asked."""
    kwargs = {"encoding_format": encoding} if encoding else {}
    reply = sdk.embeddings.create(model=GEMINI_MODEL, input=TEXTS, dimensions=7, **kwargs)
    vectors = [d.embedding for d in reply.data]
    if encoding == "base64":  # asked for explicitly: the SDK leaves the strings alone
        vectors = [list(struct.unpack("<7f", base64.b64decode(v))) for v in vectors]
    assert vectors == [vector(t, 7) for t in TEXTS]
    assert reply.model == GEMINI_MODEL
    assert reply.usage.prompt_tokens > 0  # counted by us: Gemini reports none
    sent = upstream.last
    assert sent.path == f"/v1beta/models/{GEMINI_MODEL}:batchEmbedContents"
    assert sent.headers["X-Goog-Api-Key"] == UPSTREAM_KEY
    assert sent.json == {"requests": [
        {"model": f"models/{GEMINI_MODEL}", "content": {"parts": [{"text": t}]},
         "outputDimensionality": 7} for t in TEXTS]}


def test_to_gemini_with_a_task_type(sdk, upstream):
    sdk.embeddings.create(model=GEMINI_MODEL, input="q", extra_body={"task_type":
                                                                     "retrieval_query"})
    assert upstream.last.json["requests"][0]["taskType"] == "RETRIEVAL_QUERY"


def test_many_inputs_to_gemini_are_split_and_kept_in_order(sdk, upstream):
    """Gemini takes 100 inputs a call: 250 inputs are three calls, reassembled in order."""
    texts = [f"text number {i}" for i in range(250)]
    reply = sdk.embeddings.create(model=GEMINI_MODEL, input=texts)
    assert [d.embedding for d in reply.data] == [vector(t) for t in texts]
    assert [d.index for d in reply.data] == list(range(250))
    calls = [r for r in upstream.received if r.path.endswith(":batchEmbedContents")]
    assert [len(c.json["requests"]) for c in calls] == [100, 100, 50]


def test_base64_is_honoured_when_the_upstream_sends_floats(gateway, api_key, upstream):
    """An OpenAI-compatible server that ignores encoding_format: the client still gets base64
    (openai-node decodes whatever it gets as base64, so floats would be garbage to it)."""
    upstream.push(Script(body={"object": "list", "model": "m", "data": [
        {"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
        "usage": {"prompt_tokens": 2, "total_tokens": 2}}))
    resp = requests.post(f"{gateway}/v1/embeddings", timeout=10,
                         headers={"Authorization": f"Bearer {api_key}"},
                         json={"model": OPENAI_MODEL, "input": "x", "encoding_format": "base64"})
    assert resp.status_code == 200
    body = resp.json()
    assert body["data"] == [{"object": "embedding", "index": 0, "embedding": "AAAAPwAAgD4="}]
    assert body["usage"] == {"prompt_tokens": 2, "total_tokens": 2}


def test_floats_are_given_when_the_upstream_sends_base64(gateway, api_key, upstream):
    upstream.push(Script(body={"object": "list", "model": "m", "data": [
        {"object": "embedding", "index": 0, "embedding": "AAAAPwAAgD4="}]}))
    resp = requests.post(f"{gateway}/v1/embeddings", timeout=10,
                         headers={"Authorization": f"Bearer {api_key}"},
                         json={"model": OPENAI_MODEL, "input": "x"})
    assert resp.json()["data"][0]["embedding"] == [0.5, 0.25]
    assert resp.json()["usage"] == {"prompt_tokens": 1, "total_tokens": 1}  # counted by us
    assert resp.headers["x-tollgate-token-count"] == "estimated"


def test_a_broken_answer_is_502(sdk, upstream):
    upstream.push(Script(body={"object": "list", "data": [{"index": 0, "embedding": "!!"}]}))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.embeddings.create(model=OPENAI_MODEL, input="x")
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "service_unavailable_error"


def test_upstream_errors_pass_on_in_openai_shape(sdk, upstream):
    upstream.push(Script(status=400, body={"error": {
        "message": "This model does not support specifying dimensions.",
        "type": "invalid_request_error", "param": "dimensions", "code": None}}))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.embeddings.create(model=OPENAI_MODEL, input="x", dimensions=3)
    assert "does not support specifying dimensions" in caught.value.message
