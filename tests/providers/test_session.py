"""The upstream session: what a proxy's POST must not pick up (environment proxies, cookies),
and a pool that keeps every connection of a burst of open streams. Real HTTP on loopback."""

import json
import logging
import socket
import threading

from providers.http import pooled_session
from tests.fake_upstream import Script
from tests.live_server import CountingSocket, free_port
from tests.providers.test_faults import CHAT, provider


def test_environment_proxies_and_upstream_cookies_are_ignored(upstream, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    p = provider(upstream.url)
    upstream.push(Script(headers={"Set-Cookie": "track=1; Path=/"}))
    assert p.open({**CHAT}, model="m", stream=False).body()
    assert p.open({**CHAT}, model="m", stream=False).body()
    first, second = upstream.received[-2:]
    assert "Cookie" not in second.headers and "cookie" not in second.headers
    assert first.headers.get("Content-Type", "").startswith("application/json")
    assert int(first.headers["Content-Length"]) > 0


def test_a_burst_of_open_streams_all_return_to_the_pool(upstream, caplog):
    """Every connection opened for streams held at once is kept for reuse, none discarded."""
    streams = 12
    p = provider(upstream.url)
    p.session = pooled_session(streams)
    opened = []
    for _ in range(streams):
        upstream.push(Script())
        opened.append(p.open({**CHAT, "stream": True}, model="m", stream=True))
    with caplog.at_level(logging.WARNING, logger="urllib3"):
        for resp in opened:
            resp.expect_stream()  # as the relay reads it: the chunked framing undone here
            while resp.read():
                pass
            resp.close()
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]
    pool = next(iter(p.session.adapter.poolmanager.pools._container.values()))
    assert pool.num_connections == streams and pool.pool.qsize() == streams


def test_a_finished_answer_is_freed_at_once_not_by_the_garbage_collector(upstream):
    """An upstream answer read to its end and closed holds no reference cycle: reference
    counting frees it (its requests and urllib3 responses, its buffers) as soon as it is
    dropped. A cycle would keep every stream of a burst alive until a full collection."""
    import gc
    import weakref

    p = provider(upstream.url)
    gc.collect()
    gc.disable()
    try:
        for stream in (True, False):
            upstream.push(Script())
            resp = p.open({**CHAT, "stream": stream}, model="m", stream=stream)
            if stream:
                resp.expect_stream()
                while resp.read():
                    pass
                resp.close()
            else:
                resp.body()
            gone = weakref.ref(resp)
            del resp
            assert gone() is None, f"stream={stream}: the answer outlived its last reference"
    finally:
        gc.enable()


ANSWER = json.dumps({"id": "c", "object": "chat.completion", "model": "m", "choices": [
    {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}}).encode()


class KeepAliveUpstream:
    """An HTTP/1.1 upstream on loopback that keeps its connections open: it answers
    `per_connection[i]` requests on its i-th connection, then closes it (with no
    "Connection: close": the client believes it may keep it)."""

    def __init__(self, per_connection):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.served, self.closed = [], threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(per_connection,), daemon=True)
        self.thread.start()

    def _serve(self, per_connection):
        for count in per_connection:
            conn, _ = self.listener.accept()
            for _ in range(count):
                self._answer(conn)
            self.served.append(count)
            conn.close()
            self.closed.set()

    @staticmethod
    def _answer(conn):
        data = b""
        while b"\r\n\r\n" not in data:
            data += conn.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length")), 0)
        while len(body) < length:
            body += conn.recv(65536)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\n\r\n%s" % (len(ANSWER), ANSWER))

    def close(self):
        self.listener.close()


def test_a_pooled_connection_the_upstream_closed_is_not_reused():
    """A kept-alive connection is reused while the upstream keeps it open; once the upstream
    closes it after an answer (as servers do when idle or restarting), the next request sees it
    is gone and opens another, instead of sending into the closed one and failing."""
    upstream = KeepAliveUpstream([2, 1])  # two answers on the first connection, then closed
    try:
        p = provider(upstream.url)
        for _ in range(2):
            assert b"hi" in p.open({**CHAT}, model="m", stream=False).body()
        assert upstream.closed.wait(5)
        pool = next(iter(p.session.adapter.poolmanager.pools._container.values()))
        kept = pool.pool.queue[-1]
        for _ in range(100):  # the close reaches the client's socket
            if not kept.is_connected:
                break
            threading.Event().wait(0.01)
        assert not kept.is_connected
        assert b"hi" in p.open({**CHAT}, model="m", stream=False).body()
        upstream.thread.join(5)
        assert upstream.served == [2, 1]
    finally:
        upstream.close()


