"""The OpenAI Responses wire format for the fake upstream: response objects and the SSE grammar.

Scripts work as for the other formats; `finish_reason="length"` gives an incomplete response,
`finish_reason="failed"` a stream (or body) that ends in `response.failed`. `reasoning=True`
on the Script adds a reasoning item with a summary before the answer.
"""

import json

from tests.fake_upstream import call_id, error_body, halves  # noqa: F401 (the wire interface)


def last_user_text(payload) -> str:
    items = (payload or {}).get("input")
    if isinstance(items, str):
        return items
    for item in reversed(items or []):
        if isinstance(item, dict) and item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content
            return " ".join(str(p.get("text", "")) for p in content or []
                            if isinstance(p, dict) and p.get("type") == "input_text")
    return ""


def reply_text(payload, script) -> str:
    if script.content is not None:
        return script.content
    return "" if script.tool_calls else f"echo: {last_user_text(payload)}"


def usage_for(payload, script, text) -> dict | None:
    usage = script.usage
    if usage == "auto":
        prompt = len(json.dumps(payload.get("input")).split()) + 3
        usage = {"input_tokens": prompt, "output_tokens": len(text.split())}
    if usage is None:
        return None
    if "prompt_tokens" in usage:  # a Chat-shaped script: the same numbers, Responses names
        usage = {"input_tokens": usage["prompt_tokens"],
                 "output_tokens": usage["completion_tokens"],
                 "cached": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0)}
    return {"input_tokens": usage["input_tokens"],
            "input_tokens_details": {"cached_tokens": usage.get("cached", 0)},
            "output_tokens": usage["output_tokens"],
            "output_tokens_details": {"reasoning_tokens": usage.get("reasoning", 0)},
            "total_tokens": usage["input_tokens"] + usage["output_tokens"]}


def output_items(payload, script) -> list[dict]:
    text = reply_text(payload, script)
    items = []
    if getattr(script, "reasoning", False):
        items.append({"id": "rs_fake", "type": "reasoning",
                      "summary": [{"type": "summary_text", "text": "Thinking it over."}]})
    if text:
        items.append({"id": "msg_fake", "type": "message", "status": "completed",
                      "role": "assistant",
                      "content": [{"type": "output_text", "text": text, "annotations": []}]})
    for i, (name, args) in enumerate(script.tool_calls or []):
        items.append({"id": f"fc_fake{i}", "type": "function_call", "status": "completed",
                      "call_id": call_id(i), "name": name, "arguments": json.dumps(args)})
    return items


def response(payload, script, status, output) -> dict:
    text = reply_text(payload, script)
    body = {"id": "resp_fake", "object": "response", "created_at": 1760000000, "status": status,
            "error": None, "incomplete_details": None, "instructions": payload.get("instructions"),
            "model": payload.get("model", "unknown"), "output": output,
            "parallel_tool_calls": True, "tool_choice": "auto", "tools": payload.get("tools", []),
            "temperature": 1.0, "top_p": 1.0, "previous_response_id": None,
            "usage": usage_for(payload, script, text) if status != "in_progress" else None}
    if status == "incomplete":
        body["incomplete_details"] = {"reason": "max_output_tokens"}
    if status == "failed":
        body["error"] = {"code": "server_error", "message": "fake upstream failed mid-response"}
    return body


def error_event(message) -> bytes:
    """A mid-stream failure as OpenAI ends a stream: response.failed, then an error event."""
    failed = {"id": "resp_fake", "object": "response", "status": "failed",
              "error": {"code": "invalid_api_key", "message": message}}
    events = [("response.failed", {"response": failed}),
              ("error", {"code": "invalid_api_key", "message": message, "param": None})]
    return b"".join(
        f"event: {kind}\ndata: {json.dumps({'type': kind, 'sequence_number': 900 + i, **fields})}"
        f"\n\n".encode() for i, (kind, fields) in enumerate(events))


def final_status(script) -> str:
    return {"length": "incomplete", "failed": "failed"}.get(script.finish_reason, "completed")


def completion(payload, script) -> dict:
    return response(payload, script, final_status(script), output_items(payload, script))


def is_stream(request, payload) -> bool:
    return isinstance(payload, dict) and bool(payload.get("stream"))


def stream_content_type(request) -> str:
    return "text/event-stream"


def count(payload) -> dict:
    return {"object": "response.input_tokens",
            "input_tokens": len(json.dumps(payload.get("input")).split()) + 7}


def stream_events(request, payload, script) -> list[bytes]:
    """The whole Responses event sequence, as OpenAI sends it, for the scripted reply."""
    events, seq = [], [0]

    def emit(kind, **fields):
        data = {"type": kind, "sequence_number": seq[0], **fields}
        seq[0] += 1
        events.append(f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode())

    started = response(payload, script, "in_progress", [])
    emit("response.created", response=started)
    emit("response.in_progress", response=started)
    items = output_items(payload, script)
    for index, item in enumerate(items):
        _item_events(emit, index, item)
    emit(f"response.{final_status(script)}",
         response=response(payload, script, final_status(script), items))
    return events


def _item_events(emit, index, item) -> None:
    if item["type"] == "message":
        text = item["content"][0]["text"]
        emit("response.output_item.added", output_index=index,
             item={**item, "status": "in_progress", "content": []})
        part = {"type": "output_text", "text": "", "annotations": []}
        emit("response.content_part.added", item_id=item["id"], output_index=index,
             content_index=0, part=part)
        for i, word in enumerate(text.split(" ")):
            emit("response.output_text.delta", item_id=item["id"], output_index=index,
                 content_index=0, delta=word if i == 0 else " " + word, logprobs=[])
        emit("response.output_text.done", item_id=item["id"], output_index=index,
             content_index=0, text=text, logprobs=[])
        emit("response.content_part.done", item_id=item["id"], output_index=index,
             content_index=0, part={**part, "text": text})
    elif item["type"] == "function_call":
        emit("response.output_item.added", output_index=index,
             item={**item, "status": "in_progress", "arguments": ""})
        for piece in halves(item["arguments"]):
            emit("response.function_call_arguments.delta", item_id=item["id"],
                 output_index=index, delta=piece)
        emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
             name=item["name"], arguments=item["arguments"])
    else:
        emit("response.output_item.added", output_index=index, item={**item, "summary": []})
        summary = item["summary"][0]
        emit("response.reasoning_summary_part.added", item_id=item["id"], output_index=index,
             summary_index=0, part={"type": "summary_text", "text": ""})
        emit("response.reasoning_summary_text.delta", item_id=item["id"], output_index=index,
             summary_index=0, delta=summary["text"])
        emit("response.reasoning_summary_text.done", item_id=item["id"], output_index=index,
             summary_index=0, text=summary["text"])
        emit("response.reasoning_summary_part.done", item_id=item["id"], output_index=index,
             summary_index=0, part=summary)
    emit("response.output_item.done", output_index=index, item=item)
