"""Passthrough taps: same-format streams relayed untouched while billing reads them."""

import json

import pytest

from errors import UpstreamUnavailable
from translation import ir
from translation.gemini_stream import ArrayTap
from translation.gemini_stream import PassthroughTap as GeminiTap
from translation.openai_stream import PassthroughTap
from translation.registry import FORMATS


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\r\n\r\n"


def gemini_chunk(text, finish=None, usage=None):
    candidate = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        candidate["finishReason"] = finish
    body = {"candidates": [candidate], "modelVersion": "v", "responseId": "r"}
    if usage:
        body["usageMetadata"] = usage
    return body


def test_array_tap_reframes_sse_chunks_untouched():
    tap = ArrayTap()
    chunks = [gemini_chunk("a"), gemini_chunk(" b", "STOP", {"promptTokenCount": 3,
                                                              "candidatesTokenCount": 2})]
    out = b"".join(tap.feed(e) or b"" for e in [b": keep-alive\n\n", *map(sse, chunks)])
    out += tap.end() or b""
    assert json.loads(out) == chunks
    assert out.startswith(b"[" + json.dumps(chunks[0]).encode())  # each chunk's own bytes
    assert tap.content_type == "application/json"
    assert tap.finished and tap.usage == ir.Usage(input=3, output=2)


def test_array_tap_closes_with_the_error_when_cut_short():
    tap = ArrayTap()
    out = tap.feed(sse(gemini_chunk("a")))
    assert tap.end() is None  # unfinished: the relay adds the error event, which closes it
    out += tap.error_event(UpstreamUnavailable("gone"))
    body = json.loads(out)
    assert body[0] == gemini_chunk("a") and body[1]["error"]["status"] == "UNAVAILABLE"
    assert tap.error_event(UpstreamUnavailable("again")) == b""  # closed once only


def test_array_tap_of_an_empty_error_stream_is_an_array():
    tap = ArrayTap()
    assert json.loads(tap.error_event(UpstreamUnavailable("gone")))[0]["error"]["code"] == 502


def test_openai_passthrough_tap_drops_the_usage_chunk_unasked_and_prices_it_when_asked():
    usage = {"prompt_tokens": 5, "completion_tokens": 2}
    usage_chunk = b'data: {"id": "c", "choices": [], "usage": ' + json.dumps(usage).encode() \
        + b"}\n\n"
    content = b'data: {"id": "c", "choices": [{"index": 0, "delta": {"content": "hi"}}]}\n\n'
    quiet = PassthroughTap(forward_usage_chunk=False)
    assert quiet.feed(content) == content and quiet.feed(usage_chunk) is None
    assert quiet.feed(b"data: [DONE]\n\n") == b"data: [DONE]\n\n" and quiet.finished
    priced = PassthroughTap(forward_usage_chunk=True, price=lambda u: u.output * 0.5)
    sent = json.loads(priced.feed(usage_chunk)[6:])
    assert sent["credits_consumed"] == 1.0 and priced.usage == ir.Usage(input=5, output=2)
    assert bytes(quiet.relayed) == content + b"data: [DONE]\n\n"  # what the client got


def openai_content(text):
    return sse({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]})


@pytest.mark.parametrize("make, fmt, event", [
    (lambda: PassthroughTap(forward_usage_chunk=False), "openai", openai_content),
    (GeminiTap, "gemini", lambda text: sse(gemini_chunk(text))),
    (ArrayTap, "gemini", lambda text: sse(gemini_chunk(text))),
])
def test_a_long_stream_is_counted_as_it_goes_in_bounded_memory(make, fmt, event):
    """What a cut stream is charged: all the text relayed, counted a part at a time, while the
    tap holds no more than one part of it."""
    tap, text_of = make(), FORMATS[fmt].output_text_of_events
    tap.text_of = text_of
    words = [f" word{i}" for i in range(4000)]
    sent = b"".join(tap.feed(event(w)) or b"" for w in words)
    assert len(sent) > 4 * tap.FOLD and len(tap.relayed) < tap.FOLD
    assert tap.output_chars(text_of) == len("".join(words)) == len(text_of(sent))
