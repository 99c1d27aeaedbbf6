"""OpenAI Chat Completions wire format: requests and answers to and from the IR, errors, usage.

Streams live in translation/openai_stream.py; the format object (metering, passthrough, model
lists) that binds them for the pipeline in translation/openai_format.py.
"""

import json
import time

from errors import InvalidRequest
from translation import ir
from translation.content import (
    data_url,
    image_from_url,
    is_blank,
    name_tool_results,
    new_call_id,
    reject_many_choices,
    safe_tool_name,
    text_of,
)
from translation.ir import Usage
from translation.sse import encode_event
from translation.tokens import usage_in_body

WIRE = "openai"
# Gateway error kinds -> OpenAI `error.type`.
ERROR_TYPES = {
    "invalid_request": "invalid_request_error",
    "not_found": "invalid_request_error",
    "authentication": "authentication_error",
    "permission": "permission_error",
    "rate_limit": "rate_limit_error",
    "insufficient_credits": "insufficient_quota",
    "unavailable": "service_unavailable_error",
    "upstream": "upstream_error",
    "api_error": "api_error",
}
FINISH_TO_IR = {"stop": ir.STOP, "length": ir.LENGTH, "tool_calls": ir.TOOL_CALLS,
                "function_call": ir.TOOL_CALLS, "content_filter": ir.CONTENT_FILTER}
FINISH_FROM_IR = {ir.STOP: "stop", ir.STOP_SEQUENCE: "stop", ir.LENGTH: "length",
                  ir.TOOL_CALLS: "tool_calls", ir.CONTENT_FILTER: "content_filter"}
DONE = b"data: [DONE]\n\n"


