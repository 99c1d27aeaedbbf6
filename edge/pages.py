"""Plumbing shared by the browser-facing blueprints (site, auth, console, playground, admin):
the logged-in user from the session cookie, CSRF checks, security headers, HTML error pages.

The key-authenticated JSON APIs share none of this: they ignore cookies, so they need no CSRF
token. Everything here is opt-in per blueprint through `page_blueprint()`."""

import logging
import secrets
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    g,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from werkzeug.exceptions import HTTPException

from edge.ratelimit import client_address
from errors import GatewayError, NotFound, PermissionDenied, StorageUnavailable
from extensions import csrf, db, limiter
from services.accounts import session_user
from services.login import Throttle
from translation.openai import error_body

# No inline script or style, nothing from another origin; pages cannot be framed.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; form-action 'self'; base-uri 'none'; "
       "frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "same-origin", "X-Frame-Options": "DENY"}
SESSION_TOKEN = "sid"
log = logging.getLogger(__name__)


class SessionInterface(SecureCookieSessionInterface):
    """Signed cookie sessions, Secure whenever the request came over HTTPS."""

    def get_cookie_secure(self, app):
        return bool(app.config["SESSION_COOKIE_SECURE"] or request.is_secure)

    def open_session(self, app, request):
        """An empty session, without building the cookie signer, for a request that brings no
        session cookie: every API call (Flask opens a session for each request). Without a
        Cookie header at all (an SDK's request) the cookies are not even parsed."""
        if app.secret_key and ("HTTP_COOKIE" not in request.environ
                               or not request.cookies.get(self.get_cookie_name(app))):
            return self.session_class()
        return super().open_session(app, request)


def init_app(app):
    """Sessions, CSRF, the template helpers and the throttles of the people's side."""
    app.config["SESSION_COOKIE_NAME"] = "tollgate_session"
    app.config["SESSION_COOKIE_HTTPONLY"] = True
    app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config["PERMANENT_SESSION_LIFETIME"] = app.config["SESSION_LIFETIME"]
    app.config["WTF_CSRF_CHECK_DEFAULT"] = False  # page blueprints call protect() themselves
    app.config["WTF_CSRF_TIME_LIMIT"] = None  # valid as long as the session
    app.session_interface = SessionInterface()
    csrf.init_app(app)
    guard, strategy = app.extensions["ratelimit"], lambda: limiter.limiter
    enabled = app.config["RATELIMIT_ENABLED"]
    app.extensions["login_throttle"] = Throttle(
        "login-failures", strategy, app.config["LOGIN_LIMIT"] if enabled else None, guard,
        "Too many failed log-ins; try again in {wait} seconds.")
    app.extensions["signup_throttle"] = Throttle(
        "signups", strategy, app.config["SIGNUP_LIMIT"] if enabled else None, guard,
        "Too many sign-ups from this address; try again in {wait} seconds.")
    app.jinja_env.filters.update(credits=format_credits, when=format_time)
    app.jinja_env.globals["nonce"] = lambda: secrets.token_urlsafe(16)  # one-time form keys
    app.after_request(_static_headers)
    app.register_error_handler(404, not_found)


def page_blueprint(name: str, import_name: str, **options) -> Blueprint:
    """A blueprint whose views know the logged-in user, check CSRF tokens on every
    state-changing request, send the security headers and render errors as pages."""
    bp = Blueprint(name, import_name, **options)
    bp.before_request(load_user)
    bp.before_request(protect)
    bp.after_request(secure_headers)
    bp.register_error_handler(GatewayError, page_error)
    bp.register_error_handler(CSRFError, csrf_error)
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(Exception, crash)
    return bp


def load_user():
    """g.user: the enabled user of this browser's session, or None."""
    g.user = None
    token = session.get(SESSION_TOKEN)
    if token:
        g.user = session_user(db.session, token)
        if g.user is None:
            session.pop(SESSION_TOKEN, None)


def protect():
    csrf.protect()  # a no-op for GET, HEAD, OPTIONS and TRACE


def secure_headers(response):
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if g.get("user") is not None:
        response.headers.setdefault("Cache-Control", "private, no-store")
    return response


def _static_headers(response):
    if request.endpoint == "static":
        secure_headers(response)
    return response


def wants_json() -> bool:
    return "/api/" in request.path or request.accept_mimetypes.best == "application/json"


def page_error(err: GatewayError):
    if wants_json():
        response = jsonify(error_body(err))
        response.status_code = err.status
        response.headers.update(err.headers)
        return response
    page = render_template("error.html", status=err.status, message=err.message)
    return page, err.status, err.headers


def csrf_error(err: CSRFError):
    return page_error(GatewayError(
        f"The form could not be checked ({err.description}); reload the page and try again.",
        status=400, code="csrf_failed"))


def http_error(exc: HTTPException):
    if isinstance(exc, CSRFError):
        return csrf_error(exc)
    return page_error(GatewayError(exc.description or exc.name, status=exc.code or 500))


def crash(exc: Exception):
    """The page's own 500 (or 503 while the database is away), never a stack trace."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout):
        log.error("database unavailable: %s", type(exc).__name__)
        return page_error(StorageUnavailable("The database is unavailable; try again shortly.",
                                             headers={"Retry-After": "2"}))
    log.error("unhandled %s", type(exc).__name__, exc_info=exc)
    return page_error(GatewayError("Something went wrong on our side; please try again."))


API_PREFIXES = ("/v1", "/api/", "/v1beta", "/admin/api", "/static/")


def not_found(exc):
    """A page for a person who mistyped an address; API clients keep their JSON error."""
    wants_page = (request.method == "GET" and not request.path.startswith(API_PREFIXES)
                  and request.accept_mimetypes.best_match(("application/json", "text/html"))
                  == "text/html")
    if not wants_page:
        from edge.errors import http_error as api_error  # the API families' envelopes
        return api_error(exc)
    return secure_headers(current_app.make_response((render_template(
        "error.html", status=404, message=f"There is no page at {request.path}."), 404)))


def login_required(view):
    """Pages for logged-in people: others are sent to /login (JSON calls get 401)."""
    @wraps(view)
    def run(*args, **kwargs):
        if g.user is None:
            if wants_json():
                raise GatewayError("Log in first.", status=401, code="login_required")
            return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))
        return view(*args, **kwargs)

    return run


def admin_required(view):
    """Pages for admins only; everyone else gets 404 (nothing to see here)."""
    @wraps(view)
    @login_required
    def run(*args, **kwargs):
        if not g.user.is_admin:
            raise NotFound("This page does not exist.")
        return view(*args, **kwargs)

    return run


def require_admin_caller():
    """403 unless the API key's user is an admin."""
    if not g.caller.is_admin:
        raise PermissionDenied("This key's user is not an administrator.",
                               code="admin_required")


def safe_next(target: str | None) -> str:
    """Where to go after logging in: a path on this site, never another host."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/console"
    parts = urlsplit(target)
    return "/console" if parts.scheme or parts.netloc else target


def subjects(email: str) -> tuple[str, str]:
    return f"address:{client_address()}", f"account:{email}"


def format_credits(value) -> str:
    """1234.5 -> '1,234.50'; amounts below 1 keep up to six decimals (0.000125), at least two."""
    amount = Decimal(value or 0)
    if abs(amount) >= 1 or amount == 0:
        return f"{amount:,.2f}"
    text = f"{amount:,.6f}"
    while text.endswith("0") and len(text.split(".")[1]) > 2:
        text = text[:-1]
    return text


def format_time(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, int | float):
        value = datetime.fromtimestamp(value, UTC)
    return value.strftime("%Y-%m-%d %H:%M UTC")

