"""OpenAI Responses wire format: the request codec, to and from the IR.

Input items are read into the IR (messages, function calls and their outputs; reasoning items
are dropped, the IR has no place for them). Response objects are read and built in
translation/responses_objects.py, shared with the stream encoder (translation/responses_stream.py)
so that a stream ends with exactly the response a non-streaming call returns.
"""


from errors import InvalidRequest
from translation import ir
from translation.content import data_url as _data_url
from translation.content import (
    image_from_url,
    is_blank,
    name_tool_results,
    new_call_id,
    reject_many_choices,
)
from translation.ir import Usage
from translation.responses_objects import (  # noqa: F401 (the format's interface)
    TERMINAL,
    error_code,
    new_id,
    response_from_ir,
    response_to_ir,
    usage_from,
    usage_to,
)
from translation.tokens import usage_in_body

WIRE = "responses"
# Fields a response object repeats from its request (OpenAI's answers carry them all).
ECHOED = ("instructions", "max_output_tokens", "metadata", "previous_response_id", "reasoning",
          "store", "temperature", "text", "tool_choice", "tools", "top_p", "truncation", "user",
          "parallel_tool_calls", "service_tier", "prompt_cache_key", "safety_identifier")


# ---- requests -------------------------------------------------------------------------------
def request_to_ir(body: dict) -> ir.ChatRequest:
    """A validated Responses request as the internal request (for a translating route)."""
    system = [] if is_blank(body.get("instructions")) else [body["instructions"]]
    turns: list[ir.Turn] = []
    items = body.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    for i, item in enumerate(items or []):
        _item_to_ir(item, f"input[{i}]", turns, system)
    name_tool_results(turns)
    return ir.ChatRequest(
        model=body["model"], turns=turns, system=system,
        max_tokens=body.get("max_output_tokens"), temperature=body.get("temperature"),
        top_p=body.get("top_p"),
        tools=[_tool_to_ir(t, i) for i, t in enumerate(body.get("tools") or [])],
        tool_choice=_choice_to_ir(body.get("tool_choice")),
        parallel_tool_calls=body.get("parallel_tool_calls"), stream=bool(body.get("stream")),
        output_format=_format_to_ir(body.get("text")),
        echo={k: body[k] for k in ECHOED if k in body})


def _item_to_ir(item, where, turns, system) -> None:
    if not isinstance(item, dict):
        raise InvalidRequest(f"'{where}' must be an object.", param=where)
    kind = item.get("type") or ("message" if "role" in item else None)
    if kind == "message":
        role = item.get("role")
        if role in ("system", "developer"):
            text = "".join(p.text for p in _content(item.get("content"), where)
                           if isinstance(p, ir.Text))
            if not is_blank(text):
                system.append(text)
        elif role in ("user", "assistant"):
            parts = _content(item.get("content"), f"{where}.content")
            if role == "assistant" and any(not isinstance(p, ir.Text) for p in parts):
                raise InvalidRequest(f"'{where}.content' of an assistant message may hold "
                                     "text only.", param=f"{where}.content")
            _add(turns, role, parts)
        else:
            raise InvalidRequest(f"'{where}.role' must be user, assistant, system or developer.",
                                 param=f"{where}.role")
    elif kind == "function_call":
        if not item.get("name") or not isinstance(item.get("name"), str):
            raise InvalidRequest(f"'{where}.name' is required.", param=f"{where}.name")
        _add(turns, "assistant", [ir.ToolCall(id=str(item.get("call_id") or new_call_id()),
                                              name=item["name"],
                                              arguments=str(item.get("arguments") or "{}"))])
    elif kind == "function_call_output":
        if not item.get("call_id"):
            raise InvalidRequest(f"'{where}.call_id' is required.", param=f"{where}.call_id")
        output = item.get("output")
        content = ([ir.Text(output)] if isinstance(output, str) and output
                   else [p for p in _content(output, f"{where}.output")] if output else [])
        _add(turns, "user", [ir.ToolResult(call_id=str(item["call_id"]), content=content)])
    elif kind != "reasoning":  # reasoning items have no IR form; other providers cannot use them
        raise InvalidRequest(f"Input item type '{kind}' at '{where}' cannot be sent to this "
                             "model's provider.", param=f"{where}.type")


def _add(turns, role, parts) -> None:
    """Append parts as a turn; consecutive calls (or results) share one turn, as in Chat."""
    if not parts:
        return
    if turns and turns[-1].role == role:
        turns[-1].parts.extend(parts)
    else:
        turns.append(ir.Turn(role, list(parts)))


def _content(content, where) -> list:
    if isinstance(content, str):
        return [] if content == "" else [ir.Text(content)]
    if not isinstance(content, list):
        raise InvalidRequest(f"'{where}' must be a string or a list of content parts.",
                             param=where)
    return [p for j, part in enumerate(content) if (p := _part(part, f"{where}[{j}]"))]


