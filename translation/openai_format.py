"""The OpenAI Chat Completions format for the pipeline (translation.format.WireFormat):
its codec (translation/openai.py) and streams (openai_stream.py), metering, passthrough rules
and model lists."""

import json

from errors import ModelNotFound
from translation import openai, openai_embeddings
from translation.format import WireFormat
from translation.openai_stream import PassthroughTap, StreamDecoder, StreamEncoder
from translation.sse import event_data, split_events


# ---- metering -------------------------------------------------------------------------------
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
    for event in split_events(events):
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



class OpenAIFormat(WireFormat):
    name = openai.WIRE
    embeddings = openai_embeddings

    def request_to_ir(self, inbound):
        return openai.request_to_ir(inbound.body)

    def request_from_ir(self, req, model, upstream):
        return openai.request_from_ir(req, model, limit_field=upstream.output_limit_field)

    def answer_to_ir(self, content):
        return openai.response_to_ir(json.loads(content))

    def answer_from_ir(self, answer, req):
        return json.dumps(openai.response_from_ir(answer, req), ensure_ascii=False).encode()

    def stream_decoder(self):
        return StreamDecoder()

    def stream_encoder(self, req, inbound, price):
        return StreamEncoder(req, price=price)  # the usage chunk shows what the answer cost

    def error_body(self, err):
        return openai.error_body(err)

    def error_event(self, err):
        return openai.error_event(err)

    def estimate_prompt_tokens(self, inbound):
        return estimate_prompt_tokens(inbound.body)

    def output_limit(self, inbound, cap):
        return output_limit(inbound.body, cap)

    def usage_of_body(self, content):
        return openai.usage_of_body(content)

    def output_text_of_body(self, content):
        return output_text_of_body(content)

    def output_text_of_events(self, events):
        return output_text_of_events(events)

    def passthrough_payload(self, inbound, model, limit, upstream):
        """The client's body: its model name, the output limit clamped (or added in the field
        the upstream understands), usage asked for in streams, no gateway-only `provider`."""
        payload = {k: v for k, v in inbound.body.items() if k != "provider"}
        payload["model"] = model
        if inbound.stream:
            payload["stream_options"] = {**(inbound.body.get("stream_options") or {}),
                                         "include_usage": True}  # usage is needed for billing
        set_output_limit(payload, limit, upstream.output_limit_field or "max_tokens")
        return payload

    def passthrough_tap(self, inbound, price):
        wants_usage = bool((inbound.body.get("stream_options") or {}).get("include_usage"))
        return PassthroughTap(forward_usage_chunk=wants_usage, price=price)

    def model_list(self, models):
        return {"object": "list", "data": models}

    def model_entry(self, name, owner, created, embeds=False, outputs=None):
        entry = {"id": name, "object": "model", "created": created, "owned_by": owner}
        if outputs:  # as OpenRouter's list marks them
            entry["output_modalities"] = list(outputs)
        return entry

    def model_missing(self, name):
        return ModelNotFound(f"The model '{name}' does not exist", param="model")


FORMAT = OpenAIFormat()
