"""The worker's response class against gunicorn's own, on a real socket pair: the same bytes on
the wire, in fewer sends (the header block goes out with the body's first piece). And the
worker's garbage collector settings, in a real gunicorn."""

import re
import socket

import pytest
import requests
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import Response

from gunicorn_worker import COALESCE_MAX, COLLECT_AFTER, OneSendResponse
from tests.live_server import CountingSocket, GunicornServer


def answer(response_class, method, headers, pieces) -> list[bytes]:
    """What the response class sends for one request and the app's answer (status 200)."""
    client, server = socket.socketpair()
    try:
        client.sendall(f"{method} /v1/x HTTP/1.1\r\nHost: gw\r\n\r\n".encode())
        cfg = Config()
        req = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
        sock = CountingSocket(server)
        resp = response_class(req, sock, cfg)
        resp.start_response("200 OK", headers)
        for piece in pieces:
            resp.write(piece)
        resp.close()
        return sock.sent
    finally:
        client.close()
        server.close()


def same_bytes(sent: list[bytes]) -> bytes:
    return re.sub(rb"Date: [^\r]*\r\n", b"", b"".join(sent))  # the clock's second may turn


JSON = [("Content-Type", "application/json")]


@pytest.mark.parametrize("method, headers, pieces", [
    ("POST", JSON + [("Content-Length", "12")], [b'{"ok": true', b"}"]),
    ("POST", JSON, [b"data: 1\n\n", b"data: 2\n\n", b"data: [DONE]\n\n"]),  # chunked
    ("HEAD", JSON + [("Content-Length", "2")], [b"{}"]),
    ("POST", JSON + [("Content-Length", str(COALESCE_MAX + 1))], [b" " * (COALESCE_MAX + 1)]),
])
def test_the_header_block_goes_out_with_the_first_piece(method, headers, pieces):
    ours = answer(OneSendResponse, method, headers, pieces)
    theirs = answer(Response, method, headers, pieces)
    assert same_bytes(ours) == same_bytes(theirs)
    assert ours[0].startswith(b"HTTP/1.1 200 OK\r\n")
    if method == "HEAD":
        assert len(ours) == 1 and ours[0].endswith(b"\r\n\r\n")  # no body, the block alone
    elif len(pieces[0]) > COALESCE_MAX:
        assert ours[0].endswith(b"\r\n\r\n") and len(ours) == len(theirs)  # sent apart
    else:
        assert ours[0].endswith(pieces[0] + (b"\r\n" if "Content-Length" not in dict(headers)
                                             else b""))
        assert len(ours) == len(theirs) - 1  # one send fewer


def test_the_worker_keeps_the_collector_off_what_the_app_loaded(tmp_path):
    """Under the shipped config and worker, what loading the app made is frozen (out of the
    collector's walks), objects made later are still collected, and the first threshold is the
    worker's."""
    srv = GunicornServer(tmp_path, providers=[], app="tests.gc_probe:app").start()
    try:
        state = requests.get(f"{srv.url}/", timeout=5).json()
    finally:
        srv.stop()
    assert state["threshold"][0] == COLLECT_AFTER
    assert state["frozen"] > 10_000  # gevent, gunicorn and the probe: the worker's own start
    assert not state["loaded_seen"]
    assert state["made_now_seen"]
