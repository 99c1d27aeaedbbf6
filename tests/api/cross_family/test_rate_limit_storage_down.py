"""Rate-limit storage unreachable: the documented policy, within a bounded time, never a 500.
Uses a dead port and a silent listener (never the shared Redis server itself)."""

import logging
import socket
import time

import pytest

from tests.conftest import make_user
from tests.live_server import free_port

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def silent_redis():
    """A port that accepts connections and never answers: a blackholed Redis."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


@pytest.fixture
def settings(request):
    policy, where = request.param
    url = (request.getfixturevalue("silent_redis") if where == "silent"
           else f"redis://127.0.0.1:{free_port()}/0")
    return {"RATELIMIT_STORAGE_URI": url, "RATELIMIT_ON_STORAGE_ERROR": policy,
            "RATELIMIT_STORAGE_RETRY": 30.0}


def timed_chat(client, key):
    started = time.monotonic()
    resp = client.post("/v1/chat/completions", json=CHAT,
                       headers={"Authorization": f"Bearer {key}"})
    return resp, time.monotonic() - started


@pytest.mark.parametrize("settings", [("open", "dead"), ("open", "silent")], indirect=True)
def test_fail_open_serves_unlimited_and_counts(app, client, upstream, caplog):
    _, key = make_user(app)
    caplog.set_level(logging.WARNING, logger="services.ratelimit")
    results = [timed_chat(client, key) for _ in range(12)]  # more than free's 10 per minute
    assert [r.status_code for r, _ in results] == [200] * 12
    assert all("X-RateLimit-Limit-Requests" not in r.headers for r, _ in results)
    assert results[0][1] < 2, "the first request waited much longer than the Redis timeouts"
    assert max(t for _, t in results[1:]) < 1, "later requests should not wait on Redis again"
    assert len(upstream.received) == 12
    guard = app.extensions["ratelimit"]
    assert guard.errors == 1 and guard.degraded >= 12
    warnings = [r.getMessage() for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(warnings) == 1 and "allowed without limits" in warnings[0]
    assert key not in caplog.text


@pytest.mark.parametrize("settings", [("closed", "dead"), ("closed", "silent")], indirect=True)
def test_fail_closed_answers_503_without_forwarding(app, client, upstream):
    _, key = make_user(app)
    for _ in range(3):
        resp, took = timed_chat(client, key)
        assert resp.status_code == 503
        assert resp.json["error"]["type"] == "service_unavailable_error"
        assert resp.json["error"]["code"] == "rate_limit_storage_unavailable"
        assert int(resp.headers["Retry-After"]) >= 1
        assert took < 2
    assert not upstream.received
