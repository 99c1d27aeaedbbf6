"""The Anthropic Messages format for the pipeline (translation.format.WireFormat): its codec
(translation/anthropic.py) and streams (anthropic_stream.py), metering, passthrough rules and
model lists."""

import json
from datetime import UTC, datetime

from errors import ModelNotFound
from translation import anthropic
from translation.anthropic import event_name
from translation.anthropic_stream import PassthroughTap, StreamDecoder, StreamEncoder
from translation.format import WireFormat
from translation.sse import event_data, split_events
from translation.tokens import json_tokens


# ---- metering -------------------------------------------------------------------------------
def estimate_prompt_tokens(body: dict) -> int:
    """A generous prompt count for the credit hold (see translation.tokens.json_tokens)."""
    return (json_tokens(body.get("system")) + json_tokens(body.get("tools"))
            + sum(4 + json_tokens(m.get("content")) for m in body.get("messages") or []))


def output_limit(body: dict, cap: int) -> int:
    """The most tokens this request may generate: the client's max_tokens, never above cap."""
    return min(cap, body["max_tokens"]) if body.get("max_tokens") else cap


def output_text_of_body(content: bytes) -> str:
    """The generated text and tool inputs of a message, to estimate its tokens."""
    try:
        blocks = json.loads(content).get("content") or []
    except (ValueError, AttributeError):
        return ""
    return "".join(b.get("text") or (json.dumps(b["input"]) if "input" in b else "")
                   for b in blocks if isinstance(b, dict))


def output_text_of_events(events: bytes) -> str:
    """The generated text and tool-input fragments in relayed Messages events."""
    text = []
    for event in split_events(events):
        if event_name(event) != "content_block_delta":
            continue
        try:
            delta = json.loads(event_data(event)).get("delta") or {}
        except (ValueError, AttributeError):
            continue
        text.append(delta.get("text") or delta.get("partial_json") or "")
    return "".join(text)



class AnthropicFormat(WireFormat):
    name = anthropic.WIRE
    key_header = "x-api-key: KEY"  # what its SDK sends (a 401 names it)

    def request_to_ir(self, inbound):
        return anthropic.request_to_ir(inbound.body)

    def request_from_ir(self, req, model, upstream):
        return anthropic.request_from_ir(req, model)

    def count_payload(self, req, model):
        return anthropic.count_payload(req, model)

    def count_passthrough(self, inbound, model):
        return {**{k: v for k, v in inbound.body.items() if k != "provider"}, "model": model}

    def answer_to_ir(self, content):
        return anthropic.response_to_ir(json.loads(content))

    def answer_from_ir(self, answer, req):
        return json.dumps(anthropic.response_from_ir(answer, req), ensure_ascii=False).encode()

    def stream_decoder(self):
        return StreamDecoder()

    def stream_encoder(self, req, inbound, price):
        return StreamEncoder(req)

    def error_body(self, err):
        return anthropic.error_body(err)

    def error_event(self, err):
        return anthropic.error_event(err)

    def estimate_prompt_tokens(self, inbound):
        return estimate_prompt_tokens(inbound.body)

    def output_limit(self, inbound, cap):
        return output_limit(inbound.body, cap)

    def usage_of_body(self, content):
        return anthropic.usage_of_body(content)

    def output_text_of_body(self, content):
        return output_text_of_body(content)

    def output_text_of_events(self, events):
        return output_text_of_events(events)

    def passthrough_payload(self, inbound, model, limit, upstream):
        """The client's body with its model name and max_tokens clamped; no `provider`."""
        payload = {k: v for k, v in inbound.body.items() if k != "provider"}
        payload["model"] = model
        payload["max_tokens"] = min(payload.get("max_tokens") or limit, limit)
        return payload

    def passthrough_tap(self, inbound, price):
        return PassthroughTap()

    def model_list(self, models):
        return {"data": models, "has_more": False,
                "first_id": models[0]["id"] if models else None,
                "last_id": models[-1]["id"] if models else None}

    def model_entry(self, name, owner, created, embeds=False, outputs=None):
        stamp = datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"type": "model", "id": name, "display_name": name, "created_at": stamp}

    def model_missing(self, name):
        return ModelNotFound(f"model: {name}")


FORMAT = AnthropicFormat()