def _part(part, where):
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        return ir.Text(str(part.get("text") or "")) if part.get("text") else None
    if kind == "refusal":
        return ir.Text(str(part.get("refusal") or "")) if part.get("refusal") else None
    if kind == "input_image":
        if part.get("file_id") and not part.get("image_url"):
            raise InvalidRequest(f"'{where}.file_id' (an uploaded file) cannot be sent to this "
                                 "model's provider; give the image as image_url.",
                                 param=f"{where}.file_id")
        return image_from_url(part.get("image_url"), f"{where}.image_url")
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise InvalidRequest(f"'{where}' needs file_data (a base64 PDF) for this model's "
                                 "provider.", param=f"{where}.file_data")
        if not data.startswith("data:"):
            data = f"data:application/pdf;base64,{data}"
        doc = image_from_url(data, f"{where}.file_data")
        return ir.Document(mime=doc.mime, data=doc.data)
    raise InvalidRequest(f"Content part type '{kind}' at '{where}' cannot be sent to this "
                         "model's provider.", param=f"{where}.type")


def _tool_to_ir(tool, i) -> ir.Tool:
    kind = tool.get("type") if isinstance(tool, dict) else None
    if kind != "function":
        raise InvalidRequest(f"'tools[{i}]': the built-in tool '{kind}' is only available on "
                             "OpenAI-type providers; this model's provider takes function "
                             "tools only.", param=f"tools[{i}].type")
    if not tool.get("name") or not isinstance(tool["name"], str):
        raise InvalidRequest(f"'tools[{i}].name' is required.", param=f"tools[{i}].name")
    return ir.Tool(name=tool["name"], description=tool.get("description") or "",
                   parameters=tool.get("parameters") or {"type": "object", "properties": {}})


def _choice_to_ir(choice) -> ir.ToolChoice | None:
    if choice is None:
        return None
    if choice in ("auto", "none", "required"):
        return ir.ToolChoice(choice)
    if isinstance(choice, dict) and choice.get("type") == "function" and choice.get("name"):
        return ir.ToolChoice("tool", str(choice["name"]))
    raise InvalidRequest("'tool_choice' must be none, auto, required or a named function for "
                         "this model's provider.", param="tool_choice")


def _format_to_ir(text) -> dict | None:
    fmt = text.get("format") if isinstance(text, dict) else None
    kind = fmt.get("type") if isinstance(fmt, dict) else None
    if kind == "json_object":
        return {"schema": None}
    if kind == "json_schema":
        return {"schema": fmt.get("schema") or {"type": "object"}, "name": fmt.get("name")}
    return None


def request_from_ir(req: ir.ChatRequest, model: str, **_options) -> dict:
    """The Responses request a Responses-only upstream gets for an internal request.

    `store` is off: the gateway keeps conversations itself, the upstream need not.
    """
    reject_many_choices(req, WIRE)
    body = {"model": model, "input": input_from_ir(req), "store": False}
    if req.system:
        body["instructions"] = "\n\n".join(req.system)
    if req.max_tokens is not None:
        body["max_output_tokens"] = req.max_tokens
    for key in ("temperature", "top_p", "parallel_tool_calls"):
        if getattr(req, key) is not None:
            body[key] = getattr(req, key)
    if req.tools:
        body["tools"] = [{"type": "function", "name": t.name, "description": t.description,
                          "parameters": t.parameters} for t in req.tools]
    if req.tool_choice is not None:
        mode = req.tool_choice.mode
        body["tool_choice"] = ({"type": "function", "name": req.tool_choice.name}
                               if mode == "tool" else mode)
    if req.output_format is not None:
        schema = req.output_format.get("schema")
        body["text"] = {"format": {"type": "json_object"} if schema is None else {
            "type": "json_schema", "name": req.output_format.get("name") or "response",
            "schema": schema}}
    if req.stream:
        body["stream"] = True
    return body


def input_from_ir(req: ir.ChatRequest) -> list[dict]:
    """Turns as input items, in order: a turn's text and media parts form one message."""
    items = []
    for turn in req.turns:
        content = []
        for part in turn.parts:
            block = _part_from_ir(part, turn.role)
            if block is not None:
                content.append(block)
                continue
            if content:
                items.append({"type": "message", "role": turn.role, "content": content})
                content = []
            if isinstance(part, ir.ToolCall):
                items.append({"type": "function_call", "call_id": part.id, "name": part.name,
                              "arguments": part.arguments})
            elif isinstance(part, ir.ToolResult):
                text = "".join(p.text for p in part.content if isinstance(p, ir.Text))
                items.append({"type": "function_call_output", "call_id": part.call_id,
                              "output": f"Error: {text}" if part.is_error else text})
        if content:
            items.append({"type": "message", "role": turn.role, "content": content})
    return items


def _part_from_ir(part, role) -> dict | None:
    if isinstance(part, ir.Text):
        return {"type": "output_text" if role == "assistant" else "input_text", "text": part.text}
    if isinstance(part, ir.Image):
        return {"type": "input_image", "image_url": _data_url(part), "detail": "auto"}
    if isinstance(part, ir.Document):
        return {"type": "input_file", "filename": "document.pdf",
                "file_data": f"data:{part.mime};base64,{part.data}"}
    return None


def count_payload(req: ir.ChatRequest, model: str) -> dict:
    body = request_from_ir(req, model)
    body.pop("store", None)
    return body


def usage_of_body(content: bytes) -> Usage | None:
    return usage_in_body(content, "usage", usage_from)
