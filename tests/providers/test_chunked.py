"""A streamed answer's chunked framing, undone by providers.http.ChunkedBody as the bytes come:
the same data as http.client's reader for a body cut anywhere, trailers and extensions
included; a broken framing or a connection ending early raises."""

import http.client
import io
import random

import pytest

from providers.http import READ_SIZE, ChunkedBody


def framed(pieces, *, extension=b"", trailers=b"", size=b"%x"):
    body = b"".join(size % len(p) + b"%s\r\n%s\r\n" % (extension, p) for p in pieces)
    return body + b"0\r\n" + trailers + b"\r\n"


class Reads:
    """recv() over fixed reads: each call gives the next piece, then b"" (the peer closed)."""

    def __init__(self, cuts):
        self.cuts, self.sizes = list(cuts), []

    def recv(self, size):
        self.sizes.append(size)
        return self.cuts.pop(0) if self.cuts else b""


def cut(data: bytes, rng) -> list[bytes]:
    points = sorted(rng.sample(range(1, len(data)), rng.randint(0, min(len(data) - 1, 12))))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


def read_all(body: ChunkedBody) -> bytes:
    out = []
    while data := body.read(READ_SIZE):
        out.append(data)
    return b"".join(out)


def http_client_reads(raw: bytes) -> bytes:
    class Sock:
        def makefile(self, mode):
            return io.BufferedReader(io.BytesIO(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                                                b"chunked\r\n\r\n" + raw))

    resp = http.client.HTTPResponse(Sock())
    resp.begin()
    return resp.read()


def test_a_body_cut_anywhere_gives_what_http_client_gives():
    rng = random.Random(15)
    for _ in range(3000):
        pieces = [rng.randbytes(rng.randint(1, 300)).replace(b"\r", b"") or b"x"
                  for _ in range(rng.randint(0, 6))]
        extension = rng.choice([b"", b";name=value", b" ;x"])
        trailers = rng.choice([b"", b"X-Checksum: 1\r\n", b"A: b\r\nC: d\r\n"])
        size = rng.choice([b"%x", b"%X", b"%04x"])
        raw = framed(pieces, extension=extension, trailers=trailers, size=size)
        body = ChunkedBody(Reads(cut(raw, rng)).recv)
        assert read_all(body) == b"".join(pieces) == http_client_reads(raw)
        assert body.done and body.clean


def test_each_whole_chunk_read_alone_is_its_data():
    events = [b"data: {\"n\": %d}\n\n" % i for i in range(5)]
    reads = Reads([framed([e])[:-5] for e in events] + [b"0\r\n\r\n"])
    body = ChunkedBody(reads.recv)
    assert [body.read(READ_SIZE) for _ in events] == events
    assert body.read(READ_SIZE) == b"" and body.done and body.clean


def test_the_first_read_asks_for_the_whole_buffer_then_the_socket_is_read():
    first, then = Reads([b"5\r\nhello\r\n"]), Reads([b"0\r\n\r\n"])
    body = ChunkedBody(first.recv, then=then.recv)
    assert body.read(100) == b"hello" and first.sizes == [READ_SIZE]
    assert body.read(100) == b"" and then.sizes == [100]


def test_bytes_after_the_end_make_the_connection_unusable():
    body = ChunkedBody(Reads([framed([b"abc"]) + b"HTTP/1.1 200 OK\r\n"]).recv)
    assert read_all(body) == b"abc" and body.done and not body.clean


@pytest.mark.parametrize("raw", [
    b"5\r\nhel",  # the connection ends inside a chunk
    b"5\r\nhello\r\n",  # ... before the last chunk
    b"5\r\nhello\r\n0\r\n",  # ... before the empty line after it
    b"5",  # ... inside a size line
])
def test_a_body_that_ends_early_raises_incomplete_read(raw):
    rng = random.Random(1)
    for _ in range(20):
        body = ChunkedBody(Reads(cut(raw, rng) if len(raw) > 1 else [raw]).recv)
        with pytest.raises(http.client.IncompleteRead):
            read_all(body)


@pytest.mark.parametrize("raw", [
    b"zz\r\nhello\r\n0\r\n\r\n",  # not hex
    b"-5\r\nhello\r\n0\r\n\r\n",  # a sign
    b"\r\nhello\r\n0\r\n\r\n",  # no size
    b"5\r\nhelloXY0\r\n\r\n",  # data not followed by CRLF
    b"5" * 5000,  # a size line that never ends
])
def test_a_broken_framing_raises(raw):
    with pytest.raises(ValueError):
        read_all(ChunkedBody(Reads([raw]).recv))


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for a TLS upstream on loopback (openssl, as Debian ships it)."""
    import shutil
    import subprocess

    if not shutil.which("openssl"):
        pytest.skip("needs the openssl command")
    folder = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(folder / "key.pem"),
                    "-out", str(folder / "cert.pem")], check=True, capture_output=True)
    return str(folder / "cert.pem"), str(folder / "key.pem")


@pytest.mark.parametrize("flavour", ["ssl", "gevent"])
def test_a_tls_upstreams_stream_reads_through_the_tls_socket(certificate, flavour):
    """Providers are reached over TLS: the socket under http.client's reader is then a TLS
    socket (gevent's, in the workers), whose recv gives the decrypted bytes. A stream written
    an event at a time reads back event by event, to its end."""
    import socket
    import ssl
    import threading
    import time

    events = [b"data: {\"n\": %d}\n\n" % i for i in range(6)]
    server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_context.load_cert_chain(*certificate)
    listener = socket.create_server(("127.0.0.1", 0))

    def serve():
        conn, _ = listener.accept()
        with server_context.wrap_socket(conn, server_side=True) as tls:
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                        b"Transfer-Encoding: chunked\r\n\r\n")
            for event in events:
                time.sleep(0.02)
                tls.sendall(b"%x\r\n%s\r\n" % (len(event), event))
            tls.sendall(b"0\r\n\r\n")
            time.sleep(0.2)

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    if flavour == "gevent":
        from gevent import socket as gsocket
        from gevent import ssl as gssl
        raw, context = gsocket.create_connection(listener.getsockname()), gssl.SSLContext(
            gssl.PROTOCOL_TLS_CLIENT)
    else:
        raw = socket.create_connection(listener.getsockname())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
    tls = context.wrap_socket(raw)
    try:
        resp = http.client.HTTPResponse(tls)
        resp.begin()
        body = ChunkedBody.over(resp)
        assert body is not None
        got = []
        while data := body.read(READ_SIZE):
            got.append(data)
        assert b"".join(got) == b"".join(events) and body.done and body.clean
        assert len(got) >= 3, "events were not read as they came"
    finally:
        tls.close()
        listener.close()
        server.join(5)
