"""Anthropic Messages wire format: requests and answers to and from the IR, errors, usage.

Streams live in translation/anthropic_stream.py; the format object in anthropic_format.py.
"""

import json
import uuid

from errors import InvalidRequest
from translation import ir
from translation.content import (
    dump_arguments,
    is_blank,
    load_arguments,
    merged,
    name_tool_results,
    reject_many_choices,
    safe_id,
    safe_tool_name,
)
from translation.ir import Usage
from translation.sse import encode_event
from translation.tokens import usage_in_body

WIRE = "anthropic"
# Anthropic requires max_tokens; clients of the other formats often leave it out. The relay
# always sets the request's limit (the model's max_output_tokens from [pricing] when the client
# gave none); this is the fallback for a request that reaches here without one.
DEFAULT_MAX_TOKENS = 4096
STOP_TO_IR = {"end_turn": ir.STOP, "stop_sequence": ir.STOP_SEQUENCE, "max_tokens": ir.LENGTH,
              "tool_use": ir.TOOL_CALLS, "refusal": ir.CONTENT_FILTER, "pause_turn": ir.STOP,
              "model_context_window_exceeded": ir.LENGTH}
STOP_FROM_IR = {ir.STOP: "end_turn", ir.STOP_SEQUENCE: "stop_sequence", ir.LENGTH: "max_tokens",
                ir.TOOL_CALLS: "tool_use", ir.CONTENT_FILTER: "refusal"}
ERROR_TYPES = {"invalid_request": "invalid_request_error", "not_found": "not_found_error",
               "authentication": "authentication_error", "permission": "permission_error",
               "rate_limit": "rate_limit_error", "insufficient_credits": "billing_error",
               "api_error": "api_error"}


# ---- requests -------------------------------------------------------------------------------
def request_to_ir(body: dict) -> ir.ChatRequest:
    """A validated Messages request as the internal request."""
    turns = [ir.Turn(m["role"], _blocks_to_parts(m.get("content"), f"messages[{i}].content"))
             for i, m in enumerate(body["messages"])]
    name_tool_results(turns)
    choice, parallel = _choice_to_ir(body.get("tool_choice"))
    return ir.ChatRequest(
        model=body["model"], turns=turns, system=system_texts(body.get("system")),
        max_tokens=body.get("max_tokens"), temperature=body.get("temperature"),
        top_p=body.get("top_p"), top_k=body.get("top_k"),
        stop=list(body.get("stop_sequences") or []),
        tools=[_tool_to_ir(t, i) for i, t in enumerate(body.get("tools") or [])],
        tool_choice=choice, parallel_tool_calls=parallel, stream=bool(body.get("stream")),
        output_format=_format_to_ir(body.get("output_config")))


def system_texts(system) -> list[str]:
    if isinstance(system, str):
        return [] if is_blank(system) else [system]
    return [b["text"] for b in system or [] if isinstance(b, dict) and not is_blank(b.get("text"))]


def _blocks_to_parts(content, where) -> list:
    if isinstance(content, str):
        return [] if content == "" else [ir.Text(content)]
    parts = []
    for j, block in enumerate(content or []):
        part = _block_to_part(block, f"{where}[{j}]")
        if part is not None:
            parts.append(part)
    return parts


def _block_to_part(block, where):
    kind = block.get("type")
    if kind == "text":
        return ir.Text(block.get("text") or "") if block.get("text") else None
    if kind in ("image", "document"):
        source = block.get("source") or {}
        if source.get("type") == "base64" and source.get("data"):
            mime = source.get("media_type") or ("image/png" if kind == "image" else "")
            return (ir.Image(mime=mime, data=source["data"]) if kind == "image"
                    else ir.Document(mime=mime, data=source["data"]))
        if kind == "image" and source.get("type") == "url" and source.get("url"):
            return ir.Image(url=source["url"])
        raise InvalidRequest(f"'{where}.source' must be a base64 source"
                             f"{' or a url source' if kind == 'image' else ''}.",
                             param=f"{where}.source")
    if kind == "tool_use":
        return ir.ToolCall(id=str(block.get("id") or ""), name=str(block.get("name") or ""),
                           arguments=dump_arguments(block.get("input")))
    if kind == "tool_result":
        content = block.get("content")
        parts = ([ir.Text(content)] if isinstance(content, str) and content
                 else [p for p in _blocks_to_parts(content if isinstance(content, list) else [],
                                                   f"{where}.content")
                       if isinstance(p, ir.Text | ir.Image)])
        return ir.ToolResult(call_id=str(block.get("tool_use_id") or ""), content=parts,
                             is_error=bool(block.get("is_error")))
    if kind in ("thinking", "redacted_thinking"):
        return None  # signed reasoning only means something to the Anthropic model that made it
    raise InvalidRequest(f"Content block type '{kind}' at '{where}' cannot be sent to this "
                         "model's provider.", param=f"{where}.type")


