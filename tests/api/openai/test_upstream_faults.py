"""Upstream faults become clean OpenAI-shaped errors or failovers; no key ever leaks."""

import json
import logging

import pytest
import requests

from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, provider_entry
from tests.fake_upstream import Script
from tests.live_server import free_port

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def post(gateway, api_key):
    def send(body=BODY, **kw):
        return requests.post(f"{gateway}/v1/chat/completions", json=body, timeout=15,
                             headers={"Authorization": f"Bearer {api_key}"}, **kw)
    return send


@pytest.fixture
def dead_provider():
    return {"name": "dead", "type": "openai", "base_url": f"http://127.0.0.1:{free_port()}/v1",
            "api_key_env": UPSTREAM_KEY_ENV, "models": ["gpt-test", "dead-only"]}


@pytest.fixture
def settings(request, upstream, dead_provider):
    return getattr(request, "param", lambda up, dead: {})(upstream, dead_provider)


def assert_clean(resp, status, type_):
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert err["type"] == type_
    assert set(err) == {"message", "type", "param", "code"}
    assert UPSTREAM_KEY not in resp.text and "Traceback" not in resp.text


def with_dead_only(up, dead):
    return {"PROVIDERS": [dead]}


@pytest.mark.parametrize("settings", [with_dead_only], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_refused_connection_is_502(post, stream):
    assert_clean(post({**BODY, "model": "dead-only", "stream": stream}), 502,
                 "service_unavailable_error")


def with_short_timeout(up, dead):
    return {"UPSTREAM_READ_TIMEOUT": 0.5}


@pytest.mark.parametrize("settings", [with_short_timeout], indirect=True)
def test_slow_upstream_is_504(post, upstream):
    upstream.push(Script(delay=2))
    assert_clean(post(), 504, "service_unavailable_error")


@pytest.mark.parametrize("status, expected", [(500, 502), (502, 502), (503, 503), (529, 503)])
def test_upstream_5xx(post, upstream, status, expected):
    upstream.push(Script(status=status))
    assert_clean(post(), expected, "service_unavailable_error")


@pytest.mark.parametrize("status", [401, 403])
def test_upstream_rejecting_our_key_is_not_a_client_401(post, upstream, status):
    upstream.push(Script(status=status, body={"error": {
        "message": f"Incorrect API key provided: {UPSTREAM_KEY}", "type": "invalid_request_error",
        "code": "invalid_api_key"}}))
    resp = post()
    assert_clean(resp, 502, "upstream_error")


def test_upstream_4xx_message_passed_on_without_secrets(post, upstream):
    upstream.push(Script(status=404, body={"error": {
        "message": f"model gone (key {UPSTREAM_KEY})", "type": "invalid_request_error",
        "code": "model_not_found"}}))
    resp = post()
    assert_clean(resp, 404, "invalid_request_error")
    assert "model gone" in resp.json()["error"]["message"]


def test_upstream_429_keeps_retry_after(post, upstream):
    upstream.push(Script(status=429, headers={"Retry-After": "7"}))
    resp = post()
    assert_clean(resp, 429, "rate_limit_error")
    assert resp.headers["Retry-After"] == "7"


def test_upstream_out_of_quota_is_not_retryable(post, upstream):
    upstream.push(Script(status=429, body={"error": {
        "message": "quota", "type": "insufficient_quota", "code": "insufficient_quota"}}))
    resp = post()
    assert_clean(resp, 503, "service_unavailable_error")
    assert resp.headers["x-should-retry"] == "false"


def test_error_body_on_200_stream(post, upstream):
    upstream.push(Script(content_type="application/json", body={"error": {"message": "nope"}},
                         status=200))
    resp = post({**BODY, "stream": True})
    assert resp.status_code == 502 and resp.json()["error"]["message"]


def with_failover(up, dead):
    return {"PROVIDERS": [dead, provider_entry(up)]}


@pytest.mark.parametrize("settings", [with_failover], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_failover_to_next_provider(post, upstream, stream):
    resp = post({**BODY, "stream": stream})
    assert resp.status_code == 200
    if stream:
        assert resp.content == bytes(upstream.sent_streams[-1]).replace(
            [e for e in upstream.sent_streams[-1].split(b"\n\n") if b'"choices": []' in e][0]
            + b"\n\n", b"")
    else:
        assert resp.json()["choices"][0]["message"]["content"] == "echo: hi"


@pytest.mark.parametrize("settings", [with_failover], indirect=True)
def test_forced_provider(post, upstream):
    resp = post({**BODY, "provider": "fake"})
    assert resp.status_code == 200
    assert "provider" not in upstream.last.json
    assert_clean(post({**BODY, "provider": "dead"}), 502, "service_unavailable_error")
    resp = post({**BODY, "provider": "nobody"})
    assert resp.status_code == 400 and resp.json()["error"]["param"] == "provider"


def test_truncated_stream_ends_with_error_event(post, upstream):
    upstream.push(Script(content="a b c d e f", drop_after=3))
    resp = post({**BODY, "stream": True})
    assert resp.status_code == 200
    events = [e for e in resp.content.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    error = json.loads(events[-2][len(b"data: "):])["error"]
    assert error["type"] == "service_unavailable_error"


def test_stream_is_relayed_byte_for_byte(post, upstream):
    """Every event as the upstream framed it; only the usage chunk gains credits_consumed."""
    resp = post({**BODY, "stream": True, "stream_options": {"include_usage": True}})
    assert resp.headers["content-type"].startswith("text/event-stream")
    sent = bytes(upstream.sent_streams[-1]).split(b"\n\n")
    got = resp.content.split(b"\n\n")
    usage_at = [i for i, e in enumerate(sent) if b'"choices": []' in e][0]
    assert got[:usage_at] == sent[:usage_at] and got[usage_at + 1:] == sent[usage_at + 1:]
    usage_chunk = json.loads(got[usage_at][len(b"data: "):])
    assert usage_chunk.pop("credits_consumed") > 0
    assert usage_chunk == json.loads(sent[usage_at][len(b"data: "):])


def test_usage_chunk_dropped_when_not_asked(post, upstream):
    resp = post({**BODY, "stream": True})
    sent = bytes(upstream.sent_streams[-1]).split(b"\n\n")
    usage_chunk = [e for e in sent if b'"choices": []' in e]
    assert len(usage_chunk) == 1
    assert resp.content == b"\n\n".join(e for e in sent if e not in usage_chunk)


def test_body_forwarded_with_unknown_fields(post, upstream):
    body = {**BODY, "seed": 7, "response_format": {"type": "json_object"},
            "brand_new_field": {"nested": [1, 2]}, "temperature": 0.5}
    assert post(body).status_code == 200
    # the body as sent, plus the output cap the credit hold was sized for
    assert upstream.last.json == {**body, "max_completion_tokens": 4096}


def with_alias(up, dead):
    return {"PROVIDERS": [provider_entry(up, aliases={"fast": "upstream-fast"})]}


@pytest.mark.parametrize("settings", [with_alias], indirect=True)
def test_alias_maps_to_upstream_name(post, upstream, gateway, api_key):
    assert post({**BODY, "model": "fast"}).status_code == 200
    assert upstream.last.json["model"] == "upstream-fast"
    ids = [m["id"] for m in requests.get(f"{gateway}/v1/models", timeout=5,
                                         headers={"x-api-key": api_key}).json()["data"]]
    assert ids == ["fast", "gpt-test"]


def test_no_secret_in_logs(post, upstream, caplog, api_key, gateway):
    caplog.set_level(logging.DEBUG)
    upstream.push(Script(status=500), Script(status=401))
    post()
    post()
    requests.post(f"{gateway}/v1/chat/completions?key={api_key}", json=BODY, timeout=5)
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert UPSTREAM_KEY not in logged and api_key not in logged


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/tollgate.db",
                                 "postgresql://postgres@127.0.0.1:{free_port}/none"],
                         ids=["sqlite", "postgresql"])
def test_database_down_is_503_and_nothing_forwarded(upstream, url, monkeypatch, tmp_path):
    """No database, no key check and no credit hold: a JSON 503, nothing sent upstream."""
    from app import create_app
    url = url.format(free_port=free_port())  # a port nobody listens on, picked when run
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    app = create_app({"SQLALCHEMY_DATABASE_URI": url, "CREATE_TABLES": False,
                      "PROVIDERS": [provider_entry(upstream)]})
    resp = app.test_client().post("/v1/chat/completions", json=BODY,
                                  headers={"x-api-key": "tg-some-key"})
    assert resp.status_code == 503, resp.json
    assert resp.json["error"]["code"] == "storage_unavailable"
    assert resp.headers["Retry-After"] == "2"
    assert upstream.received == []
    app.extensions["billing"].shutdown()


def test_a_2xx_answer_of_odd_shape_without_usage_is_relayed_and_charged_once(app, post,
                                                                           upstream):
    """An answer the meter cannot read text from is relayed as it came and charged for its
    prompt: never a 500, never a hold left open until the sweep."""
    from sqlalchemy import select

    from extensions import db
    from models import UsageRecord
    from tests.api.cross_family.test_credits import books
    odd = {"id": "x", "object": "chat.completion", "choices": [{"message": "not an object"}]}
    upstream.push(Script(body=odd))
    resp = post()
    assert resp.status_code == 200, resp.text
    assert resp.json()["choices"] == odd["choices"]
    assert app.extensions["billing"].flush()
    with app.app_context():
        user_id = db.session.scalar(select(UsageRecord.user_id))
    _, records, holds, gap = books(app, user_id)
    assert (len(records), holds, gap) == (1, [], 0)
    assert records[0].estimated
    assert float(records[0].price) == resp.json()["credits_consumed"]
