"""Gemini generateContent wire format (v1beta): requests and answers to and from the IR, errors,
usage.

The model of a Gemini request is in its URL and streaming is a method of its own, so those come
from the view's translation.inbound.Inbound, not from the body. Streams live in
translation/gemini_stream.py; the format object in gemini_format.py.
"""

import base64
import json
import re
from dataclasses import replace

from errors import InvalidRequest
from translation import ir
from translation.content import (
    dump_arguments,
    is_blank,
    load_arguments,
    merged,
    new_call_id,
    reject_many_choices,
    text_of,
)
from translation.ir import Usage
from translation.sse import encode_event
from translation.tokens import usage_in_body

WIRE = "gemini"
METHODS = ("generateContent", "streamGenerateContent", "countTokens")  # on models/{model}
SAFETY_REASONS = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "LANGUAGE",
                  "OTHER", "IMAGE_SAFETY", "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION",
                  "IMAGE_OTHER", "NO_IMAGE"}
FINISH_FROM_IR = {ir.STOP: "STOP", ir.STOP_SEQUENCE: "STOP", ir.TOOL_CALLS: "STOP",
                  ir.LENGTH: "MAX_TOKENS", ir.CONTENT_FILTER: "SAFETY"}
STATUS_NAMES = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 402: "FAILED_PRECONDITION",
                403: "PERMISSION_DENIED", 404: "NOT_FOUND", 405: "INVALID_ARGUMENT",
                409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED",
                500: "INTERNAL", 501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE",
                504: "DEADLINE_EXCEEDED"}
_SNAKE = re.compile(r"_([a-z])")
# Gemini 3 refuses a function call in the history without the thoughtSignature it came with;
# calls that were made by another model (or went through a client that has no slot for the
# signature) carry Google's documented placeholder instead (bytes, hence base64 on the wire).
SIGNATURE_PLACEHOLDER = base64.b64encode(b"skip_thought_signature_validator").decode()


def camel(key: str) -> str:
    return _SNAKE.sub(lambda m: m[1].upper(), key)


def normalize_keys(body: dict) -> dict:
    """Top-level and generationConfig keys in the API's camelCase (clients may send snake_case)."""
    out = {camel(k): v for k, v in body.items()}
    if isinstance(out.get("generationConfig"), dict):
        out["generationConfig"] = {camel(k): v for k, v in out["generationConfig"].items()}
    return out


SYSTEM_ROLES = ("system", "developer")


def lift_system_turns(body: dict) -> dict:
    """`contents` entries with role system or developer (a form some services' docs show)
    moved into systemInstruction, after any given there: Gemini itself accepts only user,
    model and function turns. Entries of any other shape are left for validation to name."""
    contents = body.get("contents")
    if not isinstance(contents, list):
        return body
    lifted = [c for c in contents if isinstance(c, dict) and c.get("role") in SYSTEM_ROLES
              and isinstance(c.get("parts"), list)]
    given = body.get("systemInstruction")
    if not lifted or not (given is None or isinstance(given, dict)
                          and isinstance(given.get("parts", []), list)):
        return body
    system = dict(given or {})
    system["parts"] = [*system.get("parts", []), *(p for c in lifted for p in c["parts"])]
    return {**body, "contents": [c for c in contents if not any(c is x for x in lifted)],
            "systemInstruction": system}


def _get(obj, key, default=None):
    """A field by its camelCase name, or its snake_case spelling."""
    if not isinstance(obj, dict):
        return default
    if key in obj:
        return obj[key]
    return obj.get(re.sub(r"([A-Z])", lambda m: "_" + m[1].lower(), key), default)


# ---- requests -------------------------------------------------------------------------------
def request_to_ir(body: dict, *, model: str | None = None,
                  stream: bool | None = None) -> ir.ChatRequest:
    """A validated (normalized) generateContent request as the internal request; `model` and
    `stream` come from the URL (given here, or as body keys for tests and tools)."""
    config = body.get("generationConfig") or {}
    pending = []  # calls awaiting a result: Gemini may pair them by order and name, not id
    turns = [_turn_to_ir(c, i, pending) for i, c in enumerate(body["contents"])]
    system = _get(body.get("systemInstruction"), "parts", [])
    return ir.ChatRequest(
        model=model or body["model"], turns=turns,
        system=[p["text"] for p in system if isinstance(p, dict) and not is_blank(p.get("text"))],
        max_tokens=config.get("maxOutputTokens"), temperature=config.get("temperature"),
        top_p=config.get("topP"), top_k=config.get("topK"),
        stop=list(config.get("stopSequences") or []), n=config.get("candidateCount"),
        tools=_tools_to_ir(body.get("tools") or []),
        tool_choice=_choice_to_ir(body.get("toolConfig")),
        stream=bool(body.get("stream")) if stream is None else stream,
        output_format=_format_to_ir(config))


