"""The caller's API family, and the one app-wide error handler: every failure (a GatewayError,
an unknown route, a wrong method, an oversized body, a database outage, a crash) answers JSON in
the envelope of the caller's family: OpenAI, Anthropic or Gemini."""

import logging
import re

from flask import jsonify, request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageUnavailable,
)
from translation.registry import FORMATS

log = logging.getLogger(__name__)
ANTHROPIC_PATHS = ("/v1/messages", "/api/v1/messages")
GEMINI_PATHS = ("/v1beta/", "/api/v1beta/", "/upload/v1beta/")
GEMINI_CALL = re.compile(r"(/api)?/v1(beta)?/models/[^/]+:\w+")
# GET /v1/models is what the OpenAI SDK, the Anthropic SDK and google-genai (API version v1) call.
SHARED_MODEL_PATHS = re.compile(r"(/api(/v1/ai|/v1)|/v1)/models(/.*)?")
GEMINI_MODEL_POSTS = ("/v1/models/", "/api/v1/models/")  # only Gemini posts to a model


def caller_family() -> str:
    """The wire format of the API the request belongs to: by its path, and on the paths the
    SDKs share, by what the caller's SDK sends (OpenAI when nothing says otherwise)."""
    path = request.path
    if (path.startswith(GEMINI_PATHS) or path in ("/v1beta", "/api/v1beta")
            or GEMINI_CALL.fullmatch(path)):
        return "gemini"
    if any(path == p or path.startswith(p + "/") for p in ANTHROPIC_PATHS):
        return "anthropic"
    if request.method == "POST" and path.startswith(GEMINI_MODEL_POSTS):
        return "gemini"
    if SHARED_MODEL_PATHS.fullmatch(path) or request.url_rule is None:
        return sdk_family()  # a shared path, or an unknown route: the caller's SDK decides
    return "openai"


def sdk_family() -> str:
    """Which SDK family a request comes from, by its headers."""
    if "anthropic-version" in request.headers:
        return "anthropic"
    if "x-goog-api-key" in request.headers or (
            "key" in request.args and "Authorization" not in request.headers):
        return "gemini"
    return "openai"


def render_error(err: GatewayError):
    """The error response, in the envelope of the caller's family."""
    response = jsonify(FORMATS[caller_family()].error_body(err))
    response.status_code = err.status
    response.headers.update(err.headers)
    return response


def http_error(exc):
    """An HTTP error (unknown route, wrong method, ...) in the path's API envelope."""
    return render_error(_translate(exc))


def register_error_handlers(app):
    @app.errorhandler(GatewayError)
    def gateway_error(err):
        return render_error(err)

    app.register_error_handler(HTTPException, http_error)

    @app.errorhandler(OperationalError)
    @app.errorhandler(InterfaceError)
    @app.errorhandler(PoolTimeout)
    def storage_down(exc):
        # fail closed: without the database there is no key check and no credit hold
        log.error("database unavailable: %s", type(exc).__name__)
        return render_error(StorageUnavailable(
            "The gateway's database is unavailable; try again shortly.",
            headers={"Retry-After": "2"}))

    @app.errorhandler(Exception)
    def crash(exc):
        log.error("unhandled %s", type(exc).__name__, exc_info=exc)
        return render_error(GatewayError("The gateway failed to handle this request."))


def _translate(exc) -> GatewayError:
    if isinstance(exc, RequestEntityTooLarge):
        limit = request.max_content_length
        return PayloadTooLarge(f"The request body is larger than the limit of {limit} bytes.")
    if exc.code == 404:
        return NotFound(f"Invalid URL ({request.method} {request.path})")
    if exc.code == 405:
        return MethodNotAllowed(f"Method {request.method} is not allowed on {request.path}")
    if exc.code == 429:  # a flask-limiter limit outside our families (edge/ratelimit.py)
        return RateLimited(exc.description or "Too many requests.")
    err = InvalidRequest(exc.description or exc.name, status=exc.code)
    if exc.code >= 500:
        err.kind = "api_error"
    return err
