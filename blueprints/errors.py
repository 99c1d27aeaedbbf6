"""App-wide error handlers: unknown routes, wrong methods, oversized bodies, crashes; all JSON,
in the envelope of the API family the path belongs to."""

import logging
import re

from flask import request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from blueprints import anthropic_api, gemini_api, openai_api
from blueprints.common import client_family
from errors import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StorageUnavailable,
)

log = logging.getLogger(__name__)
ANTHROPIC_PATHS = ("/v1/messages", "/api/v1/messages")
GEMINI_PATHS = ("/v1beta/", "/api/v1beta/", "/upload/v1beta/")
GEMINI_CALL = re.compile(r"(/api)?/v1(beta)?/models/[^/]+:\w+")


def render_error(err):
    """The error in the envelope of the API the request's path belongs to; on a path of no
    family's (an unknown route), of the family the client's headers show (OpenAI otherwise)."""
    path = request.path
    if (path.startswith(GEMINI_PATHS) or path in ("/v1beta", "/api/v1beta")
            or GEMINI_CALL.fullmatch(path)):
        return gemini_api.render_error(err)
    if any(path == p or path.startswith(p + "/") for p in ANTHROPIC_PATHS):
        return anthropic_api.render_error(err)
    family = client_family()
    if family == "gemini":
        return gemini_api.render_error(err)
    if family == "anthropic":
        return anthropic_api.render_error(err)
    return openai_api.render_error(err)


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
    if exc.code == 429:  # a flask-limiter limit outside our families (blueprints/ratelimit.py)
        return RateLimited(exc.description or "Too many requests.")
    err = InvalidRequest(exc.description or exc.name, status=exc.code)
    if exc.code >= 500:
        err.kind = "api_error"
    return err