def _turn_to_ir(content, i, pending) -> ir.Turn:
    role = "assistant" if content.get("role") == "model" else "user"
    parts = []
    for j, part in enumerate(content.get("parts") or []):
        where = f"contents[{i}].parts[{j}]"
        converted = _part_to_ir(part, where, pending)
        if converted is not None:
            parts.append(converted)
    return ir.Turn(role, parts)


def _part_to_ir(part, where, pending):
    if _get(part, "thought"):
        return None  # thought summaries are the model's, not part of the conversation
    if "text" in part:
        return ir.Text(part["text"]) if part["text"] else None
    if (blob := _get(part, "inlineData")) is not None:
        mime, data = _get(blob, "mimeType", ""), _get(blob, "data", "")
        if mime.startswith("image/"):
            return ir.Image(mime=mime, data=data)
        if mime == "application/pdf":
            return ir.Document(mime=mime, data=data)
        raise InvalidRequest(f"inlineData of type '{mime}' at '{where}' cannot be sent to this "
                             "model's provider.", param=where)
    if (call := _get(part, "functionCall")) is not None:
        tool_call = ir.ToolCall(id=_get(call, "id") or new_call_id(), name=_get(call, "name", ""),
                                arguments=dump_arguments(_get(call, "args") or {}),
                                signature=_get(part, "thoughtSignature") or "")
        pending.append(tool_call)
        return tool_call
    if (response := _get(part, "functionResponse")) is not None:
        return _result_to_ir(response, pending)
    if (file := _get(part, "fileData")) is not None and \
            str(_get(file, "fileUri", "")).startswith(("http://", "https://")):
        return ir.Image(mime=_get(file, "mimeType", ""), url=_get(file, "fileUri"))
    raise InvalidRequest(f"The part at '{where}' cannot be sent to this model's provider "
                         "(only text, inlineData, functionCall and functionResponse can).",
                         param=where)


def _result_to_ir(response, pending) -> ir.ToolResult:
    name, call_id = _get(response, "name", ""), _get(response, "id")
    match = next((c for c in pending if (c.id == call_id if call_id else c.name == name)), None)
    if match is None and not call_id and pending:
        match = pending[0]
    if match is not None:
        pending.remove(match)
    payload = _get(response, "response")
    if isinstance(payload, dict) and ("output" in payload or "error" in payload):
        is_error = "output" not in payload
        value = payload["error"] if is_error else payload["output"]
    else:
        is_error, value = False, payload
    text = value if isinstance(value, str) else (
        "" if value is None else json.dumps(value, ensure_ascii=False))
    return ir.ToolResult(call_id=call_id or (match.id if match else new_call_id()),
                         name=name or (match.name if match else ""),
                         content=[ir.Text(text)] if text else [], is_error=is_error)


def _tools_to_ir(tools) -> list[ir.Tool]:
    out = []
    for i, tool in enumerate(tools):
        declarations = _get(tool, "functionDeclarations")
        if declarations is None:
            raise InvalidRequest(f"'tools[{i}]' is a built-in Gemini tool; only function "
                                 "declarations can go to this model's provider.",
                                 param=f"tools[{i}]")
        for d in declarations:
            schema = _get(d, "parametersJsonSchema")
            if schema is None:
                schema = json_schema(_get(d, "parameters") or {"type": "object",
                                                               "properties": {}})
            out.append(ir.Tool(name=_get(d, "name", ""), description=_get(d, "description", ""),
                               parameters=schema))
    return out


