"""The Anthropic Messages wire format for the fake upstream: JSON answers and the SSE sequence."""

import json

from tests.fake_upstream import call_id, echo_reply, halves

STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
                "content_filter": "refusal"}
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
               404: "not_found_error", 429: "rate_limit_error", 500: "api_error",
               529: "overloaded_error"}


def error_body(status):
    return {"type": "error", "error": {"type": ERROR_TYPES.get(status, "api_error"),
                                       "message": f"fake upstream error {status}"}}


def error_event(message) -> bytes:
    body = {"type": "error", "error": {"type": "authentication_error", "message": message}}
    return b"event: error\ndata: " + json.dumps(body).encode() + b"\n\n"


def last_user_text(payload) -> str:
    for message in reversed((payload or {}).get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            return " ".join(b.get("text", "") for b in content if b.get("type") == "text")
    return ""


def reply_text(payload, script) -> str:
    return echo_reply(script, last_user_text(payload))


def words(payload) -> int:
    return sum(len(json.dumps(m.get("content")).split()) for m in payload.get("messages", []))


def usage_for(payload, script, text) -> dict | None:
    if script.usage != "auto":
        return script.usage
    return {"input_tokens": words(payload) + 3, "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0, "output_tokens": len(text.split())}


def stop_reason(script) -> str:
    reason = "tool_calls" if script.tool_calls and script.finish_reason == "stop" \
        else script.finish_reason
    return STOP_REASONS.get(reason, "end_turn")


def tool_id(i) -> str:
    return "toolu_" + call_id(i)


def completion(payload, script) -> dict:
    text = reply_text(payload, script)
    content = [{"type": "text", "text": text}] if text else []
    content += [{"type": "tool_use", "id": tool_id(i), "name": name, "input": args}
                for i, (name, args) in enumerate(script.tool_calls or [])]
    return {"id": "msg_fake", "type": "message", "role": "assistant",
            "model": payload.get("model", "unknown"), "content": content,
            "stop_reason": stop_reason(script), "stop_sequence": None,
            "usage": usage_for(payload, script, text) or {}}


def is_stream(request, payload) -> bool:
    return isinstance(payload, dict) and bool(payload.get("stream"))


def stream_content_type(request) -> str:
    return "text/event-stream"


def count(payload) -> dict:
    return {"input_tokens": words(payload) + len(json.dumps(payload.get("system", "")).split())}


def event(name, **fields) -> bytes:
    return f"event: {name}\ndata: {json.dumps({'type': name, **fields})}\n\n".encode()


def stream_events(request, payload, script) -> list[bytes]:
    """The full Messages event sequence: text block, tool_use blocks with split input."""
    text = reply_text(payload, script)
    usage = usage_for(payload, script, text) or {}
    start_usage = {**usage, "output_tokens": 1}
    events = [event("message_start", message={
        "id": "msg_fake", "type": "message", "role": "assistant",
        "model": payload.get("model", "unknown"), "content": [], "stop_reason": None,
        "stop_sequence": None, "usage": start_usage}), event("ping")]
    index = 0
    if text:
        events.append(event("content_block_start", index=0,
                            content_block={"type": "text", "text": ""}))
        for i, word in enumerate(text.split(" ")):
            events.append(event("content_block_delta", index=0, delta={
                "type": "text_delta", "text": word if i == 0 else " " + word}))
        events.append(event("content_block_stop", index=0))
        index = 1
    for i, (name, args) in enumerate(script.tool_calls or []):
        events.append(event("content_block_start", index=index, content_block={
            "type": "tool_use", "id": tool_id(i), "name": name, "input": {}}))
        for piece in ["", *halves(json.dumps(args))]:  # the first fragment is often ""
            events.append(event("content_block_delta", index=index, delta={
                "type": "input_json_delta", "partial_json": piece}))
        events.append(event("content_block_stop", index=index))
        index += 1
    events.append(event("message_delta", delta={"stop_reason": stop_reason(script),
                                                "stop_sequence": None},
                        usage={"output_tokens": usage.get("output_tokens", 0)}))
    events.append(event("message_stop"))
    return events
