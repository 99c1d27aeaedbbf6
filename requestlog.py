"""Per-request plumbing: the request id, one access line per request, and request metrics.

Every response carries `x-request-id` (the client's when well-formed, else a new one), error
bodies quote it, and upstream calls forward it. The access line and the request's metrics are
written when the answer is complete: for a stream, when its last byte went out (or the client
left), so they carry the tokens and credits the stream was billed.
"""

import json
import logging
import time

from flask import current_app, request

import tracing

log = logging.getLogger("tollgate.access")
QUIET_PATHS = ("/healthz", "/readyz", "/metrics")  # probes: logged at debug level only
# a request's family from its blueprint, before any view ran (what a 401 or 429 is counted in);
# the relay names it again from the request's wire format
FAMILIES = {"openai_api": "openai", "responses_api": "responses", "images_api": "openai",
            "image_files": "openai", "anthropic_api": "anthropic", "gemini": "gemini",
            "credits": "credits", "ops": "ops"}


def init_app(app):
    app.before_request(begin)
    app.after_request(finish)


def begin():
    info = tracing.begin(request.headers.get("x-request-id"))
    blueprint = request.blueprint or ""
    info.family = next((f for prefix, f in FAMILIES.items() if blueprint.startswith(prefix)),
                       "")


def finish(response):
    info = tracing.current()
    if info is None:  # a response made before begin() ran (another hook failed first)
        info = tracing.begin(None)
    response.headers["x-request-id"] = info.id
    if response.status_code >= 400 and response.is_json and not response.is_streamed:
        _quote_request_id(response, info.id)
    # a stream ends after the request context is gone: take what the end needs now
    metrics, billing = current_app.extensions["metrics"], current_app.extensions["billing"]
    path, method, status = request.path, request.method, response.status_code
    if response.is_streamed:
        metrics.open_streams.inc()
        response.response = _FirstByte(response.response, info)

        def closed():
            metrics.open_streams.dec()
            _done(metrics, billing, info, status, method, path)

        response.call_on_close(closed)
    else:
        _done(metrics, billing, info, status, method, path)
    return response


def _done(metrics, billing, info, status, method, path):
    seconds = time.monotonic() - info.started
    metrics.settle_queue_depth(billing.queue.qsize())
    if info.rate_limited:
        metrics.rate_limited.labels(info.family or "other").inc()
    metrics.request_done(info, status, seconds)
    fields = {"method": method, "path": path, "family": info.family, "model": info.model,
              "provider": info.provider, "attempts": info.attempts, "status": status,
              "duration_ms": round(seconds * 1000, 1), "input_tokens": info.input_tokens,
              "output_tokens": info.output_tokens,
              "credits": None if info.credits is None else str(info.credits)}
    level = logging.DEBUG if path in QUIET_PATHS else logging.INFO
    if log.isEnabledFor(level):
        text = " ".join(f"{k}={'-' if v in (None, '') else v}" for k, v in fields.items())
        log.log(level, "%s", text, extra={"fields": fields, "request_id": info.id})


def _quote_request_id(response, request_id):
    """Add the request id to an error's message (all three envelopes put it in error.message),
    so a user can quote it from whatever their SDK prints."""
    try:
        data = json.loads(response.get_data())
        err = data["error"]
        err["message"] = f"{err['message']} (request id: {request_id})"
    except (ValueError, KeyError, TypeError):
        return
    response.set_data(json.dumps(data, ensure_ascii=False))


class _FirstByte:
    """A streamed body that notes when its first chunk went out; close() passes through."""

    def __init__(self, inner, info):
        self.inner, self.info = inner, info
        self._iter = iter(inner)

    def __iter__(self):
        return self._chunks()

    def _chunks(self):
        for chunk in self._iter:
            self.info.first_byte = time.monotonic()
            yield chunk
            break
        yield from self._iter  # the rest passed on by the interpreter, not a call per chunk

    def close(self):
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()
