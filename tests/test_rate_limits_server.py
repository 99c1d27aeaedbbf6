"""Rate limits in the real server: two gunicorn gevent workers sharing counts through Redis."""

import json
import re
import socket
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.conftest import REDIS_URL, UPSTREAM_KEY, UPSTREAM_KEY_ENV, provider_entry
from tests.fake_upstream import Script
from tests.live_server import GunicornServer

needs_redis = pytest.mark.skipif(not REDIS_URL, reason="TEST_REDIS_URL is not set")


@pytest.fixture
def server(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    prefix = f"tollgate-test-{uuid.uuid4().hex}"
    env = {"REDIS_URL": REDIS_URL,  # the one setting an operator would use
           "GATEWAY_RATELIMIT_STORAGE_OPTIONS": json.dumps({"key_prefix": prefix}),
           # the process id in gunicorn's access log shows which worker answered
           "TOLLGATE_ACCESS_LOG": "-",
           "GUNICORN_CMD_ARGS": "--access-logformat 'pid=%(p)s %(s)s %(U)s'"}
    srv = GunicornServer(tmp_path, providers=[provider_entry(upstream)], workers=2, env=env)
    srv.key = srv.create_key()  # user on the default plan: free, 10 chat requests per minute
    srv.start()
    yield srv
    srv.stop()


def post_chat(url, key):
    return requests.post(f"{url}/v1/chat/completions", timeout=20,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"},
                         json={"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]})


def serving_pids(server) -> set[str]:
    return set(re.findall(r"pid=<(\d+)> \d+ /v1/", server.logs()))


def wait_for_both_workers(server):
    """The server answers as soon as one worker is up; list models (not counted) until both are."""
    deadline = time.monotonic() + 30
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(serving_pids(server)) < 2:
            assert time.monotonic() < deadline, "the second worker never answered"
            list(pool.map(lambda _: requests.get(
                f"{server.url}/v1/models", timeout=10,
                headers={"Authorization": f"Bearer {server.key}", "Connection": "close"}),
                range(8)))


@needs_redis
def test_limit_is_exact_across_two_workers(server, upstream):
    wait_for_both_workers(server)
    upstream.push(*[Script(delay=0.3) for _ in range(30)])  # keep requests in flight together
    started = time.time()
    with ThreadPoolExecutor(max_workers=30) as pool:
        replies = list(pool.map(lambda _: post_chat(server.url, server.key), range(30)))
    codes = [r.status_code for r in replies]
    assert codes.count(200) == 10 and codes.count(429) == 20, codes
    for reply in replies:
        assert reply.headers["X-RateLimit-Limit-Requests"] == "10"
        remaining = int(reply.headers["X-RateLimit-Remaining-Requests"])
        reset = int(reply.headers["X-RateLimit-Reset-Requests"])
        assert started + 59 <= reset <= time.time() + 61
        if reply.status_code == 429:
            assert remaining == 0
            assert reply.json()["error"]["type"] == "rate_limit_error"
            assert 1 <= int(reply.headers["Retry-After"]) <= 61
        else:
            assert 0 <= remaining <= 9
    assert len(upstream.received) == 10, "refused requests must not reach the upstream"
    served_by = set(re.findall(r"pid=<(\d+)> \d+ /v1/chat/completions", server.logs()))
    assert len(served_by) == 2, "the requests were not spread over both workers"
    assert server.key not in server.logs() and UPSTREAM_KEY not in server.logs()


@pytest.fixture
def blackholed_server(upstream, tmp_path, monkeypatch):
    """The server with its Redis on a port that accepts connections and never answers."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        env = {"REDIS_URL": f"redis://127.0.0.1:{listener.getsockname()[1]}/0"}
        srv = GunicornServer(tmp_path, providers=[provider_entry(upstream)], env=env)
        srv.key = srv.create_key()
        srv.start()
        yield srv
        srv.stop()


def test_blackholed_redis_fails_open_within_the_timeout(blackholed_server, upstream):
    """The documented default: serve without limits, log a warning, never hang or answer 500."""
    took = []
    for _ in range(12):  # more than the free plan's 10 per minute
        started = time.monotonic()
        reply = post_chat(blackholed_server.url, blackholed_server.key)
        took.append(time.monotonic() - started)
        assert reply.status_code == 200, reply.text
        assert "X-RateLimit-Limit-Requests" not in reply.headers
    assert took[0] < 3, "the first request waited much longer than the Redis timeouts"
    assert max(took[1:]) < 1.5, "later requests waited on Redis again"
    assert len(upstream.received) == 12
    assert "rate-limit storage unreachable (TimeoutError)" in blackholed_server.logs()
