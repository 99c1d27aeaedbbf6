"""The provider layer maps every upstream fault to a GatewayError, in one place: statuses, error
bodies sent with 2xx, unreachable upstreams, and streams that break or stall. Real HTTP to the
fake upstream on loopback; no app."""

import socket
import threading

import pytest

from errors import (
    GatewayError,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from providers.anthropic import AnthropicProvider
from providers.gemini import GeminiProvider
from providers.http import pooled_session
from providers.openai import OpenAIProvider
from providers.registry import Upstream
from tests.conftest import UPSTREAM_KEY
from tests.fake_upstream import Script

CHAT = {"messages": [{"role": "user", "content": "one two three four"}]}


def provider(upstream_url, cls=OpenAIProvider, path="/v1", read_timeout=2.0):
    up = Upstream(name="fake", type=cls.wire_format, base_url=upstream_url + path,
                  api_key=UPSTREAM_KEY, models={"m": "m"},
                  output_limit_field="max_completion_tokens")
    return cls(up, pooled_session(4), timeout=(1.0, read_timeout))


def open_with(upstream, script, *, stream):
    upstream.push(script)
    return provider(upstream.url).open({**CHAT, "stream": stream}, model="m", stream=stream)


@pytest.mark.parametrize("status, body, headers, kind, expected", [
    (401, None, {}, UpstreamError, (502, "upstream_auth_failed")),
    (403, None, {}, UpstreamError, (502, "upstream_auth_failed")),
    (429, {"error": {"message": "slow down", "code": "insufficient_quota"}}, {},
     UpstreamUnavailable, (503, "upstream_quota_exhausted")),
    (429, None, {"retry-after": "7"}, UpstreamRateLimited, (429, "upstream_rate_limited")),
    (500, None, {}, UpstreamUnavailable, (502, "upstream_unavailable")),
    (503, None, {}, UpstreamUnavailable, (503, "upstream_unavailable")),
    (529, None, {}, UpstreamUnavailable, (503, "upstream_unavailable")),
    (404, None, {}, UpstreamError, (404, "invalid_request_error")),  # the vendor's type
    (418, None, {}, UpstreamError, (400, "error")),
])
def test_error_statuses(upstream, status, body, headers, kind, expected):
    with pytest.raises(GatewayError) as info:
        open_with(upstream, Script(status=status, body=body, headers=headers), stream=False)
    err = info.value
    assert type(err) is kind and (err.status, err.code) == expected
    if headers:
        assert err.headers["Retry-After"] == "7"


def test_a_refused_request_keeps_its_message_without_the_key(upstream):
    body = {"error": {"message": f"bad field; your key {UPSTREAM_KEY} is fine",
                      "type": "invalid_request_error", "code": "bad_field"}}
    with pytest.raises(UpstreamError) as info:
        open_with(upstream, Script(status=400, body=body), stream=False)
    err = info.value
    assert (err.status, err.kind, err.code) == (400, "invalid_request", "bad_field")
    assert "bad field" in err.message and UPSTREAM_KEY not in err.message


def test_gemini_bad_key_is_a_credentials_fault(upstream):
    body = {"error": {"code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
                      "details": [{"reason": "API_KEY_INVALID"}]}}
    upstream.push(Script(status=400, body=body))
    with pytest.raises(UpstreamError) as info:
        provider(upstream.url, GeminiProvider, "/v1beta").open(
            {"contents": []}, model="g", stream=False)
    assert info.value.code == "upstream_auth_failed"


def test_unreachable_upstream():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with pytest.raises(UpstreamUnavailable) as info:
        provider(f"http://127.0.0.1:{port}").open(CHAT, model="m", stream=False)
    assert "could not be reached" in info.value.message


def test_no_answer_in_time(upstream):
    upstream.push(Script(delay=1.5))
    with pytest.raises(UpstreamTimeout) as info:
        provider(upstream.url, read_timeout=0.5).open(CHAT, model="m", stream=False)
    assert info.value.status == 504


def test_an_error_object_in_a_2xx_body(upstream):
    resp = open_with(upstream, Script(body={"error": {"message": f"boom {UPSTREAM_KEY}"}},
                                      status=200), stream=False)
    with pytest.raises(UpstreamError) as info:
        resp.body()
    assert "boom" in info.value.message and UPSTREAM_KEY not in info.value.message


class OneAnswer:
    """A loopback upstream that answers one request with `head` and `body` as given, then
    closes the connection, or keeps it open and silent (`stall`)."""

    def __init__(self, head: bytes, body: bytes, *, stall=False):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.done = threading.Event()
        threading.Thread(target=self._serve, args=(head, body, stall), daemon=True).start()

    def _serve(self, head, body, stall):
        conn, _ = self.listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(head + b"\r\n\r\n" + body)
            if stall:
                self.done.wait(10)

    def close(self):
        self.done.set()
        self.listener.close()


JSON_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json"
WHOLE = b'{"id": "c", "choices": []}'


@pytest.mark.parametrize("head, body, read", [
    (JSON_HEAD + b"\r\nContent-Length: %d" % len(WHOLE), WHOLE, WHOLE),
    (JSON_HEAD + b"\r\nTransfer-Encoding: chunked", b"5\r\n" + WHOLE[:5] + b"\r\n%x\r\n"
     % (len(WHOLE) - 5) + WHOLE[5:] + b"\r\n0\r\n\r\n", WHOLE),
    (JSON_HEAD + b"\r\nContent-Length: 500", WHOLE, UpstreamUnavailable),  # closed short
    (JSON_HEAD + b"\r\nTransfer-Encoding: chunked", b"5\r\n" + WHOLE[:5] + b"\r\n",
     UpstreamUnavailable),  # closed between chunks
    (JSON_HEAD + b"\r\nTransfer-Encoding: chunked", b"zz\r\n", UpstreamUnavailable),
], ids=["length", "chunked", "cut-short", "cut-between-chunks", "bad-chunk-size"])
def test_a_whole_answer_read_to_its_end_or_broken_off(head, body, read):
    upstream = OneAnswer(head, body)
    try:
        resp = provider(upstream.url).open(CHAT, model="m", stream=False)
        if isinstance(read, bytes):
            assert resp.body() == read
        else:
            with pytest.raises(read) as info:
                resp.body()
            assert info.value.message == "provider fake broke off its answer"
    finally:
        upstream.close()


def test_a_whole_answer_that_stalls():
    upstream = OneAnswer(JSON_HEAD + b"\r\nContent-Length: 500", WHOLE[:10], stall=True)
    try:
        resp = provider(upstream.url, read_timeout=0.3).open(CHAT, model="m", stream=False)
        with pytest.raises(UpstreamTimeout) as info:
            resp.body()
        assert info.value.message == "provider fake stopped sending"
    finally:
        upstream.close()


def test_a_2xx_that_does_not_stream(upstream):
    resp = open_with(upstream, Script(content_type="application/json"), stream=True)
    with pytest.raises(UpstreamUnavailable) as info:
        resp.expect_stream()
    assert "did not stream" in info.value.message


def read_all(resp) -> bytes:
    out = b""
    while data := resp.read():
        out += data
    return out


def test_a_stream_that_breaks_off(upstream):
    resp = open_with(upstream, Script(drop_after=2), stream=True)
    resp.expect_stream()
    with pytest.raises(UpstreamUnavailable) as info:
        read_all(resp)
    assert info.value.message == "the upstream connection broke mid-stream"
    resp.close()


def test_a_stream_that_stalls(upstream):
    upstream.push(Script(silence_after_first=2.0))
    resp = provider(upstream.url, read_timeout=0.3).open({**CHAT, "stream": True}, model="m",
                                                         stream=True)
    resp.expect_stream()
    with pytest.raises(UpstreamTimeout) as info:
        read_all(resp)
    assert info.value.message == "the upstream stopped sending"
    resp.close()


def test_a_whole_stream_reads_to_its_end(upstream):
    resp = open_with(upstream, Script(), stream=True)
    resp.expect_stream()
    assert read_all(resp).endswith(b"data: [DONE]\n\n")
    resp.close()


def test_client_headers_reach_anthropic_upstreams_as_they_came(upstream):
    prov = provider(upstream.url, AnthropicProvider)
    resp = prov.open({"max_tokens": 5, **CHAT}, model="c", stream=False,
                     headers={"anthropic-beta": "b1", "x-other": "no"})
    resp.body()
    sent = upstream.last.headers
    assert sent["Anthropic-Beta"] == "b1" and "X-Other" not in sent
    assert upstream.last.json["model"] == "c"
