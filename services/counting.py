"""Counting a request's input tokens: natively where the route's provider can, else estimated."""

import logging

from errors import UpstreamError, UpstreamUnavailable
from services.relay import FORMATS
from translation.tokens import estimate_input_tokens

log = logging.getLogger(__name__)


def count_input_tokens(relay, client_format: str, body: dict) -> tuple[int, bool]:
    """(input tokens, whether the number is an estimate) for a chat request in client_format.

    The first route whose provider counts natively (Anthropic, Gemini) is asked, the request
    translated to its format; when none can, or none answers, the number is estimated.
    """
    forced = body.pop("provider", None)
    routes = relay.registry.routes(body["model"], forced)
    req = FORMATS[client_format].request_to_ir(body)
    counting = [r for r in routes if getattr(r.provider, "count_tokens", None) is not None]
    plan = relay.router.plan(counting)
    for route in plan:
        dst = FORMATS[route.provider.wire_format]
        if getattr(dst, "NEEDS_INLINE_IMAGES", False) and relay.fetcher is not None:
            relay.fetcher.inline(req)
        try:
            count = route.provider.count_tokens(dst.count_payload(req, route.upstream_model))
        except (UpstreamUnavailable, UpstreamError) as err:
            plan.failed(route, err)
            log.warning("provider %s could not count tokens: %s", route.provider.upstream.name,
                        err.message)
            continue
        plan.succeeded(route)
        return count, False
    return estimate_input_tokens(req), True
