"""The OpenAI Responses format for the pipeline (translation.format.WireFormat): its codec
(translation/responses.py, responses_objects.py) and streams (responses_stream.py), metering,
passthrough rules and model lists (the OpenAI ones: the Responses API shares /v1/models)."""

import json

from errors import ModelNotFound
from translation import openai, responses
from translation.format import WireFormat
from translation.responses_stream import PassthroughTap, StreamDecoder, StreamEncoder
from translation.responses_stream import error_event as stream_error_event
from translation.sse import event_data
from translation.tokens import json_tokens

# Fields only the gateway reads: the history it rebuilt for previous_response_id is in `input`.
GATEWAY_ONLY = ("provider", "previous_response_id")
DELTAS = ("response.output_text.delta", "response.function_call_arguments.delta")


# ---- metering -------------------------------------------------------------------------------
def estimate_prompt_tokens(body: dict) -> int:
    """A generous prompt estimate for the hold: every string in input, instructions and tools."""
    items = body.get("input")
    count = len(items) if isinstance(items, list) else 1
    return (json_tokens(items) + json_tokens(body.get("instructions"))
            + json_tokens(body.get("tools")) + 4 * count)


def output_limit(body: dict, cap: int) -> int:
    asked = body.get("max_output_tokens")
    return min(cap, asked) if asked else cap


def output_text_of_body(content: bytes) -> str:
    try:
        output = json.loads(content).get("output") or []
    except (ValueError, AttributeError):
        return ""
    return "".join(_item_text(item) for item in output if isinstance(item, dict))


def _item_text(item: dict) -> str:
    if item.get("type") == "function_call":
        return str(item.get("arguments") or "")
    return "".join(str(c.get("text") or "") for c in item.get("content") or []
                   if isinstance(c, dict))


def output_text_of_events(events: bytes) -> str:
    """Generated text and call arguments in relayed Responses events."""
    text = []
    for event in events.split(b"\n\n"):
        data = event_data(event)
        if b'.delta"' not in data:
            continue
        try:
            payload = json.loads(data)
        except ValueError:
            continue
        if isinstance(payload, dict) and payload.get("type") in DELTAS:
            text.append(str(payload.get("delta") or ""))
    return "".join(text)


class ResponsesFormat(WireFormat):
    name = responses.WIRE

    def request_to_ir(self, inbound):
        return responses.request_to_ir(inbound.body)

    def request_from_ir(self, req, model, upstream):
        return responses.request_from_ir(req, model)

    def count_payload(self, req, model):
        return responses.count_payload(req, model)

    def count_passthrough(self, inbound, model):
        skip = (*GATEWAY_ONLY, "stream", "store", "stream_options", "include", "background")
        return {**{k: v for k, v in inbound.body.items() if k not in skip}, "model": model}

    def answer_to_ir(self, content):
        return responses.response_to_ir(json.loads(content))

    def answer_from_ir(self, answer, req):
        return json.dumps(responses.response_from_ir(answer, req), ensure_ascii=False).encode()

    def stream_decoder(self):
        return StreamDecoder()

    def stream_encoder(self, req, inbound, price):
        return StreamEncoder(req, price=price)  # the final response shows what it cost

    def error_body(self, err):
        return openai.error_body(err)

    def error_event(self, err):
        return stream_error_event(err)

    def estimate_prompt_tokens(self, inbound):
        return estimate_prompt_tokens(inbound.body)

    def output_limit(self, inbound, cap):
        return output_limit(inbound.body, cap)

    def usage_of_body(self, content):
        return responses.usage_of_body(content)

    def output_text_of_body(self, content):
        return output_text_of_body(content)

    def output_text_of_events(self, events):
        return output_text_of_events(events)

    def passthrough_payload(self, inbound, model, limit, upstream):
        """The client's body: our model name, max_output_tokens clamped (or added), and none
        of the fields only the gateway reads (previous_response_id: see services.conversations)."""
        payload = {k: v for k, v in inbound.body.items() if k not in GATEWAY_ONLY}
        payload["model"] = model
        asked = payload.get("max_output_tokens")
        payload["max_output_tokens"] = min(asked, limit) if asked else limit
        return payload

    def passthrough_tap(self, inbound, price):
        return PassthroughTap()

    def model_list(self, models):
        return {"object": "list", "data": models}

    def model_entry(self, name, owner, created, embeds=False, outputs=None):
        entry = {"id": name, "object": "model", "created": created, "owned_by": owner}
        if outputs:
            entry["output_modalities"] = list(outputs)
        return entry

    def model_missing(self, name):
        return ModelNotFound(f"The model '{name}' does not exist", param="model")


FORMAT = ResponsesFormat()
