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
from translation import (
    anthropic,
    anthropic_stream,
    gemini,
    gemini_stream,
    openai,
    openai_stream,
    responses,
    responses_stream,
)
from translation.content import renamed_tools, restore_tool_names
from translation.ir import Usage
from translation.streaming import TranslatingTap

log = logging.getLogger(__name__)
FORMATS = {"openai": openai, "anthropic": anthropic, "gemini": gemini, "responses": responses}
STREAMS = {"openai": openai_stream, "anthropic": anthropic_stream, "gemini": gemini_stream,
           "responses": responses_stream}


@dataclass
class Reply:
    """What the blueprint sends back: a whole body, or an iterator of stream chunks."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    usage: object = None  # translation.ir.Usage of a whole (non-stream) answer, when known


class Relay:
    def __init__(self, registry, billing, *, max_stream_seconds: float, fetcher=None):
        self.registry = registry
        self.billing = billing
        self.max_stream_seconds = max_stream_seconds
        self.fetcher = fetcher  # services.media.ImageFetcher, for providers needing inline images

    def chat(self, client_format: str, body: dict, *, caller, client_socket=None) -> Reply:
        """Serve one chat request in `client_format` (the body is already validated).

        Credits: the most the request can cost is held before anything is forwarded; the
        real cost is charged when the answer is complete (or the stream ends, however it ends).
        """
        forced = body.pop("provider", None)
        routes = self.registry.routes(body["model"], forced)
        module = FORMATS[client_format]
        price = self.billing.pricing.for_model(body["model"])
        limit = module.output_limit(body, price.max_output_tokens)
        ticket = self.billing.reserve(caller, body["model"], module.estimate_prompt_tokens(body),
                                      limit)
        stream = bool(body.get("stream"))
        try:
            reply = self._serve(client_format, body, routes, stream=stream, limit=limit,
                                client_socket=client_socket,
                                on_close=lambda tap, outcome: self._stream_ended(
                                    module, ticket, tap, outcome))
        except BaseException:
            self.billing.release(ticket)
            raise
        if not stream:
            reply.body = self._charge_whole(module, ticket, reply)
        return reply

    def _serve(self, client_format, body, routes, **how) -> Reply:
        """Try each route in turn until one answers; a failure another route may not have
        (refused, timed out, 5xx, 429) moves on to the next."""
        last_error = None
        for route in routes:
            serve = (self._passthrough if passes_through(client_format, body, route)
                     else self._translated)
            try:
                return serve(client_format, body, route, **how)
            except UpstreamUnavailable as err:
                log.warning("provider %s unavailable: %s",
                            route.provider.upstream.name, err.message)
                last_error = err
        if last_error is None:
            raise GatewayError(f"no provider could serve model '{body['model']}'")
        raise last_error

    def _passthrough(self, fmt, body, route, *, stream, limit, client_socket, on_close) -> Reply:
        """Same format on both sides: forward the body, relay the answer's bytes untouched.

        Every serving path has this signature: a whole answer comes back with `usage` set;
        a stream calls `on_close(tap, outcome)` once when it ends, with `tap.usage`.
        """
        module = FORMATS[fmt]
        provider = speaking(route.provider, fmt)
        upstream = provider.upstream
        payload = module.passthrough_payload(body, route.upstream_model, stream)
        module.set_output_limit(payload, limit, OUTPUT_LIMIT_FIELD.get(upstream.type, "max_tokens"))
        if not stream:
            resp = provider.open(payload, stream=False)
            content = read_body(resp, upstream.name)
            return Reply(resp.status_code, content,
                         resp.headers.get("content-type", "application/json"),
                         usage=module.usage_of_body(content))
        resp = provider.open(payload, stream=True)
        expect_stream(resp, upstream.name)
        price = self.billing.pricing.for_model(body["model"])
        tap = module.passthrough_tap(body, price=price.cost)
        # a tap that follows the stream's state (Responses sequence numbers) writes the error
        error_event = getattr(tap, "error_event", None) or module.error_event
        events = relay_events(resp, tap, error_event=error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, "text/event-stream", dict(STREAM_HEADERS))

    def _translated(self, fmt, body, route, *, stream, limit, client_socket, on_close) -> Reply:
        """Different formats: client request -> IR -> provider request, and the answer back."""
        src, dst = FORMATS[fmt], FORMATS[route.provider.wire_format]
        upstream = route.provider.upstream
        req = src.request_to_ir(body)
        req.max_tokens = min(req.max_tokens or limit, limit)  # the most the hold covers
        if getattr(dst, "NEEDS_INLINE_IMAGES", False) and self.fetcher is not None:
            self.fetcher.inline(req)
        payload = dst.request_from_ir(req, route.upstream_model,
                                      limit_field=OUTPUT_LIMIT_FIELD.get(upstream.type))
        if not stream:
            resp = route.provider.open(payload, stream=False)
            content = read_body(resp, upstream.name)
            try:
                answer = dst.response_to_ir(json.loads(content))
            except (ValueError, AttributeError, TypeError) as exc:
                raise UpstreamUnavailable(f"provider {upstream.name} sent an unreadable "
                                          "answer") from exc
            restore_tool_names(answer.parts, renamed_tools(req))
            out = json.dumps(src.response_from_ir(answer, req), ensure_ascii=False).encode()
            return Reply(200, out, "application/json", usage=answer.usage)
        resp = route.provider.open(payload, stream=True)
        expect_stream(resp, upstream.name)
        price = self.billing.pricing.for_model(body["model"])
        encoder = STREAMS[fmt].StreamEncoder(req, **stream_options(fmt, body, price.cost))
        tap = TranslatingTap(STREAMS[route.provider.wire_format].StreamDecoder(), encoder,
                             tool_names=renamed_tools(req))
        events = relay_events(resp, tap, error_event=tap.error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, encoder.content_type, dict(STREAM_HEADERS))

    def _charge_whole(self, module, ticket, reply) -> bytes:
        """Charge a complete answer; returns its body with `credits_consumed` added."""
        usage, estimated = reply.usage, False
        if usage is None:  # the upstream reported nothing: count it ourselves
            text = module.output_text_of_body(reply.body)
            usage = Usage(input=ticket.prompt_estimate, output=module.estimate_text_tokens(text))
            estimated = True
        cost = self.billing.charge(ticket, usage, estimated=estimated)
        return module.with_credits(reply.body, cost)

    def _stream_ended(self, module, ticket, tap, outcome):
        """Settle a stream: the upstream's usage if it came, else what was relayed, counted.

        A stream that relayed no output (an upstream error before the first token) is free.
        """
        partial = outcome != "complete"
        if tap.usage is not None:
            self.billing.charge(ticket, tap.usage, partial=partial)
            return
        text = module.output_text_of_events(bytes(tap.relayed))
        if not text and outcome != "complete":
            self.billing.release(ticket)
            return
        usage = Usage(input=ticket.prompt_estimate, output=module.estimate_text_tokens(text))
        self.billing.charge(ticket, usage, estimated=True, partial=partial)


# The token-limit field each OpenAI-type upstream understands (reasoning models on OpenAI itself
# reject max_tokens; many OpenAI-compatible servers know only max_tokens).
OUTPUT_LIMIT_FIELD = {"openai": "max_completion_tokens", "openai-compatible": "max_tokens"}
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def passes_through(client_format: str, body: dict, route) -> bool:
    """Same wire format on both sides, and nothing the client asked for needs re-encoding."""
    if speaking(route.provider, client_format) is None:
        return False
    check = getattr(FORMATS[client_format], "can_pass_through", None)
    return check is None or check(body)


def speaking(provider, fmt: str):
    """The provider's adapter for wire format `fmt` (itself, or a dialect), or None."""
    return provider if provider.wire_format == fmt else provider.dialects.get(fmt)


def stream_options(fmt: str, body: dict, price) -> dict:
    """Encoder options from the client's request: Gemini clients choose SSE or a JSON array;
    OpenAI clients that asked for the usage chunk also get the credits it cost in it."""
    if fmt == "gemini":
        return {"sse": body.get("alt") == "sse"}
    return {"price": price} if fmt in ("openai", "responses") else {}


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
