"""Request rate limits at the edge: flask-limiter, keyed by API key, one shared per-minute limit
per API family and one hourly limit across all families, with X-RateLimit-*-Requests headers.

A view joins a family with one decorator: `@limited("chat")`. The check runs after authenticate()
and before the view body, so a refused request is neither forwarded nor charged."""

import math
from functools import lru_cache, partial, wraps

from flask import current_app, g, request
from flask_limiter import Limiter
from limits import RateLimitItemPerHour, RateLimitItemPerMinute
from werkzeug.middleware.proxy_fix import ProxyFix

import tracing
from errors import RateLimited
from extensions import caller_key, limiter
from services.ratelimit import AuthFailures, Standing, StorageGuard, Windows, tightest

HOURLY_SCOPE = "all-families"  # one hourly counter per key, whatever the family
HEADERS = ("X-RateLimit-Limit-Requests", "X-RateLimit-Remaining-Requests",
           "X-RateLimit-Reset-Requests")


def init_app(app):
    """Attach the limiter and our policy objects, and add the headers to every response."""
    if app.config["TRUSTED_PROXY_HOPS"]:  # client addresses come from X-Forwarded-For
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=app.config["TRUSTED_PROXY_HOPS"],
                                x_proto=app.config["TRUSTED_PROXY_HOPS"])
    limiter.init_app(app)
    _off_the_request_path(app)
    guard = StorageGuard(app.config["RATELIMIT_ON_STORAGE_ERROR"],
                         app.config["RATELIMIT_STORAGE_RETRY"])
    app.extensions["ratelimit"] = guard
    auth_limit = app.config["AUTH_FAILURE_LIMIT"] if app.config["RATELIMIT_ENABLED"] else None
    app.extensions["auth_failures"] = AuthFailures(lambda: limiter.limiter, auth_limit, guard)
    # flask-limiter's storage (memory or Redis, as configured), walked in one call per request
    app.extensions["ratelimit_windows"] = Windows(lambda: limiter.storage)
    app.after_request(add_headers)


def _off_the_request_path(app):
    """Take flask-limiter's own hooks off every request: they resolve default and decorated
    limits and write flask-limiter's headers, and the gateway declares none of either (its
    limits are counted by check() in one storage call, its headers are add_headers'). A limit
    declared with flask-limiter's decorators would still be checked (by its decorator), but
    needs these hooks back for its headers and `deduct_when`."""
    check, release = limiter._check_request_limit, limiter._Limiter__release_context

    def theirs(hook):
        return hook == check or hook == release or (
            isinstance(hook, partial) and hook.func is Limiter._Limiter__inject_headers)

    for hooks in (app.before_request_funcs, app.after_request_funcs,
                  app.teardown_request_funcs):
        hooks[None] = [hook for hook in hooks.get(None, []) if not theirs(hook)]


def limited(family: str):
    """Count the decorated view in `family` (chat, images, ...) and in the hourly limit."""
    def decorate(view):
        @wraps(view)
        def run(*args, **kwargs):
            check(family)
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


def check(family: str) -> None:
    """Count this request against the caller's limits for `family` (its per-minute limit, then
    the hourly one), or raise 429; storage trouble goes to the policy. One storage call, whose
    result also gives the response's headers."""
    limits = _limits(family)
    if not limits or not limiter.enabled:
        return
    app = current_app
    guard = app.extensions["ratelimit"]
    ids = _identifiers(app)
    found = guard.call(app.extensions["ratelimit_windows"].hit,
                       [(item, (*ids, scope)) for item, scope in limits])
    if found is None:  # storage down, policy "open": no count and no headers
        return
    refused, standings = found
    g.rate_limit = standing = tightest(standings)
    if refused is not None:
        if info := tracing.current():
            info.rate_limited = True
        wait = standing.retry_after()
        raise RateLimited(f"Rate limit reached for requests ({refused}) on this key; retry "
                          f"after {wait} seconds.", headers={"Retry-After": str(wait)})


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


def _peek(family: str, guard) -> Standing | None:
    """The tightest of the family's limits as they stand, read without counting a request."""
    limits = _limits(family)
    if guard.down or not limits or not limiter.enabled:
        return None
    ids = _identifiers(current_app)

    windows = current_app.extensions["ratelimit_windows"]
    found = guard.call(windows.read, [(item, (*ids, scope)) for item, scope in limits])
    return None if found is None else tightest(found)


def _identifiers(app) -> tuple[str, ...]:
    """What a limit's storage key is made of besides the limit (the scope comes with it)."""
    prefix = app.config.get("RATELIMIT_KEY_PREFIX")
    return (prefix, caller_key()) if prefix else (caller_key(),)


def _limits(family: str) -> tuple:
    """The caller's (limit, scope) for `family`, tightest window first (none before
    authenticate())."""
    caller = g.get("caller")
    if caller is None:
        return ()
    return _items(family, caller.plan.minute_limit(family), caller.plan.per_hour)


@lru_cache(maxsize=1024)
def _items(family: str, per_minute: int | None, per_hour: int | None) -> tuple:
    """Made once per distinct plan. The storage keys (limit, caller, scope) are the ones
    flask-limiter's shared limits used, so counts carry over an upgrade."""
    items = []
    if per_minute:
        items.append((RateLimitItemPerMinute(per_minute), f"family-{family}"))
    if per_hour:
        items.append((RateLimitItemPerHour(per_hour), HOURLY_SCOPE))
    return tuple(items)


