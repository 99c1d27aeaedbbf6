"""The wire-format contract: everything the pipeline asks of a client or provider format.

Each format module (translation/openai.py, anthropic.py, gemini.py, ...) exports one `FORMAT`
object, an instance of a WireFormat subclass; translation/registry.py maps format names to them,
and nothing else in the code is keyed by a format name. A new wire format is one module whose
object implements the abstract methods below, plus its line in the registry.

The parts, and who calls them:

- request codec (relay, translated path): client request -> IR (`request_to_ir`),
  IR -> provider request (`request_from_ir`, `count_payload`);
- answer codec: provider answer -> IR (`answer_to_ir`), IR -> client answer (`answer_from_ir`);
- streams: a decoder of upstream events into IR events, an encoder of IR events for the client;
- errors: the envelope of a GatewayError (`error_body`) and its in-stream event (`error_event`);
- metering (services.metering): prompt estimate and output limit of a request, usage and output
  text of a whole answer and of relayed events, token estimate of text, credits added to a body;
- passthrough (same format on both sides): the payload sent upstream and the tap that watches
  the relayed stream;
- model lists: the shape of the model list and of one model, and the error for a missing one.

Capabilities a format may lack are class attributes, read by the caller, never probed.
"""

import json
from abc import ABC, abstractmethod

from translation import ir
from translation.inbound import Inbound


class StreamDecoder(ABC):
    """Upstream SSE events -> IR events (translation.ir.Start ... End / Failure)."""

    @abstractmethod
    def feed(self, event: bytes) -> list: ...

    def end(self) -> list:
        """IR events owed once the upstream closed its stream."""
        return []


class StreamEncoder(ABC):
    """IR events -> the bytes a client of this format expects."""

    content_type = "text/event-stream"

    @abstractmethod
    def encode(self, event) -> bytes: ...

    @abstractmethod
    def error_event(self, err) -> bytes: ...


class WireFormat(ABC):
    name: str
    # Provider side: image URLs must be fetched and sent inline (providers.media.ImageFetcher).
    needs_inline_images = False
    # Client side: where this format's official SDK sends the key, as a 401 names it.
    key_header = "Authorization: Bearer KEY"
    # The format's embeddings (a translation.embeddings.EmbeddingFormat), None if it has none.
    embeddings = None

    # ---- request codec ------------------------------------------------------------------
    @abstractmethod
    def request_to_ir(self, inbound: Inbound) -> ir.ChatRequest:
        """A validated client request as the internal request (raises InvalidRequest)."""

    @abstractmethod
    def request_from_ir(self, req: ir.ChatRequest, model: str, upstream) -> dict:
        """The request body an upstream of this format gets. `upstream` (providers.Upstream)
        carries the upstream's settings, such as `output_limit_field`."""

    def count_payload(self, req: ir.ChatRequest, model: str) -> dict:
        """The body of a native token count; only for formats whose providers count."""
        raise NotImplementedError(f"{self.name} upstreams do not count tokens")

    def count_passthrough(self, inbound: Inbound, model: str) -> dict:
        """The client's own count request for an upstream of its format, untranslated."""
        raise NotImplementedError(f"{self.name} upstreams do not count tokens")

    # ---- answer codec -------------------------------------------------------------------
    @abstractmethod
    def answer_to_ir(self, content: bytes) -> ir.ChatResponse:
        """A whole upstream answer as the internal answer (ValueError when unreadable)."""

    @abstractmethod
    def answer_from_ir(self, answer: ir.ChatResponse, req: ir.ChatRequest) -> bytes:
        """The whole answer a client of this format gets, encoded."""

    # ---- streams ------------------------------------------------------------------------
    @abstractmethod
    def stream_decoder(self) -> StreamDecoder: ...

    @abstractmethod
    def stream_encoder(self, req: ir.ChatRequest, inbound: Inbound, price) -> StreamEncoder:
        """`price` (Usage -> credits) lets an encoder show what the answer cost."""

    # ---- errors -------------------------------------------------------------------------
    @abstractmethod
    def error_body(self, err) -> dict:
        """The error envelope of this format for a GatewayError."""

    @abstractmethod
    def error_event(self, err) -> bytes:
        """An in-stream error, as this format's SDK recognises it."""

    # ---- metering -----------------------------------------------------------------------
    @abstractmethod
    def estimate_prompt_tokens(self, inbound: Inbound) -> int:
        """A generous count of the request's prompt tokens, for the credit hold."""

    @abstractmethod
    def output_limit(self, inbound: Inbound, cap: int) -> int:
        """The most tokens the request may generate: the client's limit, never above cap."""

    @abstractmethod
    def usage_of_body(self, content: bytes) -> ir.Usage | None:
        """The usage a whole answer reports (None when it has none)."""

    @abstractmethod
    def output_text_of_body(self, content: bytes) -> str:
        """The generated text and tool arguments of a whole answer."""

    @abstractmethod
    def output_text_of_events(self, events: bytes) -> str:
        """The generated text and tool arguments in relayed stream bytes."""

    def estimate_text_tokens(self, text: str) -> int:
        """Tokens of generated text when upstream reports none: one per 4 characters."""
        return -(-len(text) // 4)

    def with_credits(self, content: bytes, credits) -> bytes:
        """A whole answer with `credits_consumed` added, its own bytes otherwise kept."""
        return with_credits(content, credits)

    # ---- passthrough --------------------------------------------------------------------
    @abstractmethod
    def passthrough_payload(self, inbound: Inbound, model: str, limit: int, upstream) -> dict:
        """The client's body for an upstream of the same format: its model, the output limit
        clamped, and nothing the gateway alone reads (such as `provider`)."""

    @abstractmethod
    def passthrough_tap(self, inbound: Inbound, price):
        """The translation.taps.Tap that relays a same-format stream."""

    # ---- model lists --------------------------------------------------------------------
    @abstractmethod
    def model_list(self, models: list[dict]) -> dict:
        """The model list answer for entries made by `model_entry`."""

    def image_quality(self, inbound) -> str:
        """The image quality a chat request asks of an image model ("standard" or "hd"), which
        sets its per-image price (Gemini: imageSize 4K is hd)."""
        return "standard"

    @abstractmethod
    def model_entry(self, name: str, owner: str, created: int, embeds: bool = False,
                    outputs: tuple | None = None) -> dict:
        """One model of the list; `embeds`: an embedding model (Gemini lists other methods);
        `outputs`: an image model's output modalities, marked where the format has room."""

    def model_id(self, segment: str) -> str:
        """The model a URL path segment names (Gemini's carry a `models/` prefix)."""
        return segment

    @abstractmethod
    def model_missing(self, name: str):
        """The GatewayError for a model this caller cannot see."""


def with_credits(content: bytes, credits) -> bytes:
    """`credits_consumed` added as the last member of a JSON object, without re-encoding it:
    the upstream's bytes (key order, number spelling, escapes) stay as they were."""
    head = content.rstrip()
    if not head.endswith(b"}") or not content.lstrip().startswith(b"{"):
        return content
    head = head[:-1].rstrip()
    comma = b"" if head.endswith(b"{") else b","
    return head + comma + b'"credits_consumed":' + json.dumps(float(credits)).encode() + b"}"
