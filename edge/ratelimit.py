"""Request rate limits at the edge: flask-limiter, keyed by API key, one shared per-minute limit
per API family and one hourly limit across all families, with X-RateLimit-*-Requests headers.

A view joins a family with one decorator: `@limited("chat")`. The check runs after authenticate()
and before the view body, so a refused request is neither forwarded nor charged."""

import itertools
import math
import threading
from functools import partial, wraps

from flask import current_app, g, request
from flask_limiter import RateLimitExceeded
from limits import parse
from werkzeug.middleware.proxy_fix import ProxyFix

from errors import RateLimited
from extensions import caller_key, limiter
from services.ratelimit import AuthFailures, Standing, StorageGuard, tightest

HOURLY_SCOPE = "all-families"  # one hourly counter per key, whatever the family
HEADERS = ("X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests",
           "X-RateLimit-Reset-Requests")


def init_app(app):
    """Attach the limiter and our policy objects, and add the headers to every response."""
    if app.config["TRUSTED_PROXY_HOPS"]:  # client addresses come from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXY_HOPS"],
                                x_proto=app.config["TRUSTED_PROXY_HOPS"])
    limiter.init_app(app)
    guard = StorageGuard(app.config["RATELIMIT_ON_STORAGE_ERROR"],
                         app.config["RATELIMIT_STORAGE_RETRY"])
    app.extensions["ratelimit"] = guard
    auth_limit = app.config["AUTH_FAILURE_LIMIT"] if app.config["RATELIMIT_ENABLED"] else None
    app.extensions["auth_failures"] = AuthFailures(lambda: limiter.limiter, auth_limit, guard)
    app.extensions["ratelimit_gates"] = Gates()
    app.after_request(add_headers)


def limited(family: str):
    """Count the decorated view in `family` (chat, images, ...) and in the hourly limit."""
    def decorate(view):
        @wraps(view)
        def run(*args, **kwargs):
            check(current_app.extensions["ratelimit_gates"].get(family))
            return view(*args, **kwargs)

        return run

    return decorate


def reports(family: str):
    """Give the decorated view the family's rate-limit headers without counting it."""
    def decorate(view):
        @wraps(view)
        def run(*args, **kwargs):
            g.rate_limit = _peek(family, current_app.extensions["ratelimit"])
            return view(*args, **kwargs)

        return run

    return decorate


def check(gate) -> None:
    """Pass the gate (counting this request), or raise 429; storage trouble goes to the policy."""
    guard = current_app.extensions["ratelimit"]
    try:
        guard.call(gate)
    except RateLimitExceeded:
        g.rate_limit = standing = _standing(guard)
        wait = standing.retry_after() if standing else 60
        raise RateLimited(f"Rate limit reached for requests ({limiter.current_limit.limit}) "
                          f"on this key; retry after {wait} seconds.",
                          headers={"Retry-After": str(wait)}) from None
    g.rate_limit = _standing(guard)


def add_headers(response):
    """X-RateLimit-*-Requests for the tightest limit this request was counted against."""
    standing = g.get("rate_limit")
    if standing is not None:
        values = (standing.limit, standing.remaining, math.ceil(standing.reset_at))
        response.headers.update(dict(zip(HEADERS, map(str, values), strict=True)))
    return response


def client_address() -> str:
    """The address failed authentications are counted against."""
    return request.remote_addr or "unknown"


def _standing(guard) -> Standing | None:
    """Read every limit counted in this request once; the tightest, or None if unreadable."""
    def read():
        return tightest([Standing(r.limit.amount, max(r.remaining, 0), r.window.reset_time)
                         for r in limiter.current_limits])

    if guard.down:
        return None
    return guard.call(read)


def _peek(family: str, guard) -> Standing | None:
    """The tightest of the family's limits as they stand, read without counting a request."""
    limits = [(parse(text), scope) for text, scope in ((_minute_limit(family), f"family-{family}"),
                                                       (_hourly_limit(), HOURLY_SCOPE)) if text]
    prefix = [p for p in (current_app.config.get("RATELIMIT_KEY_PREFIX"),) if p]

    def read():
        stats = [(item, limiter.limiter.get_window_stats(item, *prefix, caller_key(), scope))
                 for item, scope in limits]
        return tightest([Standing(item.amount, max(s.remaining, 0), s.reset_time)
                         for item, s in stats])

    return None if guard.down or not limits or not limiter.enabled else guard.call(read)


class Gates:
    """One gate per family, per app: a no-op callable carrying the family's limits, so that
    calling it checks and counts them.

    flask-limiter files limits under a callable's name, so one gate per family lets every view
    of the family share the same counters (shared limits: the key has no endpoint in it). The
    limiter is process-wide, so each app's gates get names of their own."""

    _serial = itertools.count()

    def __init__(self):
        self._gates: dict[str, object] = {}
        self._lock = threading.Lock()
        self._tag = next(self._serial)

    def get(self, family: str):
        gate = self._gates.get(family)
        if gate is None:
            with self._lock:
                gate = self._gates.get(family) or self._make(family)
                self._gates[family] = gate
        return gate

    def _make(self, family: str):
        def gate():
            return None

        gate.__name__ = gate.__qualname__ = f"rate_limit_gate_{family}_{self._tag}"
        per_minute = limiter.shared_limit(partial(_minute_limit, family), scope=f"family-{family}")
        hourly = limiter.shared_limit(_hourly_limit, scope=HOURLY_SCOPE)
        return hourly(per_minute(gate))


# flask-limiter also reads these in its own before_request hook, before authenticate() has run:
# no caller yet means nothing to count there (the gate counts once the caller is known).
def _minute_limit(family: str) -> str:
    caller = g.get("caller")
    per_minute = caller.plan.minute_limit(family) if caller else None
    return f"{per_minute}/minute" if per_minute else ""


def _hourly_limit() -> str:
    caller = g.get("caller")
    per_hour = caller.plan.per_hour if caller else None
    return f"{per_hour}/hour" if per_hour else ""