def _tool_to_ir(tool, i) -> ir.Tool:
    if tool.get("type") not in (None, "custom") or not tool.get("name"):
        raise InvalidRequest(f"'tools[{i}]' must be a custom tool with a name and input_schema "
                             "(server tools need an Anthropic model).", param=f"tools[{i}]")
    return ir.Tool(name=tool["name"], description=tool.get("description") or "",
                   parameters=tool.get("input_schema") or {"type": "object", "properties": {}})


def _format_to_ir(output_config) -> dict | None:
    spec = output_config.get("format") if isinstance(output_config, dict) else None
    if isinstance(spec, dict) and spec.get("type") == "json_schema":
        return {"schema": spec.get("schema") or {"type": "object"}}
    return None


def _choice_to_ir(choice) -> tuple[ir.ToolChoice | None, bool | None]:
    if not isinstance(choice, dict):
        return None, None
    parallel = False if choice.get("disable_parallel_tool_use") else None
    modes = {"auto": "auto", "any": "required", "none": "none", "tool": "tool"}
    mode = modes.get(choice.get("type"))
    if mode is None:
        raise InvalidRequest("'tool_choice.type' must be auto, any, tool or none.",
                             param="tool_choice.type")
    return ir.ToolChoice(mode, choice.get("name") or ""), parallel


def request_from_ir(req: ir.ChatRequest, model: str, **_options) -> dict:
    """The Messages request an Anthropic upstream gets for an internal request."""
    reject_many_choices(req, WIRE)
    body = {"model": model, "max_tokens": req.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages_from_ir(req)}
    if req.system:
        body["system"] = "\n\n".join(req.system)
    if req.temperature is not None:
        body["temperature"] = min(req.temperature, 1.0)  # Anthropic's range is 0..1
    elif req.top_p is not None:
        body["top_p"] = req.top_p  # recent Claude models refuse temperature and top_p together
    if req.top_k is not None:
        body["top_k"] = req.top_k
    if req.stop:
        body["stop_sequences"] = req.stop
    body.update(tools_from_ir(req))
    schema = (req.output_format or {}).get("schema")
    if schema is not None:  # Anthropic has structured output by schema, no bare "JSON mode"
        body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if req.stream:
        body["stream"] = True
    return body


def messages_from_ir(req: ir.ChatRequest) -> list[dict]:
    """Turns as Anthropic messages: same-role turns merged, tool results first in their turn."""
    messages = []
    for turn in merged(req.turns):
        blocks = [b for b in (_part_to_block(p) for p in turn.parts) if b is not None]
        if blocks:
            messages.append({"role": turn.role, "content": blocks})
    return messages


def tools_from_ir(req: ir.ChatRequest) -> dict:
    out = {}
    if req.tools:
        out["tools"] = [{"name": safe_tool_name(t.name), "input_schema": t.parameters,
                         **({"description": t.description} if t.description else {})}
                        for t in req.tools]
    choice = req.tool_choice
    if choice is not None or req.parallel_tool_calls is False:
        mode = choice.mode if choice else "auto"
        wire = {"type": {"required": "any"}.get(mode, mode)}
        if mode == "tool":
            wire["name"] = safe_tool_name(choice.name)
        if req.parallel_tool_calls is False and mode != "none":
            wire["disable_parallel_tool_use"] = True
        out["tool_choice"] = wire
    return out


def _part_to_block(part) -> dict | None:
    if isinstance(part, ir.Text):
        return None if is_blank(part.text) else {"type": "text", "text": part.text}
    if isinstance(part, ir.Image):
        source = ({"type": "base64", "media_type": part.mime, "data": part.data} if part.data
                  else {"type": "url", "url": part.url})
        return {"type": "image", "source": source}
    if isinstance(part, ir.Document):
        return {"type": "document",
                "source": {"type": "base64", "media_type": part.mime, "data": part.data}}
    if isinstance(part, ir.ToolCall):
        return {"type": "tool_use", "id": safe_id(part.id), "name": safe_tool_name(part.name),
                "input": load_arguments(part.arguments)}
    blocks = [b for b in (_part_to_block(p) for p in part.content) if b is not None]
    return {"type": "tool_result", "tool_use_id": safe_id(part.call_id), "content": blocks,
            **({"is_error": True} if part.is_error else {})}


