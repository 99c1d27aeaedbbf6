"""The internal shape of an embeddings exchange, shared by the OpenAI and Gemini formats.

An embeddings request is a list of inputs, each embedded on its own into one vector; the answer
is the vectors in the inputs' order and, when the upstream counts them, the input tokens. Each
format module (openai_embeddings, gemini_embeddings) reads its requests and answers into these
and writes them back out, serving the client side and the provider side alike.
"""

import array
import base64
import math
import sys
from dataclasses import dataclass, field
from typing import Protocol

from translation.tokens import json_tokens

MAX_INPUTS = 2048  # inputs in one client request (OpenAI's limit; Gemini clients get the same)


@dataclass
class EmbedInput:
    """One thing to embed: text, an OpenAI token array, or Gemini content parts as sent."""

    text: str | None = None  # None when the input is tokens or parts other than text
    tokens: list | None = None
    parts: list | None = None  # a Gemini client's parts, kept whole for Gemini upstreams
    task_type: str | None = None  # Gemini taskType (RETRIEVAL_QUERY, ...)
    title: str | None = None  # Gemini title (with RETRIEVAL_DOCUMENT)
    dimensions: int | None = None  # OpenAI dimensions = Gemini outputDimensionality
    param: str = "input"  # where the input sits in the client's body, for error messages


@dataclass
class EmbedRequest:
    model: str
    inputs: list
    encoding: str = "float"  # what an OpenAI client wants back: "float" or "base64"
    method: str = "batchEmbedContents"  # what a Gemini client called
    size_param: str = "input"  # the field named when the inputs are too many or too large
    extras: dict = field(default_factory=dict)  # unmodelled fields (OpenAI: user, ...)


@dataclass
class EmbedAnswer:
    vectors: list  # list[list[float]], in the inputs' order
    prompt_tokens: int | None = None  # as the upstream counted them; None: it reported none


class EmbeddingFormat(Protocol):
    """What each embeddings format module offers, for its clients and for its upstreams.
    `options` are keyword arguments for the provider's `embed` (Gemini: the method)."""

    name: str

    def request_to_ir(self, body: dict, method: str) -> EmbedRequest: ...
    def passthrough_payload(self, body: dict, upstream_model: str,
                            method: str) -> tuple[dict, dict]: ...
    def group_key(self, item: EmbedInput): ...
    def request_from_ir(self, req: EmbedRequest, items: list,
                        upstream_model: str) -> tuple[dict, dict]: ...
    def answer_to_ir(self, data, count: int, options: dict, *,
                     decode: bool = True) -> EmbedAnswer: ...
    def relayable(self, content: bytes, data, req: EmbedRequest) -> bool: ...
    def relay_body(self, content: bytes, credits) -> bytes: ...
    def answer_from_ir(self, answer: EmbedAnswer, req: EmbedRequest, tokens: int,
                       credits) -> bytes: ...


def estimate_tokens(item: EmbedInput) -> int:
    """A generous count of an input's tokens (for holds, and when the upstream gives none):
    token arrays exactly, text one token per 3 UTF-8 bytes, inline data 1,000 a part."""
    if item.tokens is not None:
        return len(item.tokens)
    count = json_tokens(item.parts) if item.parts is not None else json_tokens(item.text or "")
    return count + json_tokens(item.title or "")


def batches(count: int, size: int, key=None) -> list[list[int]]:
    """Input positions split into upstream calls of at most `size`; inputs whose `key` differs
    (an OpenAI call has one `dimensions` for all) go to different calls."""
    groups: dict = {}
    for i in range(count):
        groups.setdefault(key(i) if key else None, []).append(i)
    return [group[start:start + size] for group in groups.values()
            for start in range(0, len(group), size)]


# ---- vectors as OpenAI's base64: float32, little-endian, standard base64 ---------------------
def pack_base64(vector) -> str:
    """A vector the way OpenAI sends it with encoding_format=base64 (the SDKs decode it so)."""
    packed = array.array("f", vector)  # float32; OverflowError for values out of its range
    if sys.byteorder != "little":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def unpack_base64(text: str) -> list:
    """The floats of a base64 embedding (raises ValueError when it is not one)."""
    raw = base64.b64decode(text, validate=True)
    if len(raw) % 4:
        raise ValueError("a base64 embedding must be whole float32 values")
    values = array.array("f")
    values.frombytes(raw)
    if sys.byteorder != "little":
        values.byteswap()
    return values.tolist()


def vector_of(value) -> list:
    """A vector given as floats or as base64; ValueError for anything else."""
    if isinstance(value, str):
        return unpack_base64(value)
    if isinstance(value, list) and all(
            isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            for v in value):
        return value
    raise ValueError("an embedding must be a list of numbers or a base64 string")
