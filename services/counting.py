"""Counting a request's input tokens: natively where the route's provider can, else estimated."""

import logging

from errors import UpstreamUnavailable
from services.relay import FORMATS, speaking
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
    for route in routes:
        provider = speaking(route.provider, client_format) or route.provider
        counter = getattr(provider, "count_tokens", None)
        if counter is None:
            continue
        dst = FORMATS[provider.wire_format]
        if getattr(dst, "NEEDS_INLINE_IMAGES", False) and relay.fetcher is not None:
            relay.fetcher.inline(req)
        try:
            return counter(dst.count_payload(req, route.upstream_model)), False
        except UpstreamUnavailable as err:
            log.warning("provider %s could not count tokens: %s", provider.upstream.name,
                        err.message)
    return estimate_input_tokens(req), True
