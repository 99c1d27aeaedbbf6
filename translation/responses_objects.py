"""The Responses response object: read into the IR, and built from it, whole or in streams."""

import time
import uuid

from errors import UpstreamError, redact
from translation import ir
from translation.content import new_call_id
from translation.ir import Usage

TERMINAL = ("response.completed", "response.incomplete")


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


# ---- answers --------------------------------------------------------------------------------
def response_to_ir(body: dict) -> ir.ChatResponse:
    """A Responses response object as the internal answer."""
    if body.get("status") == "failed":
        message = (body.get("error") or {}).get("message") or "the response failed"
        raise UpstreamError(redact(f"the provider failed: {message}"))
    parts = []
    for item in body.get("output") or []:
        if item.get("type") == "message":
            text = "".join(c.get("text") or c.get("refusal") or "" for c in item.get("content")
                           or [] if isinstance(c, dict))
            if text:
                parts.append(ir.Text(text))
        elif item.get("type") == "function_call":
            parts.append(ir.ToolCall(id=item.get("call_id") or new_call_id(),
                                     name=item.get("name") or "",
                                     arguments=item.get("arguments") or "{}"))
    return ir.ChatResponse(id=body.get("id") or "", model=body.get("model") or "", parts=parts,
                           stop_reason=stop_to_ir(body, parts), usage=usage_from(body.get("usage")))


def stop_to_ir(body: dict, parts) -> str:
    reason = (body.get("incomplete_details") or {}).get("reason")
    if body.get("status") == "incomplete":
        return ir.CONTENT_FILTER if reason == "content_filter" else ir.LENGTH
    return ir.TOOL_CALLS if any(isinstance(p, ir.ToolCall) for p in parts) else ir.STOP


def response_from_ir(answer: ir.ChatResponse, req: ir.ChatRequest) -> dict:
    """The response object a Responses client gets for an internal answer."""
    output = []
    text = "".join(p.text for p in answer.parts if isinstance(p, ir.Text))
    if text:
        output.append(message_item(new_id("msg"), text, "completed"))
    for part in answer.parts:
        if isinstance(part, ir.ToolCall):
            output.append(call_item(new_id("fc"), part.id, part.name, part.arguments,
                                    "completed"))
    return response_object(new_id("resp"), int(time.time()), req, output,
                           status=status_of(answer.stop_reason), usage=answer.usage,
                           stop_reason=answer.stop_reason)


def status_of(stop_reason: str) -> str:
    return "incomplete" if stop_reason in (ir.LENGTH, ir.CONTENT_FILTER) else "completed"


def message_item(item_id: str, text: str, status: str) -> dict:
    return {"id": item_id, "type": "message", "status": status, "role": "assistant",
            "content": [output_text(text)] if text is not None else []}


def output_text(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def call_item(item_id, call_id, name, arguments, status) -> dict:
    return {"id": item_id, "type": "function_call", "status": status, "call_id": call_id,
            "name": name, "arguments": arguments}


def response_object(resp_id, created, req, output, *, status, usage=None, stop_reason=None,
                    error=None) -> dict:
    """A whole response object: what the request asked for, what came out, what it used."""
    echo = req.echo
    body = {"id": resp_id, "object": "response", "created_at": created, "status": status,
            "background": False, "error": error, "incomplete_details": None,
            "instructions": echo.get("instructions"),
            "max_output_tokens": echo.get("max_output_tokens"), "metadata": echo.get("metadata")
            or {}, "model": req.model, "output": output,
            "parallel_tool_calls": echo.get("parallel_tool_calls", True),
            "previous_response_id": echo.get("previous_response_id"),
            "reasoning": echo.get("reasoning") or {"effort": None, "summary": None},
            "store": echo.get("store", True), "temperature": echo.get("temperature"),
            "text": echo.get("text") or {"format": {"type": "text"}},
            "tool_choice": echo.get("tool_choice") or "auto", "tools": echo.get("tools") or [],
            "top_p": echo.get("top_p"), "truncation": echo.get("truncation") or "disabled",
            "usage": usage_to(usage) if usage is not None else None, "user": echo.get("user")}
    if status == "completed":
        body["completed_at"] = int(time.time())
    if status == "incomplete":
        reason = "content_filter" if stop_reason == ir.CONTENT_FILTER else "max_output_tokens"
        body["incomplete_details"] = {"reason": reason}
    return body


def usage_from(data) -> Usage | None:
    """Canonical usage from a Responses `usage` object (input_tokens includes cached ones)."""
    if not isinstance(data, dict):
        return None
    details = data.get("input_tokens_details") or {}
    details = details if isinstance(details, dict) else {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    prompt = int(data.get("input_tokens") or 0)
    return Usage(input=max(prompt - cached - written, 0), cache_read=cached, cache_write=written,
                 output=int(data.get("output_tokens") or 0))


def usage_to(usage: Usage) -> dict:
    return {"input_tokens": usage.prompt,
            "input_tokens_details": {"cached_tokens": usage.cache_read,
                                     "cache_write_tokens": usage.cache_write},
            "output_tokens": usage.output, "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": usage.total}


def error_code(err) -> str:
    return {"rate_limit": "rate_limit_exceeded"}.get(err.kind, "server_error")
