"""Content helpers every format module shares: data URLs, tool arguments, turn shaping."""

import hashlib
import json
import re
import uuid

from errors import InvalidRequest
from translation.ir import ChatRequest, Image, Text, ToolCall, ToolResult, Turn

_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[^,;]*)*?;base64,(?P<data>.*)", re.S)
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
MAX_TOOL_NAME = 64  # OpenAI's limit (and Anthropic's pattern allows no '.' or ':', Gemini's does)
_TOOL_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{MAX_TOOL_NAME}}}")


def image_from_url(url: str, where: str) -> Image:
    """An Image from an OpenAI-style URL: a `data:` URL becomes inline bytes, others stay URLs."""
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"'{where}' must be a non-empty URL string.", param=where)
    if url.startswith("data:"):
        match = _DATA_URL.fullmatch(url)
        if not match:
            raise InvalidRequest(f"'{where}' is not a base64 data URL.", param=where)
        return Image(mime=match["mime"] or "image/png", data=match["data"])
    if not url.startswith(("http://", "https://")):
        raise InvalidRequest(f"'{where}' must be an http(s) or data: URL.", param=where)
    return Image(url=url)


def data_url(image: Image) -> str:
    return image.url if not image.data else f"data:{image.mime};base64,{image.data}"


def load_arguments(text: str) -> dict:
    """Tool-call arguments as an object; invalid or non-object JSON is kept under "arguments"."""
    if not text or not text.strip():
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"arguments": text}
    return value if isinstance(value, dict) else {"arguments": value}


def dump_arguments(value) -> str:
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def new_call_id() -> str:
    """An id for a tool call whose upstream gave none (Gemini may omit them)."""
    return "call_" + uuid.uuid4().hex[:24]


def safe_id(call_id: str) -> str:
    """A tool-call id Anthropic accepts (^[a-zA-Z0-9_-]+$); the same input maps the same way."""
    return _ID_UNSAFE.sub("_", call_id) or "call"


def safe_tool_name(name: str) -> str:
    """A tool name OpenAI and Anthropic accept (^[a-zA-Z0-9_-]{1,64}$); the same name always
    maps the same way, and too long a name keeps a hash of the original to stay unique."""
    if _TOOL_NAME.fullmatch(name):
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{_ID_UNSAFE.sub('_', name)[:MAX_TOOL_NAME - 9]}_{digest}"


def renamed_tools(req: ChatRequest) -> dict:
    """safe name -> the client's name, for the tools whose names had to change."""
    return {safe_tool_name(t.name): t.name for t in req.tools if safe_tool_name(t.name) != t.name}


def restore_tool_names(parts, names: dict) -> None:
    """Give tool calls in an answer back the names the client defined (see safe_tool_name)."""
    for part in parts:
        if isinstance(part, ToolCall) and part.name in names:
            part.name = names[part.name]


def text_of(parts) -> str:
    return "".join(p.text for p in parts if isinstance(p, Text))


def merged(turns, *, results_first=True) -> list[Turn]:
    """Consecutive same-role turns joined into one (providers that demand alternation).

    Tool results move to the front of a merged user turn: Anthropic wants them right after
    the assistant turn that made the calls, before any text.
    """
    out: list[Turn] = []
    for turn in turns:
        if not turn.parts:
            continue
        if out and out[-1].role == turn.role:
            out[-1] = Turn(turn.role, out[-1].parts + turn.parts)
        else:
            out.append(Turn(turn.role, list(turn.parts)))
    if results_first:
        for turn in out:
            results = [p for p in turn.parts if isinstance(p, ToolResult)]
            if results:
                turn.parts = results + [p for p in turn.parts if not isinstance(p, ToolResult)]
    return out


def reject_many_choices(ir: ChatRequest, provider_format: str) -> None:
    """n > 1 cannot be honoured through translation: say so rather than answer once."""
    if ir.n is not None and ir.n > 1:
        raise InvalidRequest(f"Asking for {ir.n} choices (n > 1) is not supported for this "
                             f"model: its provider speaks the {provider_format} format, which "
                             "returns one answer per request.", param="n")


def name_tool_results(turns) -> None:
    """Give each tool result the name of the call it answers (formats that send results with
    an id only), from the tool calls of the assistant turns."""
    names = {p.id: p.name for t in turns for p in t.parts if isinstance(p, ToolCall)}
    for turn in turns:
        for part in turn.parts:
            if isinstance(part, ToolResult):
                part.name = names.get(part.call_id, "")


def is_blank(text) -> bool:
    return not isinstance(text, str) or not text.strip()