def count_payload(req: ir.ChatRequest, model: str) -> dict:
    """The count_tokens body for an internal request (no max_tokens or sampling)."""
    body = {"model": model, "messages": messages_from_ir(req), **tools_from_ir(req)}
    if req.system:
        body["system"] = "\n\n".join(req.system)
    return body


# ---- answers --------------------------------------------------------------------------------
def response_to_ir(body: dict) -> ir.ChatResponse:
    """An Anthropic message as the internal answer (thinking blocks are not carried over)."""
    parts = []
    for block in body.get("content") or []:
        if block.get("type") == "text" and block.get("text"):
            parts.append(ir.Text(block["text"]))
        elif block.get("type") == "tool_use":
            parts.append(ir.ToolCall(id=block.get("id") or "", name=block.get("name") or "",
                                     arguments=dump_arguments(block.get("input"))))
    return ir.ChatResponse(id=body.get("id") or "", model=body.get("model") or "", parts=parts,
                           stop_reason=STOP_TO_IR.get(body.get("stop_reason"), ir.STOP),
                           stop_sequence=body.get("stop_sequence"),
                           usage=usage_from(body.get("usage")))


def response_from_ir(answer: ir.ChatResponse, req: ir.ChatRequest) -> dict:
    """The message an Anthropic client gets for an internal answer."""
    content = []
    for part in answer.parts:
        if isinstance(part, ir.Text) and part.text:
            content.append({"type": "text", "text": part.text})
        elif isinstance(part, ir.ToolCall):
            content.append({"type": "tool_use", "id": safe_id(part.id), "name": part.name,
                            "input": load_arguments(part.arguments)})
    reason = STOP_FROM_IR.get(answer.stop_reason, "end_turn")
    return {"id": message_id(answer.id), "type": "message", "role": "assistant",
            "model": req.model, "content": content, "stop_reason": reason,
            "stop_sequence": answer.stop_sequence if reason == "stop_sequence" else None,
            "usage": usage_to(answer.usage or Usage())}


def message_id(upstream_id: str) -> str:
    if upstream_id.startswith("msg_"):
        return upstream_id
    return f"msg_{upstream_id or uuid.uuid4().hex}"


# ---- errors and usage -----------------------------------------------------------------------
def error_type(err) -> str:
    if err.kind in ERROR_TYPES:
        return "request_too_large" if err.status == 413 else ERROR_TYPES[err.kind]
    if err.status == 504:
        return "timeout_error"
    if err.status in (503, 529):
        return "overloaded_error"
    return {400: "invalid_request_error", 404: "not_found_error"}.get(err.status, "api_error")


def error_body(err) -> dict:
    """Anthropic's error envelope for a GatewayError."""
    return {"type": "error", "error": {"type": error_type(err), "message": err.message}}


def error_event(err) -> bytes:
    """An in-stream error event, as the Anthropic SDK recognises it."""
    return encode_event(json.dumps(error_body(err)).encode(), "error")


def usage_from(data) -> Usage | None:
    """Canonical usage from an Anthropic `usage` (input_tokens already excludes the cache)."""
    if not isinstance(data, dict):
        return None
    return Usage(input=int(data.get("input_tokens") or 0),
                 cache_read=int(data.get("cache_read_input_tokens") or 0),
                 cache_write=int(data.get("cache_creation_input_tokens") or 0),
                 output=int(data.get("output_tokens") or 0))


def usage_to(usage: Usage) -> dict:
    return {"input_tokens": usage.input, "cache_creation_input_tokens": usage.cache_write,
            "cache_read_input_tokens": usage.cache_read, "output_tokens": usage.output}


def usage_of_body(content: bytes) -> Usage | None:
    """Usage of a whole answer body."""
    return usage_in_body(content, "usage", usage_from)


def event_name(event: bytes) -> str:
    if event.startswith(b"event:"):  # where Anthropic puts it: the first line
        end = min(i for i in (event.find(b"\n"), event.find(b"\r"), len(event)) if i >= 0)
        return event[6:end].strip().decode("ascii", "replace")
    for line in event.splitlines():
        if line.startswith(b"event:"):
            return line[6:].strip().decode("ascii", "replace")
    return ""
