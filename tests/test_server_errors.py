"""gunicorn's own answers, to requests it refuses before the app sees them, are JSON in the
OpenAI error envelope (tests/test_server.py has the rest of the real server's behaviour)."""

import json
import socket

import pytest

from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, every_provider_type
from tests.live_server import GunicornServer


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from tests.fake_upstream import FakeUpstream
    upstream = FakeUpstream().start()
    srv = GunicornServer(tmp_path_factory.mktemp("server-errors"),
                         providers=every_provider_type(upstream),
                         env={UPSTREAM_KEY_ENV: UPSTREAM_KEY})
    srv.start()
    yield srv
    srv.stop()
    upstream.stop()


def raw(server, request: bytes) -> tuple[int, dict, bytes]:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


@pytest.mark.parametrize("request_bytes, status", [
    (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n", 501),
    (b"GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    (b"GET /v1/models?key=tg-" + b"k" * 40 + b" HTTP/1.1 junk\r\nHost: x\r\n\r\n", 400),
    (b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
], ids=["transfer-coding", "oversized-header", "bad-request-line", "long-uri"])
def test_gunicorn_answers_are_json(server, request_bytes, status):
    got, headers, body = raw(server, request_bytes)
    assert got == status and headers["content-type"] == "application/json"
    error = json.loads(body)["error"]
    assert error["message"] and error["type"] in ("invalid_request_error", "server_error")
    assert b"tg-kkkk" not in body


def test_double_slash_is_served_by_the_real_server(server):
    got, headers, body = raw(server, b"GET //v1//models HTTP/1.1\r\nHost: x\r\n"
                                     b"Connection: close\r\n\r\n")
    assert got == 401 and headers["content-type"] == "application/json"
    assert "Authorization: Bearer" in json.loads(body)["error"]["message"]
