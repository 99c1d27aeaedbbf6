"""The two ways a chat request is carried over one route, behind one shape.

An exchange gives the payload (and headers) to send upstream, reads a whole upstream answer into
the client's bytes with its usage, and makes the tap a stream is relayed through:

- Passthrough: the provider speaks the client's format. The body goes as the client sent it
  (model name, output limit and the format's passthrough rules aside) and the answer comes back
  untouched, streams byte for byte (Gemini's JSON-array framing, when the client asked for it,
  is made from the upstream's SSE without touching a chunk).
- Translated: client request -> IR -> provider request, and the answer or each stream event
  back the same way.
"""

from dataclasses import dataclass

from errors import UpstreamUnavailable
from translation.content import renamed_tools, restore_tool_names
from translation.registry import FORMATS
from translation.taps import TranslatingTap


@dataclass
class Answer:
    """A whole answer in the client's format, and the usage it reports (None when it has none)."""

    status: int
    body: bytes
    content_type: str
    usage: object = None  # translation.ir.Usage


def exchange_for(inbound, route, limit: int, *, fetcher=None):
    """The exchange for serving `inbound` over `route`, at most `limit` output tokens."""
    client = FORMATS[inbound.format]
    if route.provider.wire_format == inbound.format:
        return Passthrough(client, inbound, route, limit)
    return Translated(client, FORMATS[route.provider.wire_format], inbound, route, limit,
                      fetcher=fetcher)


class Passthrough:
    def __init__(self, fmt, inbound, route, limit):
        self.format, self.inbound = fmt, inbound
        self.upstream = route.provider.upstream
        self.payload = fmt.passthrough_payload(inbound, route.upstream_model, limit,
                                               self.upstream)
        self.headers = inbound.headers

    def answer(self, resp) -> Answer:
        content = resp.body()
        return Answer(resp.status, content, resp.content_type or "application/json",
                      self.format.usage_of_body(content))

    def tap(self, price):
        tap = self.format.passthrough_tap(self.inbound, price)
        tap.secrets = (self.upstream.api_key,)  # error events are redacted of the key
        tap.text_of = self.format.output_text_of_events  # output counted as it is relayed
        return tap


class Translated:
    def __init__(self, src, dst, inbound, route, limit, *, fetcher=None):
        self.src, self.dst, self.inbound = src, dst, inbound
        self.upstream = route.provider.upstream
        req = self.req = src.request_to_ir(inbound)
        req.max_tokens = min(req.max_tokens or limit, limit)  # the most the hold covers
        if dst.needs_inline_images and fetcher is not None:
            fetcher.inline(req)
        self.payload = dst.request_from_ir(req, route.upstream_model, self.upstream)
        self.headers = {}  # the client's headers are for an upstream of its own format
        self.tool_names = renamed_tools(req)

    def answer(self, resp) -> Answer:
        content = resp.body()
        try:
            answer = self.dst.answer_to_ir(content)
        except (ValueError, AttributeError, TypeError) as exc:
            raise UpstreamUnavailable(f"provider {self.upstream.name} sent an unreadable "
                                      "answer", fault="protocol") from exc
        restore_tool_names(answer.parts, self.tool_names)
        return Answer(200, self.src.answer_from_ir(answer, self.req), "application/json",
                      answer.usage)

    def tap(self, price):
        encoder = self.src.stream_encoder(self.req, self.inbound, price)
        tap = TranslatingTap(self.dst.stream_decoder(), encoder, tool_names=self.tool_names)
        tap.secrets = (self.upstream.api_key,)  # error messages are redacted of the key
        tap.text_of = self.src.output_text_of_events  # the client's events, counted as they go
        return tap
