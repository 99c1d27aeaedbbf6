"""Embeddings for the fake upstream: OpenAI /embeddings and Gemini :embedContent /
:batchEmbedContents, with deterministic vectors tests can compute (`vector`).

Every value is a multiple of 1/128 in [-1, 1), exactly representable as float32, so a vector
survives float JSON, base64 float32 and the translations between them unchanged.
"""

import base64
import hashlib
import struct

DEFAULT_DIMENSIONS = 16
GEMINI_BATCH_LIMIT = 100  # what the real API enforces


def vector(text: str, dimensions: int | None = None) -> list[float]:
    """The fake's embedding of `text` (or of a token array's repr)."""
    size = dimensions or DEFAULT_DIMENSIONS
    out, counter = [], 0
    while len(out) < size:
        digest = hashlib.sha256(f"{counter}:{text}".encode("utf-8", "surrogatepass")).digest()
        out.extend((b - 128) / 128 for b in digest)
        counter += 1
    return out[:size]


def tokens_text(tokens: list[int]) -> str:
    """The text the fake embeds for a token array."""
    return "tokens:" + ",".join(map(str, tokens))


def content_text(content: dict) -> str:
    """The text the fake embeds for a Gemini content: its text parts joined by newlines, and a
    stand-in for each inline data part."""
    pieces = []
    for part in content.get("parts") or []:
        data = part.get("inlineData") or part.get("inline_data")
        pieces.append(part["text"] if "text" in part else f"data:{(data or {}).get('data')}")
    return "\n".join(pieces)


def handles(path: str) -> bool:
    return path.endswith(("/embeddings", ":embedContent", ":batchEmbedContents"))


def answer(path: str, payload: dict, script) -> tuple[int, dict]:
    """(status, JSON body) for an embeddings call."""
    if path.endswith("/embeddings"):
        return openai_answer(payload, script)
    model = path.rsplit("/", 1)[-1].split(":")[0]
    if path.endswith(":embedContent"):
        body = {"embedding": {"values": _gemini_vector(payload)}}
    else:
        requests = payload.get("requests") or []
        if len(requests) > GEMINI_BATCH_LIMIT:
            return 400, _gemini_error("BatchEmbedContentsRequest.requests: at most 100 "
                                      "requests can be in one batch")
        if any(r.get("model") != f"models/{model}" for r in requests):
            return 400, _gemini_error("Model names in the batch must match the URL.")
        body = {"embeddings": [{"values": _gemini_vector(r)} for r in requests]}
    if isinstance(script.usage, dict):  # real Gemini embeddings mostly report no usage
        body["usageMetadata"] = script.usage
    return 200, body


def _gemini_vector(request: dict) -> list[float]:
    return vector(content_text(request.get("content") or {}),
                  request.get("outputDimensionality"))


def _gemini_error(message: str) -> dict:
    return {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}


def openai_inputs(value) -> list[str]:
    """The texts an /embeddings `input` stands for, token arrays rendered by tokens_text."""
    if isinstance(value, str):
        return [value]
    if value and all(isinstance(v, int) for v in value):
        return [tokens_text(value)]
    return [v if isinstance(v, str) else tokens_text(v) for v in value]


def openai_answer(payload: dict, script) -> tuple[int, dict]:
    texts = openai_inputs(payload.get("input"))
    base64_wanted = payload.get("encoding_format") == "base64"
    data = []
    for i, text in enumerate(texts):
        values = vector(text, payload.get("dimensions"))
        embedding = (base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
                     if base64_wanted else values)
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    if script.reverse_order:  # indexes, not positions, say which input a vector is for
        data.reverse()
    body = {"object": "list", "data": data, "model": payload.get("model")}
    if script.usage == "auto":
        tokens = sum(len(t.split()) for t in texts)
        body["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    elif script.usage is not None:
        body["usage"] = script.usage
    return 200, body
