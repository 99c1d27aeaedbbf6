"""Operations against the real server (gunicorn, gevent workers): metrics added up across two
workers in multiprocess mode, JSON logs with the request id on every line, and restarts that
keep open streams: SIGHUP reloads the workers, SIGTERM drains them."""

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, provider_entry
from tests.fake_faults import Refuser
from tests.fake_upstream import Script
from tests.live_server import GunicornServer

TOKEN = "metrics-token-live-test"
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "one two three"}]}


@pytest.fixture
def refuser():
    fake = Refuser()
    yield fake
    fake.stop()


@pytest.fixture
def observed(upstream, refuser, tmp_path, monkeypatch):
    """Two workers; the fake provider's primary URL resets every connection."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    entry = provider_entry(upstream)
    entry["base_urls"] = [f"{refuser.url}/v1", entry.pop("base_url")]
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    env = {"GATEWAY_METRICS_TOKEN": TOKEN, "GATEWAY_LOG_FORMAT": "json",
           "GATEWAY_RATELIMIT_ENABLED": "false", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "GATEWAY_UPSTREAM_URL_COOLDOWN": "600"}
    srv = GunicornServer(tmp_path, providers=[entry], workers=2, env=env)
    srv.key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


def post(server, body=BODY, request_id=None, **kw):
    headers = {"Authorization": f"Bearer {server.key}", "Connection": "close"}
    if request_id:
        headers["x-request-id"] = request_id
    return requests.post(f"{server.url}/v1/chat/completions", json=body, headers=headers,
                         timeout=20, **kw)


def json_lines(server) -> list[dict]:
    lines = []
    for line in server.logs().splitlines():
        if line.startswith("{"):
            lines.append(json.loads(line))
    return lines


def scrape(server) -> dict:
    text = requests.get(f"{server.url}/metrics", timeout=10,
                        headers={"Authorization": f"Bearer {TOKEN}"}).text
    return {f.name: f for f in text_string_to_metric_families(text)}


def total(families, name, sample, **labels):
    return sum(s.value for s in families[name].samples
               if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()))


def access_pids(server) -> set:
    return {e["pid"] for e in json_lines(server) if e["logger"] == "tollgate.access"}


def both_workers_serving(server) -> int:
    """List models until both workers have answered (a loaded machine may leave one idle for a
    while); returns how many listings that took."""
    sent, deadline = 0, time.monotonic() + 30
    with ThreadPoolExecutor(max_workers=8) as pool:
        while len(access_pids(server)) < 2:
            assert time.monotonic() < deadline, "the second worker never answered"
            list(pool.map(lambda _: requests.get(
                f"{server.url}/v1/models", timeout=10,
                headers={"Authorization": f"Bearer {server.key}", "Connection": "close"}),
                range(8)))
            sent += 8
    return sent


def test_metrics_add_up_across_workers_and_logs_carry_request_ids(observed, upstream, refuser):
    listings = both_workers_serving(observed)
    first = post(observed, request_id="first-failover")
    assert first.status_code == 200 and first.headers["x-tollgate-attempts"] == "2"
    upstream.push(*[Script(delay=0.05) for _ in range(40)])  # requests overlap: both workers

    def one(i):
        stream = i % 2 == 1
        body = {**BODY, "stream": stream, "stream_options": {"include_usage": True}} \
            if stream else BODY
        resp = post(observed, body, request_id=f"burst-{i}")
        assert resp.status_code == 200
        if not stream:
            return resp.json()["usage"]["completion_tokens"]
        chunks = [json.loads(e[6:]) for e in resp.text.split("\n\n")
                  if e.startswith("data: {")]
        return next(c["usage"]["completion_tokens"] for c in chunks if c.get("usage"))

    with ThreadPoolExecutor(max_workers=8) as pool:
        output = sum(pool.map(one, range(40))) + first.json()["usage"]["completion_tokens"]

    time.sleep(0.3)  # access lines of streams are written as they close
    families = scrape(observed)
    served = dict(family="openai", model="gpt-test", provider="fake", status="200")
    assert total(families, "tollgate_requests", "tollgate_requests_total", **served) == 41
    # ... and the listings, which each of the two workers answered some of, add up too
    assert total(families, "tollgate_requests", "tollgate_requests_total", family="openai",
                 model="", status="200") == listings
    assert total(families, "tollgate_tokens", "tollgate_tokens_total", kind="output") == output
    # each worker learns of the dead URL on its own (memory breakers): one failure per attempt
    assert total(families, "tollgate_upstream_failures", "tollgate_upstream_failures_total",
                 provider="fake", kind="connect") == refuser.connections >= 1
    assert total(families, "tollgate_request_duration_seconds",
                 "tollgate_request_duration_seconds_count", family="openai") >= 41
    assert total(families, "tollgate_open_streams", "tollgate_open_streams") == 0
    assert total(families, "tollgate_holds_open", "tollgate_holds_open") == 0

    lines = json_lines(observed)
    access = [e for e in lines if e["logger"] == "tollgate.access"
              and e["path"] == "/v1/chat/completions"]
    by_id = {}
    for entry in access:
        by_id.setdefault(entry["request_id"], []).append(entry)
    assert all(len(by_id[f"burst-{i}"]) == 1 for i in range(40))  # one line per request
    line = by_id["burst-1"][0]
    assert line["provider"] == "fake" and line["status"] == 200 and line["output_tokens"] > 0
    assert float(line["credits"]) > 0 and line["family"] == "openai"
    failover = [e for e in lines if e["request_id"] == "first-failover"]
    assert {e["logger"] for e in failover} >= {"services.relay", "tollgate.access"}
    assert not any(e["logger"] == "tollgate.access" and e["path"] == "/metrics"
                   for e in lines)  # probes are not logged at info level
    logs = observed.logs()
    assert UPSTREAM_KEY not in logs and observed.key not in logs and "one two three" not in logs


@pytest.fixture
def single(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    srv = GunicornServer(tmp_path, providers=[provider_entry(upstream)],
                         env={"GATEWAY_RATELIMIT_ENABLED": "false"})
    srv.key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


def slow_stream(server, into: list, started: threading.Event):
    with post(server, {**BODY, "stream": True}, stream=True) as resp:
        chunks = []
        for chunk in resp.iter_content(None):
            chunks.append(chunk)
            started.set()
        into.append(b"".join(chunks))


WORDS = " ".join(f"w{i}" for i in range(12))


def test_sighup_reloads_workers_without_dropping_streams(single, upstream):
    upstream.push(Script(content=WORDS, chunk_gap=0.2))
    bodies, started = [], threading.Event()
    reader = threading.Thread(target=slow_stream, args=(single, bodies, started))
    reader.start()
    assert started.wait(10)
    booted = single.logs().count("Booting worker")
    os.kill(single.proc.pid, signal.SIGHUP)
    reader.join(20)
    assert bodies and bodies[0].endswith(b"data: [DONE]\n\n"), bodies
    assert b"w11" in bodies[0] and b'"error"' not in bodies[0]
    deadline = time.monotonic() + 20
    while single.logs().count("Booting worker") == booted:  # the new worker
        assert time.monotonic() < deadline, single.logs()
        time.sleep(0.1)
    assert post(single).status_code == 200
    assert single.proc.poll() is None


def test_sigterm_drains_a_stream_then_exits(single, upstream):
    upstream.push(Script(content=" ".join(f"w{i}" for i in range(24)), chunk_gap=0.2))
    bodies, started = [], threading.Event()
    reader = threading.Thread(target=slow_stream, args=(single, bodies, started))
    reader.start()
    assert started.wait(10)
    single.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 3  # the worker stops accepting within its 1 s heartbeat
    while True:
        try:
            requests.get(f"{single.url}/healthz", timeout=2)
        except requests.ConnectionError:
            break
        assert time.monotonic() < deadline, "still accepting new connections"
        time.sleep(0.1)
    assert reader.is_alive()  # the stream is still going meanwhile
    reader.join(20)
    assert bodies and bodies[0].endswith(b"data: [DONE]\n\n") and b"w23" in bodies[0]
    assert single.proc.wait(20) == 0
    shown = single.flask("credits", "show", "alice")
    assert len([line for line in shown.splitlines() if "gpt-test" in line]) == 1, shown
