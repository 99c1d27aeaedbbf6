"""The Gemini format for the pipeline (translation.format.WireFormat): its codec
(translation/gemini.py) and streams (gemini_stream.py), metering, passthrough rules and model
lists."""

import json

from errors import ModelNotFound
from translation import gemini, gemini_embeddings
from translation.format import WireFormat
from translation.gemini_stream import ArrayTap, PassthroughTap, StreamDecoder, StreamEncoder
from translation.inbound import JSON_ARRAY, SSE
from translation.sse import event_data, split_events
from translation.tokens import json_tokens


# ---- metering -------------------------------------------------------------------------------
def estimate_prompt_tokens(body: dict) -> int:
    """A generous prompt count for the credit hold (see translation.tokens.json_tokens)."""
    return (json_tokens(body.get("systemInstruction")) + json_tokens(body.get("tools"))
            + sum(4 + json_tokens(c.get("parts")) for c in body.get("contents") or []))


def output_limit(body: dict, cap: int) -> int:
    """The most tokens this request may generate: maxOutputTokens, never above cap."""
    asked = (body.get("generationConfig") or {}).get("maxOutputTokens")
    return min(cap, asked) if asked else cap


def set_output_limit(payload: dict, limit: int) -> None:
    config = dict(payload.get("generationConfig") or {})  # the client's dict stays untouched
    config["maxOutputTokens"] = min(config.get("maxOutputTokens") or limit, limit)
    payload["generationConfig"] = config


def output_text_of_body(content: bytes) -> str:
    """The generated text and call arguments of an answer, to estimate its tokens."""
    try:
        return _chunk_text(json.loads(content))
    except ValueError:
        return ""


def output_text_of_events(events: bytes) -> str:
    """The generated text in relayed chunks, sent as SSE or as a JSON array."""
    if events.startswith(b"["):
        pieces = events[1:].rstrip(b"]").split(b",\r\n")
    else:
        pieces = [event_data(e) for e in split_events(events)]
    text = []
    for piece in pieces:
        try:
            text.append(_chunk_text(json.loads(piece)))
        except ValueError:
            continue
    return "".join(text)


def _chunk_text(chunk) -> str:
    if not isinstance(chunk, dict):
        return ""
    candidate = (chunk.get("candidates") or [{}])[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    return "".join(p.get("text") or (json.dumps(p["functionCall"]) if "functionCall" in p else "")
                   for p in parts if isinstance(p, dict) and not p.get("thought"))



class GeminiFormat(WireFormat):
    name = gemini.WIRE
    key_header = "x-goog-api-key: KEY"  # what its SDK sends (a 401 names it)
    needs_inline_images = True  # inlineData wants the bytes; fileData only takes uploaded files
    embeddings = gemini_embeddings

    def request_to_ir(self, inbound):
        return gemini.request_to_ir(inbound.body, model=inbound.model, stream=inbound.stream)

    def request_from_ir(self, req, model, upstream):
        return gemini.request_from_ir(req, model)

    def count_payload(self, req, model):
        return gemini.count_payload(req, model)

    def count_passthrough(self, inbound, model):
        """The whole request as the client gave it, so system instruction and tools count."""
        inner = {k: v for k, v in inbound.body.items() if k != "provider"}
        return {"generateContentRequest": {**inner, "model": f"models/{model}"}}

    def answer_to_ir(self, content):
        return gemini.response_to_ir(json.loads(content))

    def answer_from_ir(self, answer, req):
        return json.dumps(gemini.response_from_ir(answer, req), ensure_ascii=False).encode()

    def stream_decoder(self):
        return StreamDecoder()

    def stream_encoder(self, req, inbound, price):
        return StreamEncoder(req, sse=inbound.framing == SSE)

    def error_body(self, err):
        return gemini.error_body(err)

    def error_event(self, err):
        return gemini.error_event(err)

    def estimate_prompt_tokens(self, inbound):
        return estimate_prompt_tokens(inbound.body)

    def output_limit(self, inbound, cap):
        return output_limit(inbound.body, cap)

    def usage_of_body(self, content):
        return gemini.usage_of_body(content)

    def output_text_of_body(self, content):
        return output_text_of_body(content)

    def output_text_of_events(self, events):
        return output_text_of_events(events)

    def passthrough_payload(self, inbound, model, limit, upstream):
        """The client's body (its model goes into the upstream URL) with maxOutputTokens
        clamped; no `provider`. Streams are always asked of the upstream as SSE."""
        payload = {k: v for k, v in inbound.body.items() if k != "provider"}
        set_output_limit(payload, limit)
        return payload

    def passthrough_tap(self, inbound, price):
        return ArrayTap() if inbound.framing == JSON_ARRAY else PassthroughTap()

    def model_list(self, models):
        return {"models": models}

    def image_quality(self, inbound):
        config = inbound.body.get("generationConfig") or inbound.body.get("generation_config")
        image = (config.get("imageConfig") or config.get("image_config")) if isinstance(
            config, dict) else None
        size = (image.get("imageSize") or image.get("image_size")) if isinstance(
            image, dict) else None
        return "hd" if str(size).upper() == "4K" else "standard"

    def model_entry(self, name, owner, created, embeds=False, outputs=None):
        methods = gemini_embeddings.METHODS if embeds else gemini.METHODS
        kind = " An image model." if outputs else ""
        return {"name": f"models/{name}", "baseModelId": name, "version": "001",
                "displayName": name,
                "description": f"Served by provider {owner} through Tollgate.{kind}",
                "supportedGenerationMethods": list(methods)}

    def model_id(self, segment):
        return segment.removeprefix("models/")

    def model_missing(self, name):
        return ModelNotFound(f"Model 'models/{name}' is not found for this key.")


FORMAT = GeminiFormat()
