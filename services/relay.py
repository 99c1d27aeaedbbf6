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
    def __init__(self, registry, *, max_stream_seconds: float):
        self.registry = registry
        self.max_stream_seconds = max_stream_seconds

    def chat(self, client_format: str, body: dict, *, caller, client_socket=None) -> Reply:
        """Serve one chat request in `client_format` (the body is already validated)."""
        forced = body.pop("provider", None)
        routes = self.registry.routes(body["model"], forced)
        stream = bool(body.get("stream"))
        last_error = None
        for route in routes:
            if route.provider.wire_format != client_format:
                continue  # translation between formats arrives with the Anthropic/Gemini formats
            try:
                return self._passthrough(client_format, body, route, stream=stream,
                             client_socket=client_socket, on_close=None)
            except UpstreamUnavailable as err:  # refused, timed out, 5xx, 429: try the next one
                log.warning("provider %s unavailable: %s",
                            route.provider.upstream.name, err.message)
                last_error = err
        if last_error is None:
            raise GatewayError(f"no provider for model '{body['model']}' speaks {client_format}")
        raise last_error

    def _passthrough(self, fmt, body, route, *, stream, client_socket, on_close) -> Reply:
        """Same format on both sides: forward the body, relay the answer's bytes untouched.

        Every serving path has this signature: a whole answer comes back with `usage` set;
        a stream calls `on_close(tap, outcome)` once when it ends, with `tap.usage`.
        """
        payload = {**body, "model": route.upstream_model}
        module = FORMATS[fmt]
        if not stream:
            resp = route.provider.open(payload, stream=False)
            content = read_body(resp, route.provider.upstream.name)
            return Reply(resp.status_code, content,
                         resp.headers.get("content-type", "application/json"),
                         usage=module.usage_of_body(content))
        wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        resp = route.provider.open(payload, stream=True)
        if not resp.headers.get("content-type", "").startswith("text/event-stream"):
            read_body(resp, route.provider.upstream.name)  # an error body on 200 raises here
            raise UpstreamUnavailable(f"provider {route.provider.upstream.name} did not stream")
        tap = module.StreamTap(forward_usage_chunk=wants_usage)
        events = relay_events(resp, tap, error_event=module.error_event,
                              max_seconds=self.max_stream_seconds, client_socket=client_socket,
                              on_close=on_close)
        return Reply(200, events, "text/event-stream",
                     {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


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
