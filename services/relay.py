"""The request pipeline: pick a route, call the upstream, relay the answer back.

When the client's format and the provider's wire format are the same, the body is forwarded
as it came (model name aside) and streams are relayed byte for byte (the passthrough fast path).
"""

import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import requests

from errors import GatewayError, UpstreamError, UpstreamTimeout, UpstreamUnavailable, redact
from services.streams import relay_events
from translation import openai as openai_format
from translation.ir import Usage

log = logging.getLogger(__name__)
FORMATS = {"openai": openai_format}


@dataclass
class Reply:
    """What the blueprint sends back: a whole body, or an iterator of stream chunks."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)
    usage: object = None  # translation.ir.Usage of a whole (non-stream) answer, when known


class Relay:
    def __init__(self, registry, billing, *, max_stream_seconds: float):
        self.registry = registry
        self.billing = billing
        self.max_stream_seconds = max_stream_seconds

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
            if route.provider.wire_format != client_format:
                continue  # translation between formats arrives with the Anthropic/Gemini formats
            try:
                return self._passthrough(client_format, body, route, **how)
            except UpstreamUnavailable as err:
                log.warning("provider %s unavailable: %s",
                            route.provider.upstream.name, err.message)
                last_error = err
        if last_error is None:
            raise GatewayError(f"no provider for model '{body['model']}' speaks {client_format}")
        raise last_error

    def _passthrough(self, fmt, body, route, *, stream, limit, client_socket, on_close) -> Reply:
        """Same format on both sides: forward the body, relay the answer's bytes untouched.

        Every serving path has this signature: a whole answer comes back with `usage` set;
        a stream calls `on_close(tap, outcome)` once when it ends, with `tap.usage`.
        """
        payload = {**body, "model": route.upstream_model}
        module = FORMATS[fmt]
        upstream = route.provider.upstream
        module.set_output_limit(payload, limit, OUTPUT_LIMIT_FIELD.get(upstream.type, "max_tokens"))
        if not stream:
            resp = route.provider.open(payload, stream=False)
            content = read_body(resp, upstream.name)
            return Reply(resp.status_code, content,
                         resp.headers.get("content-type", "application/json"),
                         usage=module.usage_of_body(content))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        resp = route.provider.open(payload, stream=True)
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            read_body(resp, upstream.name)  # an error body on 200 raises here
            raise UpstreamUnavailable(f"provider {upstream.name} did not stream")
        price = self.billing.pricing.for_model(body["model"])
        tap = module.StreamTap(forward_usage_chunk=wants_usage, price=price.cost)
        events = relay_events(resp, tap, error_event=module.error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, "text/event-stream",
                     {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

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
