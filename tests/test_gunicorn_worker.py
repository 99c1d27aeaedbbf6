"""The worker's response class against gunicorn's own, on a real socket pair: the same bytes on
the wire, in fewer sends (the header block goes out with the body's first piece). And the
worker's garbage collector settings, in a real gunicorn. And when a worker retires."""

import os
import re
import socket
import subprocess
import time

import pytest
import requests
from gunicorn.config import Config
from gunicorn.http.parser import RequestParser
from gunicorn.http.wsgi import Response

from gunicorn_worker import (
    COALESCE_MAX,
    COLLECT_AFTER,
    RETIRE_QUIET,
    OneSendResponse,
    Retirement,
    RetireTurn,
)
from tests.live_server import BIN, ROOT, CountingSocket, GunicornServer


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
    ("POST", JSON, [b" " * (COALESCE_MAX + 1), b"data: 2\n\n"]),  # chunked, a large first piece
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


def test_a_send_the_kernel_takes_only_part_of_is_finished(tmp_path):
    """A client that reads slowly: a body piece larger than the socket takes at once goes out
    whole and in order, the rest after the first send's part."""
    import threading

    def slow_answer(response_class):
        client, server = socket.socketpair()
        server.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        server.settimeout(10)  # non-blocking under the hood: a send may take only part
        received = bytearray()

        def read():
            while chunk := client.recv(1000):
                received.extend(chunk)
                time.sleep(0.0005)

        reader = threading.Thread(target=read)
        reader.start()
        try:
            client.sendall(b"POST /v1/x HTTP/1.1\r\nHost: gw\r\n\r\n")
            cfg = Config()
            req = next(iter(RequestParser(cfg, server, ("127.0.0.1", 1))))
            sock = CountingSocket(server)
            resp = response_class(req, sock, cfg)
            resp.start_response("200 OK", JSON)
            for piece in (b"a" * 100, bytes(range(256)) * 1024, b"z" * 10):
                resp.write(piece)
            resp.close()
            server.shutdown(socket.SHUT_WR)
            reader.join(10)
            return bytes(received), sock.sent
        finally:
            client.close()
            server.close()

    ours, sent = slow_answer(OneSendResponse)
    theirs, _ = slow_answer(Response)
    assert same_bytes([ours]) == same_bytes([theirs])
    assert len(ours) > 262_144
    assert any(len(piece) < 262_144 for piece in sent[1:3])  # the big piece: a part, the rest


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


MB = 1 << 20


@pytest.mark.parametrize("growth, workers, storage", [
    ("0", 2, "redis://127.0.0.1:6379/0"),  # turned off
    ("64", 1, "redis://127.0.0.1:6379/0"),  # nobody would take its traffic meanwhile
    ("64", 2, "memory://"),  # its rate-limit counts would reset
])
def test_retiring_is_off_where_it_would_cost_something(growth, workers, storage):
    assert Retirement.for_worker(growth, workers=workers, limits_storage=storage) is None


@pytest.mark.parametrize("growth", ["-1", "lots", "1.5", "", " 64", "\u0664"])
def test_a_bad_retire_growth_is_refused_with_its_name(growth):
    with pytest.raises(ValueError, match="TOLLGATE_RETIRE_GROWTH_MB"):
        Retirement.for_worker(growth, workers=2, limits_storage="redis://h/0")


def test_a_worker_retires_once_grown_over_its_least_and_quiet():
    policy = Retirement.for_worker("64", workers=4, limits_storage="rediss://h/0")
    assert policy.growth == 64 * MB
    assert not policy.due(100 * MB, 0)  # its first look: the least so far
    assert not policy.due(90 * MB, 0)  # lower still (after a trim): the new least
    assert not policy.due(153 * MB, 0)  # 63 MB over it
    assert not policy.due(400 * MB, RETIRE_QUIET + 1)  # grown, but too many connections open
    assert policy.due(154 * MB, RETIRE_QUIET)
    assert policy.least == 90 * MB


def test_workers_take_turns_to_retire(tmp_path):
    path = str(tmp_path / "turn")
    first = RetireTurn.take(path, spacing=60)
    assert first is not None  # the file is new: no turn has ended yet
    assert RetireTurn.take(path, spacing=0) is None  # held until the first one's process ends
    first.done()
    os.close(first.fd)  # as its process's exit would
    assert RetireTurn.take(path, spacing=60) is None  # ended under a minute ago
    second = RetireTurn.take(path, spacing=0)
    assert second is not None
    os.close(second.fd)
    with open(path, "w") as fh:
        fh.write("1796.30")  # cut short while written, by a process killed then: long ago
    third = RetireTurn.take(path, spacing=60)
    assert third is not None
    os.close(third.fd)
    with open(path, "w") as fh:
        fh.write(repr(time.time() + 3600))  # the clock has since been set back an hour
    assert RetireTurn.take(path, spacing=60) is not None


def test_no_turn_is_taken_through_a_link(tmp_path):
    target = tmp_path / "someone-elses"
    target.write_text("theirs")
    (tmp_path / "turn").symlink_to(target)
    assert RetireTurn.take(str(tmp_path / "turn"), spacing=0) is None
    assert target.read_text() == "theirs"


def test_a_bad_retire_growth_stops_the_server_at_start(tmp_path):
    srv = GunicornServer(tmp_path, providers=[], workers=2,
                         env={"TOLLGATE_RETIRE_GROWTH_MB": "lots"})
    done = subprocess.run([os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py", srv.app],
                          cwd=ROOT, env=srv.env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "TOLLGATE_RETIRE_GROWTH_MB must be a whole number of megabytes" in done.stderr
