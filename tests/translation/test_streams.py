"""Pure stream translation: upstream events decoded into IR events, encoded for the client."""

import json

from errors import UpstreamUnavailable
from translation import anthropic_stream, gemini_stream, ir, openai, openai_stream
from translation.sse import EventSplitter, event_data
from translation.taps import TranslatingTap

REQ = ir.ChatRequest(model="client-model", turns=[ir.Turn("user", [ir.Text("x")])])


def sse(obj) -> bytes:
    return b"data: " + json.dumps(obj).encode() + b"\n\n"


def chunk(delta=None, finish=None, usage=None, choices=True):
    body = {"id": "c1", "model": "m", "choices": [
        {"index": 0, "delta": delta or {}, "finish_reason": finish}] if choices else []}
    if usage is not None:
        body["usage"] = usage
    return sse(body)


def run(tap, events) -> bytes:
    out = b"".join(tap.feed(e) or b"" for e in events)
    return out + (tap.end() or b"")


def anthropic_events(data: bytes) -> list[tuple[str, dict]]:
    out = []
    for event in EventSplitter().feed(data):
        name = event.split(b"\n")[0].removeprefix(b"event: ").decode()
        out.append((name, json.loads(event_data(event))))
    return out


def test_openai_fragments_route_by_id_then_index_then_current():
    decoder = openai_stream.StreamDecoder()
    events = []
    for fragment in ({"index": 0, "id": "a", "function": {"name": "f", "arguments": ""}},
                     {"index": 0, "function": {"arguments": '{"x"'}},
                     {"function": {"arguments": ": 1}"}},  # no index, no id: the current call
                     {"id": "b", "function": {"name": "g", "arguments": "{}"}},  # no index
                     {"id": "b", "function": {"arguments": ""}}):
        events += decoder.feed(chunk({"tool_calls": [fragment]}))
    starts = [(e.index, e.id, e.name) for e in events if isinstance(e, ir.ToolCallStart)]
    assert starts == [(0, "a", "f"), (1, "b", "g")]
    args = {}
    for e in events:
        if isinstance(e, ir.ToolCallDelta):
            args[e.index] = args.get(e.index, "") + e.arguments
    assert args == {0: '{"x": 1}', 1: "{}"}


def test_openai_to_anthropic_holds_the_stop_until_usage_arrives():
    tap = TranslatingTap(openai_stream.StreamDecoder(), anthropic_stream.StreamEncoder(REQ))
    usage = {"prompt_tokens": 10, "completion_tokens": 4,
             "prompt_tokens_details": {"cached_tokens": 6}}
    out = run(tap, [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Hi"}, finish=None),
        chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                               "function": {"name": "f", "arguments": ""}}]}),
        chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}, finish="tool_calls"),
        chunk(choices=False, usage=usage),
        b"data: [DONE]\n\n"])
    events = anthropic_events(out)
    assert [name for name, _ in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop",
        "content_block_start", "content_block_delta", "content_block_stop", "message_delta",
        "message_stop"]
    assert events[4][1]["content_block"] == {"type": "tool_use", "id": "call_1", "name": "f",
                                             "input": {}}
    delta = events[7][1]
    assert delta["delta"]["stop_reason"] == "tool_use"
    assert delta["usage"]["input_tokens"] == 4 and delta["usage"]["cache_read_input_tokens"] == 6
    assert tap.finished and tap.usage == ir.Usage(input=4, cache_read=6, output=4)


def test_content_and_finish_in_one_chunk_are_both_kept():
    tap = TranslatingTap(openai_stream.StreamDecoder(), anthropic_stream.StreamEncoder(REQ))
    out = run(tap, [chunk({"role": "assistant", "content": "All"}, finish="length"),
                    b"data: [DONE]\n\n"])
    events = dict(anthropic_events(out))
    assert events["content_block_delta"]["delta"]["text"] == "All"
    assert events["message_delta"]["delta"]["stop_reason"] == "max_tokens"


def anthropic_upstream(*events):
    return [f"event: {name}\ndata: {json.dumps({'type': name, **body})}\n\n".encode()
            for name, body in events]


