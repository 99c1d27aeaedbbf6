"""A Gemini client and a Gemini provider: the request goes as sent, never through the IR."""

import json

import pytest
import requests
from sqlalchemy import select

from extensions import db
from models import UsageRecord
from tests.conftest import every_provider_type


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


BODY = {
    "contents": [{"role": "user", "parts": [{"text": "a b"}]}],
    "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}],
    "cachedContent": "cachedContents/abc123",
    "generationConfig": {"thinkingConfig": {"thinkingBudget": 128}, "seed": 7,
                         "maxOutputTokens": 50},
    "labels": {"team": "search"},
}


@pytest.mark.parametrize("query", ["", "?alt=sse"])
def test_json_array_and_sse_streams_keep_every_field(app, gateway, api_key, upstream, query):
    """Fields the IR does not model (safety settings, cached content, thinking config) reach a
    Gemini upstream, streaming with or without alt=sse, and the chunks come back untouched."""
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:streamGenerateContent{query}",
                         headers={"x-goog-api-key": api_key}, json=BODY)
    assert resp.status_code == 200
    sent = upstream.last
    assert sent.query == {"alt": "sse"}  # upstreams are always asked for SSE
    assert sent.json == {k: v for k, v in BODY.items()}
    if query:
        chunks = [json.loads(line[5:]) for line in resp.text.splitlines()
                  if line.startswith("data:")]
    else:
        assert resp.headers["content-type"].startswith("application/json")
        chunks = resp.json()
    assert "".join(p.get("text", "") for c in chunks
                   for p in c["candidates"][0]["content"]["parts"]) == "echo: a b"
    # the upstream's own chunks: its model version and response id, not the gateway's
    assert {c["modelVersion"] for c in chunks} == {"gemini-fake-001"}
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    app.extensions["billing"].flush()
    with app.app_context():
        record = db.session.scalars(select(UsageRecord)).one()
    assert (record.estimated, record.partial) == (False, False)
    assert record.output_tokens == chunks[-1]["usageMetadata"]["candidatesTokenCount"]


def test_json_array_stream_cut_short_ends_as_a_valid_array(gateway, api_key, upstream):
    from tests.fake_upstream import Script
    upstream.push(Script(content="one two three four", drop_after=2))
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:streamGenerateContent",
                         headers={"x-goog-api-key": api_key}, json=BODY)
    chunks = resp.json()  # parses: the array is closed with an error element
    assert chunks[-1]["error"]["status"] == "UNAVAILABLE"
    assert chunks[0]["candidates"][0]["content"]["parts"][0]["text"] == "one"


def test_whole_answer_keeps_the_upstream_bytes(gateway, api_key, upstream):
    """credits_consumed is added without re-encoding the upstream's JSON."""
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:generateContent",
                         headers={"x-goog-api-key": api_key}, json=BODY)
    assert resp.status_code == 200
    body = resp.json()
    assert body["credits_consumed"] > 0
    upstream_bytes = json.dumps({k: v for k, v in body.items() if k != "credits_consumed"})
    assert resp.content.startswith(upstream_bytes[:-1].encode())


def test_gemini_count_tokens_sends_the_whole_request(gateway, api_key, upstream):
    body = {"contents": [{"role": "user", "parts": [{"text": "a b"}]}],
            "safetySettings": [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "OFF"}]}
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:countTokens",
                         json={"generateContentRequest": body},
                         headers={"x-goog-api-key": api_key})
    assert resp.status_code == 200 and resp.json()["totalTokens"] > 0
    assert upstream.last.json == {"generateContentRequest": {
        **body, "model": "models/gemini-test"}}
