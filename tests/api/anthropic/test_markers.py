"""Request metadata travels beside the body: a client field named like an old internal marker
is an unknown field like any other, forwarded where unknown fields are, steering nothing."""

import json

import pytest
import requests

from tests.conftest import every_provider_type

MARKER = "__anthropic_beta__"


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


def post(gateway, api_key, path, body, **headers):
    return requests.post(f"{gateway}{path}", json=body,
                         headers={"Authorization": f"Bearer {api_key}", **headers})


def test_marker_field_to_an_anthropic_upstream_is_just_a_field(gateway, api_key, upstream):
    body = {"model": "claude-test", "max_tokens": 20, MARKER: "files-api-2025-04-14",
            "messages": [{"role": "user", "content": "hi"}]}
    assert post(gateway, api_key, "/v1/messages", body).status_code == 200
    assert "Anthropic-Beta" not in upstream.last.headers  # it steers no header
    assert upstream.last.json[MARKER] == "files-api-2025-04-14"  # forwarded as sent
    resp = post(gateway, api_key, "/v1/messages", body, **{"anthropic-beta": "real-beta"})
    assert resp.status_code == 200
    assert upstream.last.headers["Anthropic-Beta"] == "real-beta"
    assert upstream.last.json[MARKER] == "files-api-2025-04-14"


def test_marker_field_from_an_openai_client_stays_a_field(gateway, api_key, upstream):
    body = {"model": "gpt-test", MARKER: "x", "messages": [{"role": "user", "content": "hi"}]}
    assert post(gateway, api_key, "/v1/chat/completions", body).status_code == 200
    assert upstream.last.json[MARKER] == "x"  # OpenAI passthrough keeps unknown fields
    body["model"] = "claude-test"  # translated: unknown fields are not carried over
    assert post(gateway, api_key, "/v1/chat/completions", body).status_code == 200
    assert "Anthropic-Beta" not in upstream.last.headers
    assert MARKER not in json.dumps(upstream.last.json)


def test_client_dict_is_not_mutated_into_the_upstream_body(gateway, api_key, upstream):
    """`provider` picks the route and is not forwarded; the beta header is not a body field."""
    body = {"model": "claude-test", "max_tokens": 20, "provider": "fake-claude",
            "messages": [{"role": "user", "content": "hi"}]}
    assert post(gateway, api_key, "/v1/messages", body,
                **{"anthropic-beta": "b1"}).status_code == 200
    assert set(upstream.last.json) == {"model", "max_tokens", "messages"}