def test_anthropic_to_openai_numbers_tool_calls_apart_from_text_blocks():
    req = ir.ChatRequest(model="client-model", turns=[], include_usage=True)
    tap = TranslatingTap(anthropic_stream.StreamDecoder(), openai_stream.StreamEncoder(req))
    out = run(tap, anthropic_upstream(
        ("message_start", {"message": {"id": "msg_1", "model": "c", "usage": {
            "input_tokens": 5, "cache_read_input_tokens": 2, "output_tokens": 1}}}),
        ("ping", {}),
        ("content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}),
        ("content_block_delta", {"index": 0, "delta": {"type": "text_delta", "text": "Hi"}}),
        ("content_block_stop", {"index": 0}),
        ("content_block_start", {"index": 1, "content_block": {
            "type": "tool_use", "id": "toolu_1", "name": "f", "input": {}}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                       "partial_json": ""}}),
        ("content_block_delta", {"index": 1, "delta": {"type": "input_json_delta",
                                                       "partial_json": '{"a":1}'}}),
        ("content_block_stop", {"index": 1}),
        ("message_delta", {"delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 9}}),
        ("message_stop", {})))
    chunks = [json.loads(event_data(e)) for e in EventSplitter().feed(out)
              if event_data(e) != b"[DONE]"]
    calls = [c["choices"][0]["delta"]["tool_calls"][0] for c in chunks
             if c["choices"] and "tool_calls" in c["choices"][0]["delta"]]
    assert calls[0] == {"index": 0, "id": "toolu_1", "type": "function",
                        "function": {"name": "f", "arguments": ""}}
    assert calls[1] == {"index": 0, "function": {"arguments": '{"a":1}'}}
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["prompt_tokens"] == 7
    assert out.endswith(b"data: [DONE]\n\n")
    assert tap.usage == ir.Usage(input=5, cache_read=2, output=9)


def test_gemini_json_array_stream_is_valid_json_even_when_cut_short():
    def gemini_chunk(parts, finish=None):
        candidate = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = finish
        return sse({"candidates": [candidate], "responseId": "r"})

    encoder = gemini_stream.StreamEncoder(REQ, sse=False)
    tap = TranslatingTap(gemini_stream.StreamDecoder(), encoder)
    out = run(tap, [gemini_chunk([{"text": "Hi"}]),
                    gemini_chunk([{"functionCall": {"name": "f", "args": {"a": 1}}}], "STOP")])
    body = json.loads(out)
    assert body[0]["candidates"][0]["content"]["parts"] == [{"text": "Hi"}]
    call = body[1]["candidates"][0]["content"]["parts"][0]["functionCall"]
    assert (call["name"], call["args"]) == ("f", {"a": 1}) and call["id"]
    assert tap.finished
    cut = TranslatingTap(gemini_stream.StreamDecoder(), gemini_stream.StreamEncoder(REQ, sse=False))
    partial = run(cut, [gemini_chunk([{"text": "Hi"}])])  # no finishReason: not finished
    assert not cut.finished
    partial += cut.error_event(UpstreamUnavailable("the upstream stream ended unexpectedly"))
    error = json.loads(partial)[-1]["error"]
    assert (error["code"], error["status"]) == (502, "UNAVAILABLE")


def test_upstream_error_event_becomes_the_clients_error():
    tap = TranslatingTap(anthropic_stream.StreamDecoder(), openai_stream.StreamEncoder(REQ))
    out = run(tap, anthropic_upstream(
        ("message_start", {"message": {"id": "m", "usage": {"input_tokens": 1}}}),
        ("error", {"error": {"type": "overloaded_error", "message": "Overloaded"}})))
    assert tap.failed and not tap.finished
    error = json.loads(event_data(EventSplitter().feed(out)[-2]))
    assert "Overloaded" in error["error"]["message"]
    assert openai.DONE in out


def test_event_splitter_cuts_any_stream_cut_anywhere_as_the_boundary_pattern_does():
    """Whole events with their own terminators, whichever of the three line ends a stream uses
    (or mixes), however its bytes were cut into reads: the `\\n\\n`-only fast path and the
    general one agree with a plain scan for the boundary pattern."""
    import random

    from translation.sse import _BOUNDARY

    def scanned(stream: bytes) -> tuple[list[bytes], bytes]:
        events, start = [], 0
        for match in _BOUNDARY.finditer(stream):
            events.append(stream[start:match.end()])
            start = match.end()
        return events, stream[start:]

    rng = random.Random(20261203)
    with_cr = [b"\n", b"\r", b"a", b"data: x", b"\n\n", b"\r\n", b"\r\n\r\n", b":", b" "]
    for alphabet in (with_cr, [p for p in with_cr if b"\r" not in p]):
        for _ in range(20_000):
            stream = b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
            cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(0, 5)))
            splitter, got = EventSplitter(), []
            for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True):
                got += splitter.feed(stream[a:b])
            assert (got, splitter.pending) == scanned(stream), stream


def test_event_data_reads_one_line_events_as_it_reads_any():
    """The one-data-line fast path gives what the general line-by-line reading gives, for random
    events made of data lines, other fields, comments and the three line ends."""
    import random

    def by_lines(event: bytes) -> bytes:
        parts = [line[5:] for line in event.splitlines() if line.startswith(b"data:")]
        return b"\n".join(p[1:] if p.startswith(b" ") else p for p in parts)

    rng = random.Random(20261204)
    pieces = [b"data: ", b"data:", b"event: x", b": hi", b"{}", b" ", b"\n", b"\r\n", b"\r", b"x"]
    for _ in range(20_000):
        event = b"".join(rng.choice(pieces) for _ in range(rng.randint(0, 6))) + b"\n\n"
        assert event_data(event) == by_lines(event), event
    assert event_data(b'data: {"a":1}\n\n') == b'{"a":1}'


def test_event_json_is_what_json_reads_and_writes():
    """data_json accepts, returns and refuses what json.loads does (a BOM, whitespace, extra
    data, NaN, surrogate escapes, bytes that are not UTF-8); json_data writes json.dumps' compact
    text with non-ASCII kept."""
    from translation.sse import data_json, json_data

    for data in [b'{"a": 1}', b' {"a":1}', b'{"a":1} ', b'\xef\xbb\xbf{"a":1}', b'{"a":NaN}',
                 b"[1]", b'"s"', b'{"a":"\\ud800"}', b'{"a":1}x', b'{"a"', b"\xff{", b"",
                 '{"x":"\u00e9\u2028"}'.encode(), b'{"a":{"b":[1,2.5e-7,null,true]}}']:
        try:
            want = ("value", repr(json.loads(data)))
        except ValueError as exc:
            want = ("refused", type(exc))
        try:
            got = ("value", repr(data_json(data)))
        except ValueError as exc:
            got = ("refused", type(exc))
        assert got == want, data
    for value in [{"a": "\u00e9\u2028\n\"", "b": [1, 2.5, None, True, {"c": -0.0}]},
                  {"x": float("nan")}, "s", [], {}]:
        assert json_data(value) == json.dumps(value, ensure_ascii=False,
                                              separators=(",", ":")).encode()
