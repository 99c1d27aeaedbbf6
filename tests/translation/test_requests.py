"""Pure translation of requests and answers between the wire formats, through the IR."""

import json

import pytest

from errors import InvalidRequest
from translation import anthropic, gemini, ir, openai

TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {
    "type": "object", "properties": {"city": {"type": "string"}},
    "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}}}


def openai_conversation():
    return {"model": "m", "tools": [TOOL], "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather?"},
        {"role": "user", "content": [
            {"type": "text", "text": "Here:"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}}]},
        {"role": "developer", "content": "Use Celsius."},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call.1", "type": "function",
             "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'}},
            {"id": "call_2", "type": "function",
             "function": {"name": "get_weather", "arguments": "not json"}}]},
        {"role": "tool", "tool_call_id": "call.1", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "?"}]},
        {"role": "user", "content": "Thanks"}]}


def test_openai_to_anthropic_shapes_the_conversation():
    req = openai.request_to_ir(openai_conversation())
    body = anthropic.request_from_ir(req, "claude-x")
    assert body["system"] == "Be brief.\n\nUse Celsius."  # hoisted, in order
    assert body["max_tokens"] == anthropic.DEFAULT_MAX_TOKENS
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["user", "assistant", "user"]  # same-role turns merged
    first = body["messages"][0]["content"]
    assert [b["type"] for b in first] == ["text", "text", "image", "image"]
    assert first[2]["source"] == {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    assert first[3]["source"] == {"type": "url", "url": "https://example.com/a.jpg"}
    calls = body["messages"][1]["content"]
    assert [b["type"] for b in calls] == ["tool_use", "tool_use"]  # empty text dropped
    assert calls[0]["id"] == "call_1" and calls[0]["input"] == {"city": "Paris"}
    assert calls[1]["input"] == {"arguments": "not json"}
    last = body["messages"][2]["content"]
    assert [b["type"] for b in last] == ["tool_result", "tool_result", "text"]
    assert last[0]["tool_use_id"] == "call_1"  # sanitized the same way as the tool_use id
    assert last[0]["content"] == [{"type": "text", "text": "18C"}]


def test_openai_to_gemini_shapes_the_conversation():
    req = openai.request_to_ir(openai_conversation())
    req.turns[1].parts[2].data, req.turns[1].parts[2].mime = "BBBB", "image/jpeg"  # fetched
    body = gemini.request_from_ir(req, "gemini-x")
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief.\n\nUse Celsius."}]}
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user", "user"]
    assert body["contents"][0]["parts"][2] == {"inlineData": {"mimeType": "image/png",
                                                              "data": "AAAA"}}
    responses = body["contents"][2]["parts"]
    assert responses[0]["functionResponse"] == {"id": "call.1", "name": "get_weather",
                                                "response": {"output": "18C"}}
    assert body["contents"][3]["parts"] == [{"text": "Thanks"}]  # kept apart from responses
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["parametersJsonSchema"]["additionalProperties"] is False


def test_gemini_url_images_must_be_inlined_first():
    req = openai.request_to_ir(openai_conversation())
    with pytest.raises(InvalidRequest):
        gemini.request_from_ir(req, "gemini-x")


def test_sampling_and_tool_choice_mapping():
    body = {"model": "m", "tools": [TOOL], "messages": [{"role": "user", "content": "x"}],
            "temperature": 1.6, "top_p": 0.5, "stop": "END",
            "max_tokens": 10, "tool_choice": "required", "parallel_tool_calls": False}
    req = openai.request_to_ir(body)
    out = anthropic.request_from_ir(req, "c")
    assert out["temperature"] == 1.0 and "top_p" not in out
    assert out["stop_sequences"] == ["END"] and out["max_tokens"] == 10
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    body["tool_choice"] = {"type": "function", "function": {"name": "get_weather"}}
    out = gemini.request_from_ir(openai.request_to_ir(body), "g")
    assert out["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert out["generationConfig"] == {"temperature": 1.6, "topP": 0.5, "maxOutputTokens": 10,
                                       "stopSequences": ["END"]}


def test_gemini_request_without_ids_pairs_results_by_order():
    body = gemini.normalize_keys({"model": "g", "contents": [
        {"role": "user", "parts": [{"text": "hi"}]},
        {"role": "model", "parts": [{"text": "thinking", "thought": True},
                                    {"functionCall": {"name": "a", "args": {"x": 1}}},
                                    {"functionCall": {"name": "b", "args": {}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "a", "response": {"x": 2}}},
                                   {"functionResponse": {"name": "b",
                                                         "response": {"error": "boom"}}}]}],
        "tools": [{"function_declarations": [{"name": "a", "parameters": {
            "type": "OBJECT", "properties": {"x": {"type": "INTEGER", "nullable": True}}}}]}],
        "generation_config": {"max_output_tokens": 5, "candidate_count": 1}})
    out = openai.request_from_ir(gemini.request_to_ir(body), "gpt")
    calls = out["messages"][1]["tool_calls"]
    assert out["messages"][1]["content"] is None  # the thought part was not carried over
    results = out["messages"][2:]
    assert [r["tool_call_id"] for r in results] == [c["id"] for c in calls]
    assert results[0]["content"] == '{"x": 2}' and results[1]["content"] == "Error: boom"
    assert out["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"x": {"type": "integer"}}}
    assert out["max_completion_tokens"] == 5


def test_anthropic_tool_results_become_tool_messages_then_text():
    body = {"model": "c", "max_tokens": 5, "system": [{"type": "text", "text": "S"}],
            "messages": [
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "bad",
                     "is_error": True},
                    {"type": "text", "text": "and?"}]}],
            "tool_choice": {"type": "tool", "name": "f"}}
    out = openai.request_from_ir(anthropic.request_to_ir(body), "gpt")
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant", "tool", "user"]
    assert out["messages"][2]["tool_calls"][0]["function"] == {"name": "f",
                                                               "arguments": '{"a": 1}'}
    assert out["messages"][3] == {"role": "tool", "tool_call_id": "t1", "content": "Error: bad"}
    assert out["tool_choice"] == {"type": "function", "function": {"name": "f"}}


