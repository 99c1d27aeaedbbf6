"""Workers retiring after a burst, in the real server: two gunicorn gevent workers with their
rate limits in Redis, each retiring once grown over its least (1 MB here, 64 by default) and
quiet. Traffic goes on meanwhile, open streams finish, workers take turns, every request is
charged once; with the counts in process memory no worker retires."""

import json
import re
import sqlite3
import threading
import time
import uuid

import pytest
import requests

from tests.conftest import REDIS_URL, UPSTREAM_KEY, UPSTREAM_KEY_ENV, provider_entry
from tests.fake_upstream import FakeUpstream, Script
from tests.live_server import GunicornServer

LOOK = 0.5  # seconds between a worker's looks at its memory
WORDS = " ".join(f"w{i}" for i in range(24))
BOOTED = re.compile(r"Booting worker with pid: (\d+)")
RETIRING = re.compile(r"Worker retiring \(pid:(\d+)\)")
EXITING = re.compile(r"Worker exiting \(pid: (\d+)\)")


def start(upstream, tmp_path, limits_storage: str | None, steady=None) -> GunicornServer:
    env = {"TOLLGATE_RETIRE_GROWTH_MB": "1", "TOLLGATE_MEMORY_LOOK_SECONDS": str(LOOK),
           "GATEWAY_RATELIMIT_ENABLED": "false", "REDIS_URL": limits_storage or ""}
    if limits_storage:
        env["GATEWAY_RATELIMIT_STORAGE_OPTIONS"] = json.dumps(
            {"key_prefix": f"tollgate-test-{uuid.uuid4().hex}"})
    providers = [provider_entry(upstream)]
    if steady is not None:  # its own upstream: the burst's scripts stay the burst's
        providers.append(provider_entry(steady, "steady", ("gpt-steady",)))
    srv = GunicornServer(tmp_path, providers=providers, workers=2, env=env)
    srv.key = srv.create_key(credits="100000")
    srv.start()
    deadline = time.monotonic() + 30
    while len(BOOTED.findall(srv.logs())) < 2:
        assert time.monotonic() < deadline, srv.logs()
        time.sleep(0.1)
    return srv


def chat(srv, stream=False, model="gpt-test"):
    return requests.post(f"{srv.url}/v1/chat/completions", timeout=30, stream=stream,
                         headers={"Authorization": f"Bearer {srv.key}", "Connection": "close"},
                         json={"model": model, "stream": stream,
                               "messages": [{"role": "user", "content": "x"}]})


def open_streams(srv, upstream, count: int, hold: threading.Event) -> list:
    """`count` streams opened one after another and kept open (the upstream waits for `hold`
    after each one's first chunk): one client thread, `count` open at once in the gateway."""
    upstream.push(*[Script(content=WORDS, hold=hold) for _ in range(count)])
    streams = [chat(srv, stream=True) for _ in range(count)]
    assert [resp.status_code for resp in streams] == [200] * count
    return streams


def words_of(streams) -> list[int]:
    """Reads each stream to its end: how many of the 24 words each relayed."""
    counts = []
    for resp in streams:
        body = resp.content
        assert body.rstrip().endswith(b"data: [DONE]"), body[-200:]
        counts.append(sum(body.count(f'w{i}"'.encode()) for i in range(24)))
    return counts


def burst(srv, upstream, count=400):
    """Streams open together, then ended: what makes the workers grow (4-5 MB each, measured;
    1 MB retires them here)."""
    hold = threading.Event()
    streams = open_streams(srv, upstream, count, hold)
    hold.set()
    assert words_of(streams) == [24] * count


def retiring_while_held(srv, first: set[str]) -> str:
    """Waits for an original worker to retire while it holds a long stream: its retiring is
    logged and it does not exit for several looks, nor does another worker retire meanwhile.
    A worker that exits at once held none of them; the other one then does. Its pid."""
    deadline, seen = time.monotonic() + 20, set()
    while time.monotonic() < deadline:
        logs = srv.logs()
        for pid in set(RETIRING.findall(logs)) & first - seen:
            time.sleep(4 * LOOK)
            logs = srv.logs()
            if pid not in EXITING.findall(logs):
                assert RETIRING.findall(logs)[-1] == pid, "another worker retired meanwhile"
                return pid
            seen.add(pid)
        time.sleep(0.1)
    raise AssertionError("no worker retired holding a long stream:\n" + srv.logs())


def charged(srv) -> tuple[int, int]:
    with sqlite3.connect(srv.tmp_path / "live.db") as con:
        return (con.execute("SELECT count(*) FROM usage_records").fetchone()[0],
                con.execute("SELECT count(*) FROM holds").fetchone()[0])


needs_redis = pytest.mark.skipif(not REDIS_URL, reason="TEST_REDIS_URL is not set")


@needs_redis
def test_grown_workers_retire_in_turn_while_traffic_goes_on(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    steady_upstream = FakeUpstream().start()
    srv = start(upstream, tmp_path, REDIS_URL, steady_upstream)
    try:
        first = set(BOOTED.findall(srv.logs()))
        answers, stop = [], threading.Event()

        def steady():  # one request after another, each on a connection of its own
            while not stop.is_set():
                began = time.monotonic()
                status = chat(srv, model="gpt-steady").status_code
                answers.append((status, time.monotonic() - began))

        ticker = threading.Thread(target=steady)
        ticker.start()
        try:
            long_hold = threading.Event()
            long_ones = open_streams(srv, upstream, 4, long_hold)  # open through the retiring
            burst(srv, upstream)
            held_by = retiring_while_held(srv, first)
            long_hold.set()
            assert words_of(long_ones) == [24] * 4  # none was cut
            deadline = time.monotonic() + 30
            while not first <= set(EXITING.findall(srv.logs())):
                assert time.monotonic() < deadline, srv.logs()
                time.sleep(0.2)
            time.sleep(1)  # the successors answer too
        finally:
            stop.set()
            ticker.join()
        logs = srv.logs()
    finally:
        srv.stop()
        steady_upstream.stop()
    retired = RETIRING.findall(logs)
    assert set(retired[:2]) == first and held_by in first, logs
    # one at a time: the second retires after the first has exited
    second_retires = logs.index(f"Worker retiring (pid:{retired[1]})")
    assert logs.index(f"Worker exiting (pid: {retired[0]})") < second_retires
    assert len(BOOTED.findall(logs)) >= 4  # each replaced
    assert answers and all(status == 200 for status, _ in answers), answers
    assert max(took for _, took in answers) < 5, "a request waited for a worker to boot"
    assert charged(srv) == (len(answers) + 4 + 400, 0)  # each charged once, no hold left open


def test_no_worker_retires_with_rate_limit_counts_in_its_memory(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    srv = start(upstream, tmp_path, None)
    try:
        burst(srv, upstream)
        time.sleep(6 * LOOK)  # looks enough for a retiring worker to have exited
        logs = srv.logs()
    finally:
        srv.stop()
    assert not RETIRING.search(logs) and not EXITING.search(logs), logs
    assert len(BOOTED.findall(logs)) == 2