def test_connections_left_idle_after_a_burst_are_closed(upstream):
    """After a burst, the pool holds a connection per stream; those idle since before the cutoff
    are closed and dropped, the rest stay and are taken newest first, and requests go on."""
    import time

    from providers.http import IDLE_CLOSER

    p = provider(upstream.url)
    p.session = pooled_session(8)
    opened = []
    for _ in range(3):
        upstream.push(Script())
        opened.append(p.open({**CHAT, "stream": True}, model="m", stream=True))
    for resp in opened:  # back in the pool one after another, the last one latest
        while resp.read():
            pass
        resp.close()
        time.sleep(0.02)
    pool = next(iter(p.session.adapter.poolmanager.pools._container.values()))
    kept = [c for c in pool.pool.queue if c is not None]
    assert len(kept) == 3
    newest = kept[-1]
    assert IDLE_CLOSER.close_idle(newest.idle_since - 0.01) == 2  # the two older ones
    assert [c for c in pool.pool.queue if c is not None] == [newest]
    assert pool.pool.queue[-1] is newest and len(pool.pool.queue) == 8  # no place lost
    upstream.push(Script())
    assert p.open({**CHAT}, model="m", stream=False).body()
    assert IDLE_CLOSER.close_idle(time.monotonic() + 1) == 1  # everything, once idle enough
    assert all(c is None for c in pool.pool.queue)
    upstream.push(Script())
    assert p.open({**CHAT}, model="m", stream=False).body()  # a new connection


def test_a_request_goes_out_in_one_send_with_its_body():
    """The header block and a small body leave in one send (one packet, one read upstream); a
    large body after the header block; a request without a body, its header block alone."""
    from providers.http import COALESCE_MAX, get, send

    upstream = KeepAliveUpstream([4])
    try:
        p = provider(upstream.url)
        assert p.open({**CHAT}, model="m", stream=False).body()  # a kept connection
        pool = next(iter(p.session.adapter.poolmanager.pools._container.values()))
        conn = pool.pool.queue[-1]
        conn.sock = counting = CountingSocket(conn.sock)
        url = upstream.url + "/v1/chat/completions"
        for body in (b'{"model": "m", "messages": []}', b" " * (COALESCE_MAX + 1)):
            send(p.session, url, body=body, headers={"Content-Type": "application/json"},
                 timeout=5, upstream=p.upstream).body()
            assert pool.pool.queue[-1] is conn  # the same connection each time
        get(p.session, upstream.url + "/v1/models", headers={}, timeout=5,
            upstream=p.upstream).body()
        small, large_head, large_body, bodyless = counting.sent
        assert small.startswith(b"POST /v1/chat/completions") and small.endswith(b"[]}")
        assert large_head.endswith(b"\r\n\r\n") and large_body == b" " * (COALESCE_MAX + 1)
        assert bodyless.startswith(b"GET /v1/models") and bodyless.endswith(b"\r\n\r\n")
    finally:
        upstream.close()


def test_the_upstream_answer_reads_as_requests_gives_it_without_a_cookie_jar_made(upstream):
    """The session's answers are requests Responses built without the per-answer cookie jar and
    header copy: headers case-insensitive, values, encoding and body as requests gives them;
    cookies, if asked for, an empty jar (a proxy keeps none, Set-Cookie or not)."""
    import requests
    from requests.cookies import RequestsCookieJar

    url, body = upstream.url + "/v1/chat/completions", {**CHAT, "model": "m"}
    headers = {"Set-Cookie": "track=1; Path=/", "Retry-After": "7"}
    upstream.push(Script(headers=headers))
    reply = pooled_session(4).post_stream(url, body=json.dumps(body).encode(), timeout=(5, 5),
                                          headers={"Content-Type": "application/json"})
    upstream.push(Script(headers=headers))
    plain = requests.post(url, json=body, timeout=5)  # requests' own Response, for comparison
    assert reply.status_code == plain.status_code == 200
    for name in ("retry-after", "RETRY-AFTER", "Content-Type", "set-cookie"):
        assert reply.headers.get(name) == plain.headers.get(name) is not None
    assert reply.encoding == plain.encoding and reply.reason == plain.reason
    assert json.loads(reply.content)["choices"] == json.loads(plain.content)["choices"]
    assert isinstance(reply.cookies, RequestsCookieJar) and not list(reply.cookies)
    reply.cookies = jar = RequestsCookieJar()
    assert reply.cookies is jar


def test_a_urls_pool_is_kept_while_open_and_found_again_once_closed(upstream):
    """The adapter keeps the pool it found for a URL, so the pool manager is not asked on every
    request; once the manager lets go of that pool (evicted past its hosts, or all of them
    cleared) the next request gets the manager's new one and succeeds."""
    p = provider(upstream.url)
    manager = p.session.adapter.poolmanager
    upstream.push(Script(), Script(), Script())
    assert p.open({**CHAT}, model="m", stream=False).body()
    first = next(iter(manager.pools._container.values()))
    assert p.open({**CHAT}, model="m", stream=False).body()
    assert list(manager.pools._container.values()) == [first]
    manager.clear()  # lets go of every pool, as an eviction of one
    assert p.open({**CHAT}, model="m", stream=False).body()
    again = list(manager.pools._container.values())
    assert len(again) == 1 and again[0] is not first and again[0].pool is not None

