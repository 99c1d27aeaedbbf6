"""App-wide error handlers: unknown routes, wrong methods, oversized bodies, crashes; all JSON."""

import logging

from flask import request
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from blueprints.openai_api import render_error
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


def register_error_handlers(app):
    @app.errorhandler(GatewayError)
    def gateway_error(err):
        return render_error(err)

    @app.errorhandler(HTTPException)
    def http_error(exc):
        return render_error(_translate(exc))

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
