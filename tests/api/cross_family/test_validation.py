"""Bad requests: 400/413 in the OpenAI error shape naming the field, nothing forwarded."""

import json

import pytest

GOOD = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def post(client, api_key):
    def send(body=None, raw=None, content_type="application/json"):
        data = raw if raw is not None else json.dumps(body)
        return client.post("/v1/chat/completions", data=data, content_type=content_type,
                           headers={"Authorization": f"Bearer {api_key}"})
    return send


@pytest.mark.parametrize("change, param", [
    ({"model": None}, "model"),
    ({"model": 123}, "model"),
    ({"model": ""}, "model"),
    ({"messages": []}, "messages"),
    ({"messages": "x"}, "messages"),
    ({"messages": ["x"]}, "messages[0]"),
    ({"messages": [{"content": "no role"}]}, "messages[0].role"),
    ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": -0.1}, "temperature"),
    ({"temperature": "1"}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_tokens": 1.5}, "max_tokens"),
    ({"max_tokens": "100"}, "max_tokens"),
    ({"max_tokens": True}, "max_tokens"),
    ({"max_completion_tokens": -1}, "max_completion_tokens"),
    ({"n": 0}, "n"),
    ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"stream": "yes"}, "stream"),
    ({"stream": 1}, "stream"),
])
def test_field_errors(post, upstream, change, param):
    body = {**GOOD, **change}
    if change.get("model", "") is None:
        del body["model"]
    resp = post(body)
    assert resp.status_code == 400, resp.json
    err = resp.json["error"]
    assert err["type"] == "invalid_request_error"
    assert err["param"] == param
    assert param.split("[")[0].split(".")[0] in err["message"]
    assert upstream.received == []


@pytest.mark.parametrize("raw", [b"{bad", b"", b"   ", b"[1, 2]", b'"text"', b"\xff\xfe",
                                 b'{"model": NaN}', b"[" * 100_000 + b"]" * 100_000])
def test_malformed_bodies(post, upstream, raw):
    resp = post(raw=raw)
    assert resp.status_code == 400
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert upstream.received == []


def test_oversized_body_is_413(app, post, upstream):
    app.config["MAX_CONTENT_LENGTH"] = 1000
    resp = post({**GOOD, "messages": [{"role": "user", "content": "x" * 2000}]})
    assert resp.status_code == 413
    assert resp.json["error"]["type"] == "invalid_request_error"
    assert "1000" in resp.json["error"]["message"]
    assert upstream.received == []


def test_valid_edge_values_pass(post):
    body = {**GOOD, "temperature": 0, "top_p": 1, "max_tokens": 1, "n": 1, "stop": "x",
            "stream": False, "temperature_extra": "kept", "messages": [
                {"role": "system", "content": "s"}, {"role": "developer", "content": "d"},
                {"role": "user", "content": [{"type": "text", "text": "u"}]},
                {"role": "assistant", "content": None, "tool_calls": []},
                {"role": "tool", "tool_call_id": "c1", "content": "r"}]}
    assert post(body).status_code == 200


@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "utf-16", "utf-32-le"])
def test_bodies_in_any_json_encoding_are_read(post, upstream, encoding):
    """JSON text may come in UTF-8, -16 or -32, with a byte order mark or without (RFC 8259 asks
    for UTF-8; json.loads reads them all, and so does the gateway)."""
    body = {**GOOD, "messages": [{"role": "user", "content": "h\u00e9llo \u2713"}]}
    assert post(raw=json.dumps(body, ensure_ascii=False).encode(encoding)).status_code == 200
    assert upstream.received[-1].json["messages"][0]["content"] == "h\u00e9llo \u2713"


def test_unknown_route_and_method(client, api_key):
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404 and resp.json["error"]["type"] == "invalid_request_error"
    resp = client.get("/v1/chat/completions", headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 405 and "GET" in resp.json["error"]["message"]
    resp = client.delete("/api/v1/ai/models")
    assert resp.status_code == 405 and resp.is_json
