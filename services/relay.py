"""The request pipeline: pick the routes, hold credits, serve over the first route that answers.

One path for every chat request: the routes for the model (registry), a hold for the most the
request can cost (billing, at the model's price, looked up once), then for each route an
exchange (services.exchange: passthrough or translated) whose payload the provider sends;
a whole answer is charged at once, a stream when it ends (services.metering). A failure another
route may not have (refused, timed out, 5xx, 429) moves on to the next route.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from errors import GatewayError, UpstreamUnavailable
from services.exchange import Answer, exchange_for
from services.metering import Meter
from services.stream_relay import relay_events
from translation.registry import FORMATS
from translation.tokens import estimate_input_tokens

log = logging.getLogger(__name__)
STREAM_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass
class Reply:
    """What the view sends back: a whole body, or an iterator of stream chunks."""

    status: int
    body: bytes | Iterator[bytes]
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


class Relay:
    def __init__(self, registry, billing, *, max_stream_seconds: float, fetcher=None):
        self.registry = registry
        self.billing = billing
        self.max_stream_seconds = max_stream_seconds
        self.fetcher = fetcher  # providers.media.ImageFetcher, for providers needing inline images

    def chat(self, inbound, *, caller, client_socket=None) -> Reply:
        """Serve one validated chat request (a translation.inbound.Inbound).

        Credits: the most the request can cost is held before anything is forwarded; the
        real cost is charged when the answer is complete (or the stream ends, however it ends).
        """
        routes = self.registry.routes(inbound.model, inbound.provider)
        client = FORMATS[inbound.format]
        price = self.billing.pricing.for_model(inbound.model)
        limit = client.output_limit(inbound, price.max_output_tokens)
        ticket = self.billing.reserve(caller, inbound.model,
                                      client.estimate_prompt_tokens(inbound), limit, price=price)
        meter = Meter(self.billing, ticket, client)
        try:
            served = self._serve(inbound, routes, limit, meter, client_socket)
        except BaseException:
            meter.release()
            raise
        if isinstance(served, Answer):
            served = Reply(served.status, meter.whole(served.body, served.usage),
                           served.content_type)
        served.headers["x-request-id"] = ticket.request_id  # names this charge in the logs
        return served

    def _serve(self, inbound, routes, limit, meter, client_socket) -> Answer | Reply:
        """The first route's answer: a whole Answer (not charged yet), or the streaming Reply
        (charged by the meter when it ends)."""
        last_error = None
        for route in routes:
            route = route.speaking(inbound.format)  # a Responses client on a Responses dialect
            exchange = exchange_for(inbound, route, limit, fetcher=self.fetcher)
            try:
                resp = route.provider.open(exchange.payload, model=route.upstream_model,
                                           stream=inbound.stream, headers=exchange.headers)
                if not inbound.stream:
                    return exchange.answer(resp)
                resp.expect_stream()
            except UpstreamUnavailable as err:
                log.warning("provider %s unavailable: %s",
                            route.provider.upstream.name, err.message)
                last_error = err
                continue
            tap = exchange.tap(meter.price)
            events = relay_events(resp, tap, max_seconds=self.max_stream_seconds,
                                  client_socket=client_socket, on_close=meter.stream_ended)
            return Reply(200, events, tap.content_type, dict(STREAM_HEADERS))
        if last_error is None:
            raise GatewayError(f"no provider could serve model '{inbound.model}'")
        raise last_error

    def count_tokens(self, inbound) -> tuple[int, bool]:
        """(input tokens, whether the number is an estimate) for a chat request.

        The first route whose provider counts natively (Anthropic, Gemini) is asked: with the
        client's own request when it speaks the client's format, else with the request
        translated; when none can, or none answers, the number is estimated.
        """
        client = FORMATS[inbound.format]
        req = None
        for route in self.registry.routes(inbound.model, inbound.provider):
            route = route.speaking(inbound.format)
            if not route.provider.counts_tokens:
                continue
            dst = FORMATS[route.provider.wire_format]
            if dst is client:
                payload = client.count_passthrough(inbound, route.upstream_model)
            else:
                req = req or client.request_to_ir(inbound)
                if dst.needs_inline_images and self.fetcher is not None:
                    self.fetcher.inline(req)
                payload = dst.count_payload(req, route.upstream_model)
            try:
                return route.provider.count_tokens(payload, model=route.upstream_model), False
            except UpstreamUnavailable as err:
                log.warning("provider %s could not count tokens: %s",
                            route.provider.upstream.name, err.message)
        return estimate_input_tokens(req or client.request_to_ir(inbound)), True