def test_many_choices_are_refused():
    body = {"model": "m", "n": 3, "messages": [{"role": "user", "content": "x"}]}
    for module in (anthropic, gemini, openai):
        with pytest.raises(InvalidRequest) as info:
            module.request_from_ir(openai.request_to_ir(body), "x")
        assert info.value.param == "n"


@pytest.mark.parametrize("reason, parts, expected", [
    ("STOP", [{"text": "hi"}], ir.STOP),
    ("STOP", [{"functionCall": {"name": "f", "args": {}}}], ir.TOOL_CALLS),
    ("MAX_TOKENS", [{"text": "hi"}], ir.LENGTH),
    ("SAFETY", [], ir.CONTENT_FILTER),
    ("MALFORMED_FUNCTION_CALL", [], ir.STOP),
])
def test_gemini_finish_reasons(reason, parts, expected):
    body = {"candidates": [{"content": {"role": "model", "parts": parts},
                            "finishReason": reason}]}
    assert gemini.response_to_ir(body).stop_reason == expected


def test_gemini_blocked_prompt_is_a_content_filter():
    answer = gemini.response_to_ir({"promptFeedback": {"blockReason": "SAFETY"}})
    assert answer.stop_reason == ir.CONTENT_FILTER and answer.parts == []
    req = openai.request_to_ir({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    assert openai.response_from_ir(answer, req)["choices"][0]["finish_reason"] == "content_filter"


def test_stop_reasons_reach_each_client():
    req = openai.request_to_ir({"model": "m", "messages": [{"role": "user", "content": "x"}]})
    answer = anthropic.response_to_ir({"content": [{"type": "text", "text": "a"}],
                                       "stop_reason": "stop_sequence", "stop_sequence": "END"})
    assert anthropic.response_from_ir(answer, req)["stop_sequence"] == "END"
    assert openai.response_from_ir(answer, req)["choices"][0]["finish_reason"] == "stop"
    answer = openai.response_to_ir({"choices": [{"message": {"content": "a"},
                                                 "finish_reason": "length"}]})
    assert anthropic.response_from_ir(answer, req)["stop_reason"] == "max_tokens"
    assert gemini.response_from_ir(answer, req)["candidates"][0]["finishReason"] == "MAX_TOKENS"


def test_usage_in_every_format_means_the_same():
    usage = ir.Usage(input=18, cache_read=12, cache_write=3, output=7)
    assert openai.usage_from(openai.usage_to(usage)) == usage
    assert anthropic.usage_from(anthropic.usage_to(usage)) == usage
    back = gemini.usage_from(gemini.usage_to(usage))  # Gemini has no cache-write figure
    assert back.prompt == usage.prompt and back.cache_read == 12 and back.output == 7
    assert openai.usage_to(usage)["prompt_tokens"] == 33
    assert anthropic.usage_to(usage)["input_tokens"] == 18


def test_error_envelopes():
    from errors import UpstreamTimeout, UpstreamUnavailable

    err = UpstreamUnavailable("down", status=503)
    assert anthropic.error_body(err)["error"]["type"] == "overloaded_error"
    assert gemini.error_body(err)["error"] == {"code": 503, "message": "down",
                                               "status": "UNAVAILABLE"}
    assert anthropic.error_body(UpstreamTimeout("slow"))["error"]["type"] == "timeout_error"
    assert json.loads(openai.error_event(err)[6:].split(b"\n\n")[0])["error"]["message"] == "down"


def test_function_calls_from_elsewhere_get_the_signature_placeholder():
    req = openai.request_to_ir(openai_conversation())
    req.turns[1].parts[2].data, req.turns[1].parts[2].mime = "BBBB", "image/jpeg"
    calls = gemini.request_from_ir(req, "g")["contents"][1]["parts"]
    assert [p.get("thoughtSignature") for p in calls] == [gemini.SIGNATURE_PLACEHOLDER, None]
    answer = gemini.response_to_ir({"candidates": [{"content": {"role": "model", "parts": [
        {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": "real"}]}}]})
    req.turns = [ir.Turn("user", [ir.Text("q")]), ir.Turn("assistant", answer.parts)]
    kept = gemini.request_from_ir(req, "g")["contents"][1]["parts"][0]
    assert kept["thoughtSignature"] == "real"


def test_structured_output_is_carried_across():
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "thing", "schema": schema}}}
    req = openai.request_to_ir(body)
    assert anthropic.request_from_ir(req, "c")["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}}
    config = gemini.request_from_ir(req, "g")["generationConfig"]
    assert config == {"responseMimeType": "application/json", "responseJsonSchema": schema}
    gemini_body = {"model": "g", "contents": [{"parts": [{"text": "x"}]}],
                   "generationConfig": {"responseMimeType": "application/json",
                                        "responseSchema": {"type": "OBJECT"}}}
    out = openai.request_from_ir(gemini.request_to_ir(gemini_body), "gpt")
    assert out["response_format"]["json_schema"]["schema"] == {"type": "object"}
    json_mode = openai.request_to_ir({**body, "response_format": {"type": "json_object"}})
    assert gemini.request_from_ir(json_mode, "g")["generationConfig"] == {
        "responseMimeType": "application/json"}
    assert "output_config" not in anthropic.request_from_ir(json_mode, "c")
