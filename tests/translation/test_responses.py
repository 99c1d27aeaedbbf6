"""The Responses format module: requests into and out of the IR, answers, usage, and streams
encoded then decoded back to the same events."""

import json

import pytest

from errors import InvalidRequest, UpstreamUnavailable
from tests import fake_responses
from tests.fake_upstream import Script
from translation import ir, responses
from translation.responses_format import output_text_of_events
from translation.responses_stream import PassthroughTap, StreamDecoder, StreamEncoder
from translation.sse import EventSplitter, event_data

BODY = {
    "model": "m", "instructions": "Be brief.", "max_output_tokens": 50, "temperature": 0.3,
    "input": [
        {"role": "developer", "content": "Use metric units."},
        {"role": "user", "content": [
            {"type": "input_text", "text": "Weather here?"},
            {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
            {"type": "input_file", "filename": "a.pdf",
             "file_data": "data:application/pdf;base64,JVBE"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
         "content": [{"type": "output_text", "text": "Checking.", "annotations": []}]},
        {"type": "function_call", "call_id": "c1", "name": "get_weather",
         "arguments": '{"city":"Paris"}'},
        {"type": "function_call", "call_id": "c2", "name": "get_weather",
         "arguments": '{"city":"Rome"}'},
        {"type": "function_call_output", "call_id": "c1", "output": "18C"},
        {"type": "function_call_output", "call_id": "c2", "output": "21C"}],
    "tools": [{"type": "function", "name": "get_weather", "parameters": {"type": "object"}}],
    "tool_choice": {"type": "function", "name": "get_weather"}, "parallel_tool_calls": False,
    "text": {"format": {"type": "json_schema", "name": "w", "schema": {"type": "object"}}},
    "metadata": {"k": "v"}, "store": True,
}


def test_request_to_ir():
    req = responses.request_to_ir(BODY)
    assert req.system == ["Be brief.", "Use metric units."]
    assert [t.role for t in req.turns] == ["user", "assistant", "user"]
    user, assistant, results = req.turns
    assert [type(p) for p in user.parts] == [ir.Text, ir.Image, ir.Document]
    assert user.parts[1].mime == "image/png" and user.parts[2].mime == "application/pdf"
    assert assistant.parts[0] == ir.Text("Checking.")
    assert [(c.id, c.name) for c in assistant.parts[1:]] == [("c1", "get_weather"),
                                                             ("c2", "get_weather")]
    assert [(r.call_id, r.name, r.content) for r in results.parts] == [
        ("c1", "get_weather", [ir.Text("18C")]), ("c2", "get_weather", [ir.Text("21C")])]
    assert req.tool_choice == ir.ToolChoice("tool", "get_weather")
    assert req.parallel_tool_calls is False and req.max_tokens == 50
    assert req.output_format == {"schema": {"type": "object"}, "name": "w"}


def test_request_round_trip_through_ir():
    out = responses.request_from_ir(responses.request_to_ir(BODY), "up")
    assert out["instructions"] == "Be brief.\n\nUse metric units." and out["store"] is False
    kinds = [i["type"] for i in out["input"]]
    assert kinds == ["message", "message", "function_call", "function_call",
                     "function_call_output", "function_call_output"]
    assert out["input"][1]["content"] == [{"type": "output_text", "text": "Checking."}]
    assert out["text"]["format"] == {"type": "json_schema", "name": "w",
                                     "schema": {"type": "object"}}
    assert out["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert out["max_output_tokens"] == 50 and out["model"] == "up"


@pytest.mark.parametrize("body, param", [
    ({"input": [{"type": "web_search_call", "id": "ws"}]}, "input[0].type"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input[0].content[0].type"),
    ({"input": "x", "tools": [{"type": "file_search"}]}, "tools[0].type"),
    ({"input": "x", "tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
    ({"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
])
def test_untranslatable_requests_name_the_field(body, param):
    with pytest.raises(InvalidRequest) as caught:
        responses.request_to_ir({"model": "m", **body})
    assert caught.value.param == param


def test_answers_and_usage():
    payload = {"model": "m", "input": "hi"}
    body = fake_responses.completion(payload, Script(content="hello", tool_calls=[
        ("f", {"a": 1})], usage={"input_tokens": 10, "output_tokens": 5, "cached": 4}))
    answer = responses.response_to_ir(body)
    assert answer.parts[0] == ir.Text("hello") and answer.stop_reason == ir.TOOL_CALLS
    assert answer.usage == ir.Usage(input=6, cache_read=4, output=5)
    req = responses.request_to_ir({**payload, "metadata": {"k": "v"}})
    out = responses.response_from_ir(answer, req)
    assert [i["type"] for i in out["output"]] == ["message", "function_call"]
    assert out["usage"]["input_tokens"] == 10 and out["usage"]["total_tokens"] == 15
    assert out["usage"]["input_tokens_details"]["cached_tokens"] == 4
    assert out["metadata"] == {"k": "v"} and out["status"] == "completed"
    cut = fake_responses.completion(payload, Script(content="a", finish_reason="length"))
    assert responses.response_to_ir(cut).stop_reason == ir.LENGTH


EVENTS = [ir.Start("up", "m"), ir.TextDelta("Hel"), ir.TextDelta("lo"),
          ir.ToolCallStart(0, "c1", "f"), ir.ToolCallDelta(0, '{"a":'), ir.ToolCallDelta(0, "1}"),
          ir.Finish(ir.TOOL_CALLS), ir.UsageUpdate(ir.Usage(input=3, output=2)), ir.End()]


def decode(data: bytes, decoder=None) -> list:
    decoder = decoder or StreamDecoder()
    return [e for event in EventSplitter().feed(data) for e in decoder.feed(event)]


def test_stream_encoded_then_decoded_gives_the_same_events():
    encoder = StreamEncoder(responses.request_to_ir({"model": "m", "input": "x"}))
    data = b"".join(encoder.encode(e) for e in EVENTS)
    payloads = [json.loads(event_data(e)) for e in EventSplitter().feed(data)]
    assert [p["sequence_number"] for p in payloads] == list(range(len(payloads)))
    decoded = decode(data)
    assert [type(e) for e in decoded] == [type(e) for e in EVENTS]
    assert decoded[1:] == EVENTS[1:]
    final = payloads[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello"
    assert final["output"][1]["arguments"] == '{"a":1}' and final["status"] == "completed"


def test_decoder_reads_the_fake_upstream_stream():
    payload = {"model": "m", "input": "hi", "stream": True}
    data = b"".join(fake_responses.stream_events(None, payload, Script(
        content="a b", tool_calls=[("f", {"x": 1})], reasoning=True)))
    events = decode(data)
    assert "".join(e.text for e in events if isinstance(e, ir.TextDelta)) == "a b"
    assert "".join(e.arguments for e in events if isinstance(e, ir.ToolCallDelta)) == '{"x": 1}'
    assert [e.stop_reason for e in events if isinstance(e, ir.Finish)] == [ir.TOOL_CALLS]
    assert isinstance(events[-1], ir.End)


def test_passthrough_tap_follows_the_stream():
    payload = {"model": "m", "input": "hi", "stream": True}
    events = fake_responses.stream_events(None, payload, Script(content="a b c"))
    tap = PassthroughTap()
    for event in events[:-1]:
        assert tap.feed(event) == event
    assert not tap.finished and tap.response_id == "resp_fake"
    last_seq = json.loads(event_data(events[-2]))["sequence_number"]
    failure = [json.loads(event_data(e)) for e in EventSplitter().feed(
        tap.error_event(UpstreamUnavailable("cut")))]
    assert [(f["type"], f["sequence_number"]) for f in failure] == [
        ("response.failed", last_seq + 1), ("error", last_seq + 2)]
    assert failure[1]["error"]["message"] == "cut"
    tap = PassthroughTap()
    for event in events:
        tap.feed(event)
    assert tap.finished and tap.usage.output == 3
    assert output_text_of_events(b"".join(events)) == "a b c"