def json_schema(schema):
    """Gemini's OpenAPI-style Schema as JSON Schema: lower-case types, no `nullable`."""
    if isinstance(schema, list):
        return [json_schema(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out = {}
    for key, value in schema.items():
        if key == "type" and isinstance(value, str):
            out[key] = value.lower()
        elif key == "properties" and isinstance(value, dict):
            out[key] = {k: json_schema(v) for k, v in value.items()}
        elif key in ("items", "anyOf"):
            out[key] = json_schema(value)
        elif key not in ("nullable", "propertyOrdering"):
            out[key] = value
    return out


def _format_to_ir(config: dict) -> dict | None:
    if config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema")
    if schema is None and config.get("responseSchema") is not None:
        schema = json_schema(config["responseSchema"])
    return {"schema": schema}


def _choice_to_ir(tool_config) -> ir.ToolChoice | None:
    config = _get(tool_config, "functionCallingConfig")
    if not isinstance(config, dict) or not config.get("mode"):
        return None
    mode, allowed = config["mode"], _get(config, "allowedFunctionNames") or []
    if mode == "ANY" and len(allowed) == 1:
        return ir.ToolChoice("tool", allowed[0])
    return ir.ToolChoice({"ANY": "required", "NONE": "none"}.get(mode, "auto"))


def request_from_ir(req: ir.ChatRequest, model: str, **_options) -> dict:
    """The generateContent request a Gemini upstream gets (`model` goes into its URL)."""
    reject_many_choices(req, WIRE)
    body = {"model": model, "contents": contents_from_ir(req)}
    if req.system:
        body["systemInstruction"] = {"parts": [{"text": "\n\n".join(req.system)}]}
    config = {"temperature": req.temperature, "topP": req.top_p, "topK": req.top_k,
              "maxOutputTokens": req.max_tokens, "stopSequences": req.stop or None}
    config = {k: v for k, v in config.items() if v is not None}
    if req.output_format is not None:
        config["responseMimeType"] = "application/json"
        if req.output_format.get("schema") is not None:
            config["responseJsonSchema"] = req.output_format["schema"]
    if config:
        body["generationConfig"] = config
    body.update(tools_from_ir(req))
    return body


def contents_from_ir(req: ir.ChatRequest) -> list[dict]:
    """Turns as contents. Function responses get a content of their own, apart from any text
    that follows them: Gemini wants one functionResponse per functionCall in that content."""
    contents = []
    for turn in merged(req.turns):
        role = "model" if turn.role == "assistant" else "user"
        results = [_part_from_ir(p) for p in turn.parts if isinstance(p, ir.ToolResult)]
        rest = [_part_from_ir(p) for p in turn.parts if not isinstance(p, ir.ToolResult)]
        rest = [p for p in rest if p is not None]
        calls = [p for p in rest if "functionCall" in p]
        if calls and not any("thoughtSignature" in p for p in calls):
            calls[0]["thoughtSignature"] = SIGNATURE_PLACEHOLDER  # one per step is enough
        for parts in (results, rest):
            if parts:
                contents.append({"role": role, "parts": parts})
    return contents


def tools_from_ir(req: ir.ChatRequest) -> dict:
    out = {}
    if req.tools:
        # parametersJsonSchema takes JSON Schema as clients write it ($schema,
        # additionalProperties, type lists), which `parameters` rejects.
        out["tools"] = [{"functionDeclarations": [
            {"name": t.name, "description": t.description, "parametersJsonSchema": t.parameters}
            for t in req.tools]}]
    if req.tool_choice is not None:
        choice = req.tool_choice
        config = {"mode": {"required": "ANY", "none": "NONE", "tool": "ANY"}.get(choice.mode,
                                                                                   "AUTO")}
        if choice.mode == "tool":
            config["allowedFunctionNames"] = [choice.name]
        out["toolConfig"] = {"functionCallingConfig": config}
    return out


def _part_from_ir(part) -> dict | None:
    if isinstance(part, ir.Text):
        return {"text": part.text} if part.text else None
    if isinstance(part, ir.Image | ir.Document):
        if not part.data:
            raise InvalidRequest("An image URL could not be turned into inline data.")
        return {"inlineData": {"mimeType": part.mime, "data": part.data}}
    if isinstance(part, ir.ToolCall):
        out = {"functionCall": {"id": part.id, "name": part.name,
                                "args": load_arguments(part.arguments)}}
        return {**out, "thoughtSignature": part.signature} if part.signature else out
    if not part.name:
        raise InvalidRequest(f"The tool result for call '{part.call_id}' matches no earlier "
                             "tool call, and Gemini needs the function's name.")
    text = text_of(part.content)
    return {"functionResponse": {"id": part.call_id, "name": part.name,
                                 "response": {"error" if part.is_error else "output": text}}}


def count_payload(req: ir.ChatRequest, model: str) -> dict:
    """The countTokens body: the whole request, so system instruction and tools count too."""
    inner = request_from_ir(req, model)
    inner.pop("generationConfig", None)
    return {"model": model, "generateContentRequest": {**inner, "model": f"models/{model}"}}


# ---- answers --------------------------------------------------------------------------------
def finish_to_ir(reason: str | None, saw_call: bool) -> str:
    if reason == "MAX_TOKENS":
        return ir.LENGTH
    if reason in SAFETY_REASONS:
        return ir.CONTENT_FILTER
    return ir.TOOL_CALLS if saw_call else ir.STOP  # Gemini says STOP after function calls too


def parts_to_ir(parts) -> list:
    out = []
    for part in parts or []:
        if not isinstance(part, dict) or part.get("thought"):
            continue
        blob = part.get("inlineData") or part.get("inline_data")
        if part.get("text"):
            out.append(ir.Text(part["text"]))
        elif isinstance(blob, dict) and str(blob.get("mimeType") or blob.get("mime_type") or ""
                                            ).startswith("image/"):
            out.append(ir.Image(mime=blob.get("mimeType") or blob.get("mime_type"),
                                data=str(blob.get("data") or "")))
        elif isinstance(part.get("functionCall"), dict):
            call = part["functionCall"]
            out.append(ir.ToolCall(id=call.get("id") or new_call_id(), name=call.get("name", ""),
                                   arguments=dump_arguments(call.get("args") or {}),
                                   signature=part.get("thoughtSignature") or ""))
    return out


def response_to_ir(body: dict) -> ir.ChatResponse:
    """A generateContent answer as the internal answer; a blocked prompt is a content filter."""
    candidate = (body.get("candidates") or [{}])[0]
    parts = parts_to_ir((candidate.get("content") or {}).get("parts"))
    saw_call = any(isinstance(p, ir.ToolCall) for p in parts)
    if not body.get("candidates") and (body.get("promptFeedback") or {}).get("blockReason"):
        reason = ir.CONTENT_FILTER
    else:
        reason = finish_to_ir(candidate.get("finishReason"), saw_call)
    usage = usage_from(body.get("usageMetadata"))
    images = sum(isinstance(p, ir.Image) for p in parts)
    if images:  # charged per image, also when the answer counts no tokens
        usage = replace(usage or Usage(), images=images)
    return ir.ChatResponse(id=body.get("responseId") or "", model=body.get("modelVersion") or "",
                           parts=parts, stop_reason=reason, usage=usage)


def parts_from_ir(parts) -> list[dict]:
    out = []
    for part in parts:
        if isinstance(part, ir.Text) and part.text:
            out.append({"text": part.text})
        elif isinstance(part, ir.ToolCall | ir.Image):
            out.append(_part_from_ir(part))
    return out


def response_from_ir(answer: ir.ChatResponse, req: ir.ChatRequest) -> dict:
    """The GenerateContentResponse a Gemini client gets for an internal answer."""
    candidate = {"content": {"role": "model", "parts": parts_from_ir(answer.parts)},
                 "finishReason": FINISH_FROM_IR.get(answer.stop_reason, "STOP"), "index": 0}
    body = {"candidates": [candidate], "modelVersion": req.model, "responseId": answer.id}
    if answer.usage is not None:
        body["usageMetadata"] = usage_to(answer.usage)
    return body


# ---- errors and usage -----------------------------------------------------------------------
def error_body(err) -> dict:
    """Gemini's error envelope for a GatewayError."""
    return {"error": {"code": err.status, "message": err.message,
                      "status": STATUS_NAMES.get(err.status, "UNKNOWN")}}


def error_event(err) -> bytes:
    """An in-stream error for an SSE client (the google-genai SDK raises on an `error` chunk)."""
    return encode_event(json.dumps(error_body(err)).encode())


def usage_from(meta) -> Usage | None:
    """Canonical usage from usageMetadata: the prompt count includes cached tokens, the
    candidates count excludes thoughts."""
    if not isinstance(meta, dict):
        return None
    prompt = int(meta.get("promptTokenCount") or 0) + int(meta.get("toolUsePromptTokenCount") or 0)
    cached = int(meta.get("cachedContentTokenCount") or 0)
    output = int(meta.get("candidatesTokenCount") or 0) + int(meta.get("thoughtsTokenCount") or 0)
    # image output is charged per image (the answer's inline images), not as tokens
    output -= sum(int(d.get("tokenCount") or 0) for d in meta.get("candidatesTokensDetails") or []
                  if isinstance(d, dict) and d.get("modality") == "IMAGE")
    return Usage(input=max(prompt - cached, 0), cache_read=cached, output=max(output, 0))


def usage_to(usage: Usage) -> dict:
    meta = {"promptTokenCount": usage.prompt, "candidatesTokenCount": usage.output,
            "totalTokenCount": usage.total}
    if usage.cache_read:
        meta["cachedContentTokenCount"] = usage.cache_read
    return meta


def usage_of_body(content: bytes) -> Usage | None:
    """Usage of a whole answer body, with the images it carries."""
    if b'"inlineData"' not in content and b'"inline_data"' not in content:
        return usage_in_body(content, "usageMetadata", usage_from)
    try:
        body = json.loads(content)
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    usage, images = usage_from(body.get("usageMetadata")), images_in(body)
    if images:  # charged per image, also when the answer counts no tokens
        usage = replace(usage or Usage(), images=images)
    return usage


def images_in(chunk: dict) -> int:
    """How many images (inline image parts) the candidates of an answer or chunk carry."""
    count = 0
    for candidate in chunk.get("candidates") or []:
        for part in (candidate.get("content") or {}).get("parts") or []:
            blob = part.get("inlineData") or part.get("inline_data") if isinstance(
                part, dict) else None
            if isinstance(blob, dict) and str(blob.get("mimeType") or blob.get("mime_type")
                                              or "").startswith("image/"):
                count += 1
    return count
