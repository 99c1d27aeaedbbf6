"""OpenAI Chat Completions wire format: error envelope, usage, and the passthrough stream tap."""

import json

from translation.ir import Usage
from translation.sse import encode_event, event_data

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
DONE = b"data: [DONE]\n\n"


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
    cached = int(details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return Usage(input=max(prompt - cached, 0), cache_read=cached,
                 output=int(data.get("completion_tokens") or 0))


def usage_of_body(content: bytes) -> Usage | None:
    """Usage of a whole chat completion body, read without keeping the parsed body."""
    try:
        return usage_from(json.loads(content).get("usage"))
    except (ValueError, AttributeError):
        return None


def estimate_prompt_tokens(body: dict) -> int:
    """A generous count of a request's prompt tokens, for holds and when upstream gives none.

    No tokenizer ships offline, so text counts one token per 3 UTF-8 bytes (English averages
    about 4 characters a token; CJK about 3 bytes), each image 1,000 tokens, plus 4 a message.
    """
    total = _text_tokens(body.get("tools"))
    for message in body.get("messages") or []:
        total += 4 + _text_tokens(message.get("tool_calls"))
        content = message.get("content")
        parts = content if isinstance(content, list) else [content]
        for part in parts:
            if isinstance(part, dict) and part.get("type") == "image_url":
                total += 1000
            else:
                total += _text_tokens(part.get("text") if isinstance(part, dict) else part)
    return total


def estimate_text_tokens(text: str) -> int:
    """Tokens of generated text when upstream reports none: one per 4 characters, rounded up."""
    return -(-len(text) // 4)


def _text_tokens(value) -> int:
    if value is None:
        return 0
    text = value if isinstance(value, str) else json.dumps(value)
    return -(-len(text.encode("utf-8", "surrogatepass")) // 3)


def output_limit(body: dict, cap: int) -> int:
    """The most tokens this request may generate: the client's limit, never above the cap."""
    asked = [body[f] for f in ("max_completion_tokens", "max_tokens") if body.get(f)]
    return min([cap, *asked])


def set_output_limit(payload: dict, limit: int, field: str) -> None:
    """Clamp the payload's token limits to `limit`, or add `field` when it has none."""
    present = [f for f in ("max_completion_tokens", "max_tokens") if payload.get(f)]
    for name in present:
        payload[name] = min(payload[name], limit)
    if not present:
        payload[field] = limit


def with_credits(content: bytes, credits) -> bytes:
    """A completion body with `credits_consumed` beside `usage`."""
    try:
        body = json.loads(content)
    except ValueError:
        return content
    if not isinstance(body, dict):
        return content
    body["credits_consumed"] = float(credits)
    return json.dumps(body).encode()


def output_text_of_body(content: bytes) -> str:
    """The generated text and tool arguments of a completion body, to estimate its tokens."""
    try:
        choices = json.loads(content).get("choices") or []
    except (ValueError, AttributeError):
        return ""
    return "".join(_message_text(c.get("message") or {}) for c in choices if isinstance(c, dict))


def output_text_of_events(events: bytes) -> str:
    """The generated text and tool arguments in relayed stream events."""
    text = []
    for event in events.split(b"\n\n"):
        data = event_data(event)
        if not data.startswith(b"{"):
            continue
        try:
            chunk = json.loads(data)
        except ValueError:
            continue
        for choice in chunk.get("choices") or []:
            text.append(_message_text(choice.get("delta") or {}))
    return "".join(text)


def _message_text(message: dict) -> str:
    calls = message.get("tool_calls") or []
    args = "".join(str((c.get("function") or {}).get("arguments") or "") for c in calls)
    content = message.get("content")
    return (content if isinstance(content, str) else "") + args


class StreamTap:
    """Watches a passthrough chat stream without re-encoding it.

    Records the last usage seen (some servers repeat it on every chunk: the last one wins),
    whether `[DONE]` arrived, and drops the usage-only chunk the client did not ask for.
    """

    KEEP = 1 << 20  # relayed bytes kept to estimate output tokens if upstream sends no usage

    def __init__(self, forward_usage_chunk: bool, price=None):
        self.forward_usage_chunk = forward_usage_chunk
        self.price = price  # Usage -> credits, added to the usage chunk the client gets
        self.usage = None
        self.finished = False
        self.failed = False
        self.relayed = bytearray()

    def end(self) -> bytes | None:
        """Bytes to send after the upstream ended cleanly (none: `[DONE]` was relayed)."""
        return None

    def feed(self, event: bytes) -> bytes | None:
        """The bytes to relay for one upstream event (None to drop it)."""
        data = event_data(event)
        if data == b"[DONE]":
            self.finished = True
            return event
        if len(self.relayed) < self.KEEP:
            self.relayed += event
        if not _may_carry_usage(data) and b'"error"' not in data:
            return event  # the common case: a content chunk, relayed without parsing
        try:
            chunk = json.loads(data)
        except ValueError:
            return event
        if not isinstance(chunk, dict):
            return event
        if "error" in chunk:
            self.failed = True
        usage = usage_from(chunk.get("usage"))
        if usage is None or chunk.get("choices"):
            if usage is not None:
                self.usage = usage
            return event
        self.usage = usage  # the usage-only chunk after the finish chunk
        if not self.forward_usage_chunk:
            return None
        if self.price is None:
            return event
        chunk["credits_consumed"] = float(self.price(usage))
        return encode_event(json.dumps(chunk).encode())


def _may_carry_usage(data: bytes) -> bool:
    return b'"usage"' in data and b'"usage":null' not in data and b'"usage": null' not in data
