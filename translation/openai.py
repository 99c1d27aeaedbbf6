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


class StreamTap:
    """Watches a passthrough chat stream without re-encoding it.

    Records the last usage seen (some servers repeat it on every chunk: the last one wins),
    whether `[DONE]` arrived, and drops the usage-only chunk the client did not ask for.
    """

    def __init__(self, forward_usage_chunk: bool):
        self.forward_usage_chunk = forward_usage_chunk
        self.usage = None
        self.finished = False
        self.failed = False

    def end(self) -> bytes | None:
        """Bytes to send after the upstream ended cleanly (none: `[DONE]` was relayed)."""
        return None

    def feed(self, event: bytes) -> bytes | None:
        """The bytes to relay for one upstream event (None to drop it)."""
        data = event_data(event)
        if data == b"[DONE]":
            self.finished = True
            return event
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
        if usage is not None:
            self.usage = usage
            if not self.forward_usage_chunk and not chunk.get("choices"):
                return None
        return event


def _may_carry_usage(data: bytes) -> bool:
    return b'"usage"' in data and b'"usage":null' not in data and b'"usage": null' not in data
