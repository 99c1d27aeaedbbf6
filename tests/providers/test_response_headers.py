"""Upstream answers' header blocks: providers.http.parse_headers, which http.client uses in the
gateway's processes, gives the message the email parser gives, for every kind of block."""

import http.client
import io

import pytest

from providers import http as upstream_http

OPENAI_LIKE = (
    b"Date: Wed, 02 Dec 2026 16:00:00 GMT\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: keep-alive\r\naccess-control-expose-headers: "
    b"X-Request-ID\r\nopenai-organization: user-abc\r\nopenai-processing-ms: 412\r\n"
    b"openai-version: 2020-10-01\r\nx-ratelimit-limit-requests: 10000\r\n"
    b"x-ratelimit-remaining-tokens: 29999\r\nx-ratelimit-reset-requests: 6ms\r\n"
    b"x-request-id: req_0123456789abcdef\r\nset-cookie: __cf_bm=x; path=/; HttpOnly\r\n"
    b"Set-Cookie: _cfuvid=y; path=/\r\nServer: cloudflare\r\nCF-RAY: 8f-AMS\r\n"
    b"alt-svc: h3=\":443\"; ma=86400\r\n\r\n")
PLAIN = [
    OPENAI_LIKE,
    b"A: 1\r\nA: 2\r\nB:\r\nC:   x  \r\n\r\n",  # repeated, empty, spaces kept at the end
    b"A: caf\xe9\r\n\r\n",  # latin-1
    b"A: 1\n\n",  # bare line feeds
    b"\r\n",  # no fields
    b"X-Y_Z.w~: v\r\nFrom: someone\r\n\r\n",
]
OTHER = [
    b"A: 1\r\n folded\r\n\r\n",  # obs-fold: a continuation line
    b"bad line\r\nA: 1\r\n\r\n",  # no colon
    b"A: x\ry\r\n\r\n",  # a lone CR inside a line
    b"From nobody\r\nA: 1\r\n\r\n",  # a Unix From line
    b": novalue\r\n\r\n",  # no name
    b"A\t: 1\r\n\r\n",  # white space before the colon
    b"A: 1\r\n",  # cut short: no blank line
]


def described(message):
    return (type(message), message.items(), [repr(d) for d in message.defects],
            message.get_payload(), message.get_unixfrom())


def read_lines(block: bytes) -> list[bytes]:
    return io.BytesIO(block).readlines()


@pytest.mark.parametrize("block", PLAIN + OTHER)
def test_the_same_message_as_the_email_parser(block):
    fp_ours, fp_theirs = io.BytesIO(block + b"body"), io.BytesIO(block + b"body")
    ours = upstream_http.parse_headers(fp_ours)
    theirs = upstream_http._STDLIB_PARSE_HEADERS(fp_theirs)
    assert described(ours) == described(theirs)
    assert fp_ours.read() == fp_theirs.read()  # the body starts where it did


@pytest.mark.parametrize("block", PLAIN)
def test_plain_blocks_skip_the_email_parser(block):
    assert upstream_http._plain_fields(read_lines(block), http.client.HTTPMessage) is not None


@pytest.mark.parametrize("block", OTHER[:-1])
def test_other_blocks_go_to_the_email_parser(block):
    assert upstream_http._plain_fields(read_lines(block), http.client.HTTPMessage) is None


def test_http_client_uses_it_and_keeps_its_limits():
    assert http.client.parse_headers is upstream_http.parse_headers
    with pytest.raises(http.client.LineTooLong):
        upstream_http.parse_headers(io.BytesIO(b"A: " + b"x" * 70000 + b"\r\n\r\n"))
    with pytest.raises(http.client.HTTPException, match="more than 100 headers"):
        upstream_http.parse_headers(io.BytesIO(b"A: 1\r\n" * 101 + b"\r\n"))
