"""OpenAI's embeddings format (POST /embeddings): requests and answers, both sides.

Clients get `encoding_format` honoured exactly: base64 (what the official SDKs ask for by
default) as float32 little-endian, floats otherwise, whatever the upstream sent. Token-array
inputs exist only here; other formats refuse them.
"""

import json

from errors import InvalidRequest
from translation.embeddings import EmbedAnswer, EmbedInput, EmbedRequest, pack_base64, vector_of

name = "openai"
MODELLED = ("model", "input", "dimensions", "encoding_format", "task_type", "provider")
# What upstreams are asked for when we translate: base64 is a quarter of the bytes of floats, and
# every server the official SDKs work with takes it (they ask for it by default). A server that
# ignores it and sends floats is understood all the same.
UPSTREAM_ENCODING = "base64"


def request_to_ir(body: dict, method: str = "") -> EmbedRequest:
    """The validated client body as an EmbedRequest (`task_type` is our extension for
    Gemini upstreams, which sort queries from documents by it). OpenAI has one method."""
    value = body["input"]
    if isinstance(value, str):
        items = [EmbedInput(text=value)]
    elif value and all(isinstance(v, int) for v in value):
        items = [EmbedInput(tokens=value)]  # one token array
    else:
        items = [EmbedInput(text=v) if isinstance(v, str) else EmbedInput(tokens=v)
                 for v in value]
    for i, item in enumerate(items):
        item.dimensions = body.get("dimensions")
        item.task_type = body.get("task_type")
        item.param = "input" if isinstance(value, str) or item.tokens is value else f"input[{i}]"
    extras = {k: v for k, v in body.items() if k not in MODELLED and v is not None}
    return EmbedRequest(model=body["model"], inputs=items,
                        encoding=body.get("encoding_format") or "float", extras=extras)


def passthrough_payload(body: dict, upstream_model: str, method: str = "") -> tuple[dict, dict]:
    """The client's body for an OpenAI-type upstream, as it came: model name aside."""
    payload = {k: v for k, v in body.items() if k not in ("provider", "task_type")}
    payload["model"] = upstream_model
    return payload, {}


def group_key(item: EmbedInput):
    """Inputs asking for different dimensions cannot share one /embeddings call."""
    return item.dimensions


def request_from_ir(req: EmbedRequest, items: list, upstream_model: str) -> tuple[dict, dict]:
    """An /embeddings body for some of a request's inputs (all with the same dimensions)."""
    inputs = []
    for item in items:
        if item.text is None and item.tokens is None:
            raise InvalidRequest(f"'{item.param}' has parts other than text; OpenAI-type "
                                 "providers embed text only.", param=item.param)
        inputs.append(item.tokens if item.tokens is not None else item.text)
    payload = {"model": upstream_model, "input": inputs,
               "encoding_format": UPSTREAM_ENCODING}
    if items[0].dimensions is not None:
        payload["dimensions"] = items[0].dimensions
    return payload, {}


def answer_to_ir(data, count: int, options: dict, *, decode: bool = True) -> EmbedAnswer:
    """Vectors in input order from an /embeddings answer; ValueError when it is not one.
    Without `decode` the vectors stay as sent (base64 or floats): for answers relayed as they
    are, which need their shape checked but no numbers read."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("an embeddings answer needs a data list")
    rows = data["data"]
    if len(rows) != count:
        raise ValueError(f"asked for {count} embeddings, got {len(rows)}")
    vectors = [None] * count
    for position, row in enumerate(rows):
        index = row.get("index", position) if isinstance(row, dict) else None
        if not isinstance(index, int) or not 0 <= index < count or vectors[index] is not None:
            raise ValueError("embedding indexes must number the inputs once each")
        value = row.get("embedding")
        if not decode and isinstance(value, str | list):
            vectors[index] = value
        else:
            vectors[index] = vector_of(value)
    usage = data.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return EmbedAnswer(vectors, tokens if isinstance(tokens, int) and tokens >= 0 else None)


def relayable(content: bytes, data, req: EmbedRequest) -> bool:
    """Whether the upstream's own bytes can go to the client: its vectors are in the encoding
    the client asked for, and it gave the usage OpenAI's schema requires."""
    wanted = str if req.encoding == "base64" else list
    rows = data.get("data") if isinstance(data, dict) else None
    return (isinstance(rows, list) and isinstance(data.get("usage"), dict)
            and content.rstrip().endswith(b"}")
            and all(isinstance(row, dict) and isinstance(row.get("embedding"), wanted)
                    for row in rows))


def relay_body(content: bytes, credits) -> bytes:
    """The upstream's bytes with credits_consumed added (after its last field)."""
    body = content.rstrip()
    return body[:-1] + b',"credits_consumed":' + json.dumps(float(credits)).encode() + b"}"


def answer_from_ir(answer: EmbedAnswer, req: EmbedRequest, tokens: int, credits) -> bytes:
    """The client's answer: one embedding per input, in order, encoded as it asked."""
    encode = pack_base64 if req.encoding == "base64" else list  # vectors are decoded floats
    data = [{"object": "embedding", "index": i, "embedding": encode(vector)}
            for i, vector in enumerate(answer.vectors)]
    body = {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "credits_consumed": float(credits)}
    return json.dumps(body, separators=(",", ":")).encode()
