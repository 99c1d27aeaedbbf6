"""The request pipeline: pick a route, call the upstream, relay the answer back.

When the client's format and the provider's wire format are the same, the body is forwarded
as it came (model name aside) and streams are relayed byte for byte (the passthrough fast path).
Otherwise the request goes through the internal representation: client format -> IR ->
provider format, and the answer (or each stream event) back the same way.
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

from errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable, redact
from services.streams import relay_events
from translation import anthropic, anthropic_stream, gemini, gemini_stream, openai, openai_stream
from translation.streaming import TranslatingTap

log = logging.getLogger(__name__)
FORMATS = {"openai": openai, "anthropic": anthropic, "gemini": gemini}
STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream, "gemini": gemini_stream}


@dataclass
class Reply:
    """What the blueprint sends back: a whole body, or an iterator of stream chunks."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    usage: object = None  # translation.ir.Usage of a whole (non-stream) answer, when known


class Relay:
    def __init__(self, registry, *, max_stream_seconds: float, fetcher=None,
                 translation_options=None):
        self.registry = registry
        self.max_stream_seconds = max_stream_seconds
        self.fetcher = fetcher  # services.media.ImageFetcher, for providers needing inline images
        self.translation_options = dict(translation_options or {})

    def chat(self, client_format: str, body: dict, *, caller, client_socket=None) -> Reply:
        """Serve one chat request in `client_format` (the body is already validated)."""
        forced = body.pop("provider", None)
        routes = self.registry.routes(body["model"], forced)
        stream = bool(body.get("stream"))
        last_error = None
        for route in routes:
            serve = (self._passthrough if passes_through(client_format, body, route)
                     else self._translated)
            try:
                return serve(client_format, body, route, stream=stream,
                             client_socket=client_socket, on_close=None)
            except UpstreamUnavailable as err:  # refused, timed out, 5xx, 429: try the next one
                log.warning("provider %s unavailable: %s", route.provider.upstream.name, err.message)
                last_error = err
        if last_error is None:
            raise GatewayError(f"no provider could serve model '{body['model']}'")
        raise last_error

    def _passthrough(self, fmt, body, route, *, stream, client_socket, on_close) -> Reply:
        """Same format on both sides: forward the body, relay the answer's bytes untouched.

        Every serving path has this signature: a whole answer comes back with `usage` set;
        a stream calls `on_close(tap, outcome)` once when it ends, with `tap.usage`.
        """
        module = FORMATS[fmt]
        payload = module.passthrough_payload(body, route.upstream_model, stream)
        if not stream:
            resp = route.provider.open(payload, stream=False)
            content = read_body(resp, route.provider.upstream.name)
            return Reply(resp.status_code, content,
                         resp.headers.get("content-type", "application/json"),
                         usage=module.usage_of_body(content))
        resp = route.provider.open(payload, stream=True)
        expect_stream(resp, route.provider.upstream.name)
        tap = module.passthrough_tap(body)
        events = relay_events(resp, tap, error_event=module.error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, "text/event-stream", dict(STREAM_HEADERS))

    def _translated(self, fmt, body, route, *, stream, client_socket, on_close) -> Reply:
        """Different formats: client request -> IR -> provider request, and the answer back."""
        src, dst = FORMATS[fmt], FORMATS[route.provider.wire_format]
        name = route.provider.upstream.name
        req = src.request_to_ir(body)
        if getattr(dst, "NEEDS_INLINE_IMAGES", False) and self.fetcher is not None:
            self.fetcher.inline(req)
        payload = dst.request_from_ir(req, route.upstream_model, **self.translation_options)
        if not stream:
            resp = route.provider.open(payload, stream=False)
            content = read_body(resp, name)
            try:
                answer = dst.response_to_ir(json.loads(content))
            except (ValueError, AttributeError, TypeError) as exc:
                raise UpstreamUnavailable(f"provider {name} sent an unreadable answer") from exc
            out = json.dumps(src.response_from_ir(answer, req), ensure_ascii=False).encode()
            return Reply(200, out, "application/json", usage=answer.usage)
        resp = route.provider.open(payload, stream=True)
        expect_stream(resp, name)
        encoder = STREAMS[fmt].StreamEncoder(req, **stream_options(fmt, body))
        tap = TranslatingTap(STREAMS[route.provider.wire_format].StreamDecoder(), encoder)
        events = relay_events(resp, tap, error_event=tap.error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, encoder.content_type, dict(STREAM_HEADERS))


STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def passes_through(client_format: str, body: dict, route) -> bool:
    """Same wire format on both sides, and nothing the client asked for needs re-encoding."""
    if route.provider.wire_format != client_format:
        return False
    check = getattr(FORMATS[client_format], "can_pass_through", None)
    return check is None or check(body)


def stream_options(fmt: str, body: dict) -> dict:
    """Encoder options from the client's request: Gemini clients choose SSE or a JSON array."""
    return {"sse": body.get("alt") == "sse"} if fmt == "gemini" else {}


def expect_stream(resp, provider_name: str) -> None:
    """A 2xx that is not an event stream is an error body (raised) or a broken upstream."""
    if not resp.headers.get("content-type", "").startswith("text/event-stream"):
        read_body(resp, provider_name)  # an error body on 200 raises here
        raise UpstreamUnavailable(f"provider {provider_name} did not stream")


def read_body(resp, provider_name: str) -> bytes:
    """The whole upstream body; a JSON error object sent with a 2xx status raises."""
    try:
        content = resp.content
    except requests.Timeout as exc:
        raise UpstreamTimeout(f"provider {provider_name} stopped sending") from exc
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"provider {provider_name} broke off its answer") from exc
    finally:
        resp.close()
    if content[:1] == b"{" and b'"error"' in content[:200]:
        try:
            err = json.loads(content).get("error")
        except ValueError:
            err = None
        if err:
            message = err.get("message", "") if isinstance(err, dict) else str(err)
            raise UpstreamError(redact(f"provider {provider_name} failed: {message}"))
    return content