# ---- requests -------------------------------------------------------------------------------
def request_to_ir(body: dict) -> ir.ChatRequest:
    """A validated chat completion request as the internal request.

    System and developer messages are hoisted, in order, into the system prompt wherever they
    stand: Anthropic and Gemini only have one top-level slot for them.
    """
    turns, system = [], []
    for i, message in enumerate(body["messages"]):
        role, where = message.get("role"), f"messages[{i}].content"
        if role in ("system", "developer"):
            text = _plain_text(message.get("content"), where)
            if not is_blank(text):
                system.append(text)
        elif role == "user":
            turns.append(ir.Turn("user", _user_parts(message.get("content"), where)))
        elif role == "assistant":
            turns.append(ir.Turn("assistant", _assistant_parts(message, i)))
        elif role == "tool":
            result = ir.ToolResult(call_id=str(message.get("tool_call_id") or ""),
                                   content=_result_parts(message.get("content"), where))
            turns.append(ir.Turn("user", [result]))
    name_tool_results(turns)
    return ir.ChatRequest(
        model=body["model"], turns=turns, system=system,
        max_tokens=body.get("max_completion_tokens") or body.get("max_tokens"),
        temperature=body.get("temperature"), top_p=body.get("top_p"),
        stop=[body["stop"]] if isinstance(body.get("stop"), str) else list(body.get("stop") or []),
        tools=[_tool_to_ir(t, i) for i, t in enumerate(body.get("tools") or [])],
        tool_choice=_choice_to_ir(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"), n=body.get("n"),
        stream=bool(body.get("stream")),
        include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
        output_format=_format_to_ir(body.get("response_format")))


def _plain_text(content, where) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        return "".join(p.get("text", "") for p in content
                       if isinstance(p, dict) and p.get("type") == "text")
    raise InvalidRequest(f"'{where}' must be a string or a list of content parts.", param=where)


def _user_parts(content, where) -> list:
    if isinstance(content, str):
        return [] if content == "" else [ir.Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or a list of content parts.", param=where)
    parts = []
    for j, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if part.get("text"):
                parts.append(ir.Text(str(part["text"])))
        elif kind == "image_url":
            url = (part.get("image_url") or {}).get("url")
            parts.append(image_from_url(url, f"{where}[{j}].image_url.url"))
        elif kind == "file" and str((part.get("file") or {}).get("file_data", "")).startswith(
                "data:application/pdf"):
            image = image_from_url(part["file"]["file_data"], f"{where}[{j}].file.file_data")
            parts.append(ir.Document(mime=image.mime, data=image.data))
        else:
            raise InvalidRequest(f"Content part type '{kind}' at '{where}[{j}]' cannot be sent "
                                 "to this model's provider.", param=f"{where}[{j}].type")
    return parts


def _assistant_parts(message, i) -> list:
    text = _plain_text(message.get("content"), f"messages[{i}].content")
    parts = [] if is_blank(text) else [ir.Text(text)]
    for j, call in enumerate(message.get("tool_calls") or []):
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequest(f"'messages[{i}].tool_calls[{j}]' needs a function name.",
                                 param=f"messages[{i}].tool_calls[{j}].function.name")
        parts.append(ir.ToolCall(id=str(call.get("id") or new_call_id()), name=function["name"],
                                 arguments=function.get("arguments") or "{}"))
    return parts


def _result_parts(content, where) -> list:
    if isinstance(content, list):
        return [ir.Text(p["text"]) for p in content
                if isinstance(p, dict) and p.get("type") == "text" and p.get("text")]
    return [ir.Text(str(content))] if content not in (None, "") else []


def _tool_to_ir(tool, i) -> ir.Tool:
    function = tool.get("function") if isinstance(tool, dict) else None
    if tool.get("type", "function") != "function" or not isinstance(function, dict) \
            or not function.get("name"):
        raise InvalidRequest(f"'tools[{i}]' must be a function tool with a name.",
                             param=f"tools[{i}]")
    return ir.Tool(name=function["name"], description=function.get("description") or "",
                   parameters=function.get("parameters") or {"type": "object", "properties": {}})


def _format_to_ir(response_format) -> dict | None:
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "json_object":
        return {"schema": None}
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        return {"schema": spec.get("schema") or {"type": "object"}, "name": spec.get("name")}
    return None


def _choice_to_ir(choice) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ir.ToolChoice(choice)
    if isinstance(choice, dict) and (choice.get("function") or {}).get("name"):
        return ir.ToolChoice("tool", choice["function"]["name"])
    raise InvalidRequest("'tool_choice' must be none, auto, required or a named function.",
                         param="tool_choice")


def request_from_ir(req: ir.ChatRequest, model: str, *, limit_field: str | None = None,
                    **_options) -> dict:
    """The chat completion request an OpenAI-format upstream gets for an internal request.

    `limit_field` names the token-limit field the upstream understands (max_completion_tokens
    on OpenAI itself, max_tokens on many OpenAI-compatible servers).
    """
    reject_many_choices(req, WIRE)  # the answer is translated back as one choice
    messages = [{"role": "system", "content": "\n\n".join(req.system)}] if req.system else []
    for turn in req.turns:
        messages.extend(_messages_of(turn))
    body = {"model": model, "messages": messages}
    if req.max_tokens is not None:
        body[limit_field or "max_completion_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.stop:
        body["stop"] = req.stop[:4]
    if req.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": safe_tool_name(t.name), "description": t.description,
            "parameters": t.parameters}} for t in req.tools]
    if req.tool_choice is not None:
        named = {"type": "function", "function": {"name": safe_tool_name(req.tool_choice.name)}}
        body["tool_choice"] = req.tool_choice.mode if req.tool_choice.mode != "tool" else named
    if req.output_format is not None:
        schema = req.output_format.get("schema")
        body["response_format"] = {"type": "json_object"} if schema is None else {
            "type": "json_schema",
            "json_schema": {"name": req.output_format.get("name") or "response", "schema": schema}}
    if req.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}  # usage is needed for billing
    return body


def _messages_of(turn: ir.Turn) -> list[dict]:
    if turn.role == "assistant":
        calls = [p for p in turn.parts if isinstance(p, ir.ToolCall)]
        message = {"role": "assistant", "content": text_of(turn.parts) or None}
        if calls:
            message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
                "name": safe_tool_name(c.name), "arguments": c.arguments}} for c in calls]
        return [message]
    out = [{"role": "tool", "tool_call_id": p.call_id, "content": _result_text(p)}
           for p in turn.parts if isinstance(p, ir.ToolResult)]
    rest = [p for p in turn.parts if not isinstance(p, ir.ToolResult)]
    if rest:
        out.append({"role": "user", "content": [_content_part(p) for p in rest]})
    return out


