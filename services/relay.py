"""The request pipeline: pick the routes, hold credits, serve over the first route that answers.

One path for every chat request: the routes for the model (registry), a hold for the most the
request can cost (billing, at the model's price, looked up once), then for each route an
exchange (services.exchange: passthrough or translated) whose payload the provider sends;
a whole answer is charged at once, a stream when it ends (services.metering). The routing plan
(providers.routing) picks each attempt's URL and key; a failure another URL, key or provider may
not have (refused, timed out, 5xx, 429, a refused key) moves on to the next attempt, before
anything reached the client.
"""

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import tracing
from errors import UpstreamError, UpstreamUnavailable
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
    def __init__(self, registry, billing, router, *, max_stream_seconds: float, fetcher=None):
        self.registry = registry
        self.billing = billing
        self.router = router  # providers.routing.Router: URLs, keys, breakers, retry budget
        self.max_stream_seconds = max_stream_seconds
        self.fetcher = fetcher  # providers.media.ImageFetcher, for providers needing inline images

    def chat(self, inbound, *, caller, client_socket=None) -> Reply:
        """Serve one validated chat request (a translation.inbound.Inbound).

        Credits: the most the request can cost is held before anything is forwarded; the
        real cost is charged when the answer is complete (or the stream ends, however it ends).
        """
        routes = self.registry.routes(inbound.model, inbound.provider)
        info = tracing.current() or tracing.RequestInfo("")
        info.family, info.model = inbound.format, inbound.model
        client = FORMATS[inbound.format]
        price = self.billing.pricing.for_model(inbound.model)
        limit = client.output_limit(inbound, price.max_output_tokens)
        draws = inbound.model in self.registry.image_models()  # a Gemini image model: per image
        if draws:
            price = price.at_quality(client.image_quality(inbound))
        # the usage record's request id is unique: only an id we made, never a client's
        ticket = self.billing.reserve(caller, inbound.model,
                                      client.estimate_prompt_tokens(inbound), limit, price=price,
                                      request_id=info.id if info.generated else "",
                                      images=1 if draws else 0)
        meter = Meter(self.billing, ticket, client, info=info)
        try:
            served, headers = self._serve(inbound, routes, limit, meter, client_socket, info)
            ticket.provider = info.provider
            if isinstance(served, Answer):  # charged here: anything failing before is released
                served = Reply(served.status, meter.whole(served.body, served.usage),
                               served.content_type)
        except BaseException:
            meter.release()  # nothing once the answer was charged
            raise
        served.headers.update(headers)
        return served

    def _serve(self, inbound, routes, limit, meter, client_socket, info) -> tuple:
        """(answer, headers naming what served it) of the first attempt that answers: a whole
        Answer (not charged yet), or the streaming Reply (charged by the meter when it ends).
        Anything no other attempt could help with, or a
        spent retry budget, reaches the client."""
        plan = self.router.plan(routes)
        for route in plan:
            # a Responses client on an upstream's Responses dialect (the plan keeps `route`)
            spoken = route.speaking(inbound.format)
            exchange = exchange_for(inbound, spoken, limit, fetcher=self.fetcher)
            try:
                resp = spoken.provider.open(exchange.payload, model=route.upstream_model,
                                           stream=inbound.stream, headers=exchange.headers)
                if not inbound.stream:
                    served = exchange.answer(resp)
                else:
                    resp.expect_stream()
            except (UpstreamUnavailable, UpstreamError) as err:
                info.attempts = plan.attempts
                plan.failed(route, err)  # raises what no other attempt could help with
                log.warning("provider %s attempt %d failed (%s): %s",
                            route.provider.upstream.name, plan.attempts, err.fault, err.message)
                continue
            if inbound.stream:
                tap = exchange.tap(meter.price)
                events = relay_events(resp, tap, max_seconds=self.max_stream_seconds,
                                      client_socket=client_socket,
                                      on_close=plan.watch_stream(route, meter.stream_ended))
                served = Reply(200, events, tap.content_type, dict(STREAM_HEADERS))
            headers = plan.succeeded(route, streaming=inbound.stream)
            info.provider, info.attempts = plan.provider, plan.attempts
            return served, headers
        info.attempts = plan.attempts
        raise plan.exhausted(inbound.model)

    def count_tokens(self, inbound) -> tuple[int, bool]:
        """(input tokens, whether the number is an estimate) for a chat request.

        The first route whose provider counts natively (Anthropic, Gemini) is asked: with the
        client's own request when it speaks the client's format, else with the request
        translated; when none can, or none answers, the number is estimated.
        """
        client = FORMATS[inbound.format]
        req = None
        counting = [r for r in self.registry.routes(inbound.model, inbound.provider)
                    if r.speaking(inbound.format).provider.counts_tokens]
        plan = self.router.plan(counting)
        for route in plan:
            spoken = route.speaking(inbound.format)
            dst = FORMATS[spoken.provider.wire_format]
            if dst is client:
                payload = client.count_passthrough(inbound, route.upstream_model)
            else:
                req = req or client.request_to_ir(inbound)
                if dst.needs_inline_images and self.fetcher is not None:
                    self.fetcher.inline(req)
                payload = dst.count_payload(req, route.upstream_model)
            try:
                count = spoken.provider.count_tokens(payload, model=route.upstream_model)
            except (UpstreamUnavailable, UpstreamError) as err:
                plan.failed(route, err)  # raises what no other attempt could help with
                log.warning("provider %s could not count tokens: %s",
                            route.provider.upstream.name, err.message)
                continue
            plan.succeeded(route)
            return count, False
        return estimate_input_tokens(req or client.request_to_ir(inbound)), True