def _result_text(result: ir.ToolResult) -> str:
    text = text_of(result.content)
    return f"Error: {text}" if result.is_error else text


def _content_part(part) -> dict:
    if isinstance(part, ir.Text):
        return {"type": "text", "text": part.text}
    if isinstance(part, ir.Image):
        return {"type": "image_url", "image_url": {"url": data_url(part)}}
    return {"type": "file", "file": {"filename": "document.pdf",
                                     "file_data": f"data:{part.mime};base64,{part.data}"}}


# ---- answers --------------------------------------------------------------------------------
def response_to_ir(body: dict) -> ir.ChatResponse:
    """An OpenAI chat completion as the internal answer (first choice)."""
    choice = (body.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    parts = [ir.Text(message["content"])] if message.get("content") else []
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        parts.append(ir.ToolCall(id=call.get("id") or new_call_id(), name=function.get("name", ""),
                                 arguments=function.get("arguments") or "{}"))
    reason = FINISH_TO_IR.get(choice.get("finish_reason"), ir.STOP)
    return ir.ChatResponse(id=body.get("id") or "", model=body.get("model") or "", parts=parts,
                           stop_reason=reason, usage=usage_from(body.get("usage")))


def response_from_ir(answer: ir.ChatResponse, req: ir.ChatRequest) -> dict:
    """The chat completion an OpenAI client gets for an internal answer."""
    calls = [p for p in answer.parts if isinstance(p, ir.ToolCall)]
    message = {"role": "assistant", "content": text_of(answer.parts) or None, "refusal": None}
    if calls:
        message["tool_calls"] = [{"id": c.id, "type": "function", "function": {
            "name": c.name, "arguments": c.arguments}} for c in calls]
    if images := [p for p in answer.parts if isinstance(p, ir.Image)]:  # OpenRouter's shape
        message["images"] = [image_entry(p.mime, p.data, i) for i, p in enumerate(images)]
    body = {"id": completion_id(answer.id), "object": "chat.completion",
            "created": int(time.time()), "model": req.model,
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": FINISH_FROM_IR.get(answer.stop_reason, "stop")}]}
    if answer.usage is not None:
        body["usage"] = usage_to(answer.usage)
    return body


def image_entry(mime: str, data: str, index: int) -> dict:
    """An image the model made, as OpenRouter's clients read `message.images`."""
    return {"index": index, "type": "image_url",
            "image_url": {"url": f"data:{mime};base64,{data}"}}


def completion_id(upstream_id: str) -> str:
    return upstream_id if upstream_id.startswith("chatcmpl-") else f"chatcmpl-{upstream_id}"


# ---- errors and usage -----------------------------------------------------------------------
def error_body(err) -> dict:
    """The OpenAI error envelope for a GatewayError."""
    return {"error": {"message": err.message, "type": ERROR_TYPES.get(err.kind, "api_error"),
                      "param": err.param, "code": err.code}}


def error_event(err) -> bytes:
    """An in-stream error, as the OpenAI SDK recognises it, followed by the terminator."""
    return encode_event(json.dumps(error_body(err)).encode()) + DONE


def usage_from(data: dict | None) -> Usage | None:
    """Canonical usage from an OpenAI `usage` object (prompt_tokens includes cached tokens)."""
    if not isinstance(data, dict):
        return None
    prompt = int(data.get("prompt_tokens") or 0)
    details = data.get("prompt_tokens_details") or {}
    details = details if isinstance(details, dict) else {}
    cached = int(details.get("cached_tokens") or 0)
    written = int(details.get("cache_write_tokens") or 0)
    return Usage(input=max(prompt - cached - written, 0), cache_read=cached, cache_write=written,
                 output=int(data.get("completion_tokens") or 0))


def usage_to(usage: Usage) -> dict:
    details = {"cached_tokens": usage.cache_read}
    if usage.cache_write:
        details["cache_write_tokens"] = usage.cache_write
    return {"prompt_tokens": usage.prompt, "completion_tokens": usage.output,
            "total_tokens": usage.total, "prompt_tokens_details": details}


def usage_of_body(content: bytes) -> Usage | None:
    """Usage of a whole answer body."""
    return usage_in_body(content, "usage", usage_from)
