"""Which upstream URL and key each attempt of a request uses, and what a failure teaches.

A request's providers come from the registry (model routing, aliases, patterns). This module
orders them (priority, then weight), walks each provider's base URLs (skipping open breakers,
trying cooling URLs last) and its key pool, and stops within a budget of attempts and seconds.
Retries happen only here, before anything reached the client: a stream that started is never
retried. What served the request is reported as `x-tollgate-provider` / `x-tollgate-attempts`.
"""

import copy
import dataclasses
import math
import random
import time

from errors import UpstreamUnavailable
from providers.keypool import KeyPool, retry_after_seconds

# What went wrong with an attempt (GatewayError.fault, set in providers/http.py).
URL_FAULTS = {"connect", "timeout", "status_5xx", "protocol"}  # the URL is to blame
KEY_FAULTS = {"rate_limited", "auth", "quota"}  # the key is to blame: same URL, next key


class Router:
    """Per-process routing state: the breakers of every URL and the key pool of every provider."""

    def __init__(self, providers, breakers, *, max_attempts=4, budget_seconds=30.0,
                 key_rest_seconds=30.0, key_retire_seconds=3600.0, on_failure=None,
                 on_outcome=None):
        self.breakers = breakers
        self.pools = {p.upstream.name: KeyPool(p.upstream.name, list(p.upstream.keys),
                                               retire_seconds=key_retire_seconds)
                      for p in providers}
        self.max_attempts, self.budget_seconds = max_attempts, budget_seconds
        self.key_rest_seconds = key_rest_seconds
        self.on_failure = on_failure  # on_failure(provider name, fault): metrics
        # on_outcome(provider name, answered, detail): the admin's recent-health view
        self.on_outcome = on_outcome
        self._bound: dict[tuple, object] = {}

    def plan(self, routes) -> "Plan":
        return Plan(self, order(routes))

    def bind(self, route, url: str, key, budget_left: float):
        """`bind()`, cached: URLs, keys and routes are few, and copies cost more than lookups."""
        connect = route.provider.timeout[0]
        if budget_left < connect:  # little time left: a connect timeout of its own
            return bind(route, url, key, budget_left)
        cache_key = (id(route.provider), route.upstream_model, url, key.env)
        bound = self._bound.get(cache_key)
        if bound is None:
            if len(self._bound) > 10_000:  # glob-routed model names are unbounded
                self._bound.clear()
            bound = self._bound[cache_key] = bind(route, url, key, budget_left)
        return bound


class Plan:
    """The attempts of one request. Iterate for bound routes; report each one's outcome."""

    def __init__(self, router: Router, routes):
        self.router, self.routes = router, routes
        self.started = time.monotonic()
        self.attempts = 0
        self.provider = ""  # the name of the provider that served the request
        self.last_error = None
        self.retry_at = math.inf  # the soonest a skipped URL or key is usable again
        self._blame = None  # "url" or "key": what the last failure was blamed on

    def __iter__(self):
        deferred = []
        for route in self.routes:
            for url in route.provider.upstream.base_urls:
                if not self._may_try(route):  # before check(), which may take a URL's trial
                    if self.budget_left() is None:
                        return
                    break
                verdict = self.router.breakers.check(url)
                if not verdict.allowed:
                    self.retry_at = min(self.retry_at, verdict.retry_at)
                elif verdict.cooling:
                    deferred.append((route, url))
                elif (yield from self._keys(route, url)) == "stop":
                    return
        for route, url in deferred:  # failed recently: a last resort, still not if open now
            if not self._may_try(route):
                if self.budget_left() is None:
                    return
                continue
            if self.router.breakers.check(url).allowed:
                if (yield from self._keys(route, url)) == "stop":
                    return

    def _may_try(self, route) -> bool:
        """Whether an attempt on this route could be made now (budget left, a key not resting):
        a half-open URL's one trial is claimed only for a request that will use it."""
        pool = self.router.pools[route.provider.upstream.name]
        if not pool.any_usable():
            self.retry_at = min(self.retry_at, pool.available_at())
            return False
        return self.budget_left() is not None

    def _keys(self, route, url):
        """Attempts at one URL: with the next key after a key's fault, else done with it."""
        pool = self.router.pools[route.provider.upstream.name]
        keys = pool.order()
        if not keys:
            self.retry_at = min(self.retry_at, pool.available_at())
        for key in keys:
            left = self.budget_left()
            if left is None:
                return "stop"
            self.attempts += 1
            self._blame, self._key, self._url = None, key, url
            yield self.router.bind(route, url, key, left)
            if self._blame != "key":
                return None
        return None

    def budget_left(self) -> float | None:
        """Seconds left for a new attempt, or None when the budget (count or time) is spent."""
        if self.attempts >= self.router.max_attempts:
            return None
        left = self.router.budget_seconds - (time.monotonic() - self.started)
        return left if left > 0 else None

    def failed(self, route, err) -> None:
        """Learn from a failed attempt; raises `err` again when no other attempt could help."""
        fault = err.fault
        name = route.provider.upstream.name
        if self.router.on_outcome is not None:  # 4xx and refused keys: the provider is up
            answered = fault not in URL_FAULTS and fault not in ("rate_limited", "quota")
            self.router.on_outcome(name, answered, "refused the request" if answered
                                   else err.message)
        if fault not in URL_FAULTS:  # the URL answered: it is up (a half-open trial passed)
            self.router.breakers.succeeded(self._url)
        if fault not in URL_FAULTS and fault not in KEY_FAULTS:
            raise err
        self.last_error = err
        if self.router.on_failure is not None:
            self.router.on_failure(name, fault)
        pool = self.router.pools[name]
        if fault in URL_FAULTS:
            self._blame = "url"
            self.router.breakers.failed(self._url)
        elif fault == "auth":
            self._blame = "key"
            pool.retire(self._key)
        else:
            self._blame = "key"
            rest = self.router.key_rest_seconds * (10 if fault == "quota" else 1)
            pool.rest(self._key, retry_after_seconds(err.headers.get("Retry-After"), rest))

    def succeeded(self, route, *, streaming: bool = False) -> dict:
        """Record the success; returns the headers that name what served the request.

        A stream's URL is judged when the stream ends (watch_stream): one that keeps breaking
        off mid-way must not look healthy because it answered each time."""
        if not streaming:
            self.router.breakers.succeeded(self._url)
        if self.router.on_outcome is not None:
            self.router.on_outcome(route.provider.upstream.name, True)
        self.router.pools[route.provider.upstream.name].succeeded(self._key)
        self.provider = route.provider.upstream.name
        return self.headers()

    def watch_stream(self, route, on_close):
        """`on_close` for a stream served by `route`, which also counts a stream the upstream
        broke off against its URL (it answered, then failed: no retry, but not healthy)."""
        url, name = route.provider.upstream.base_url, route.provider.upstream.name

        def closed(tap, outcome):
            if outcome == "truncated":  # broke off, ended early, or trickled past the limit
                self.router.breakers.failed(url)
                if self.router.on_failure is not None:
                    self.router.on_failure(name, "stream")
            elif outcome != "client_gone":  # complete, or an error the upstream reported
                self.router.breakers.succeeded(url)
            on_close(tap, outcome)

        return closed

    def headers(self) -> dict:
        out = {"x-tollgate-attempts": str(self.attempts)}
        if self.provider:
            out["x-tollgate-provider"] = self.provider
        return out

    def exhausted(self, model: str):
        """The error for a request no attempt served: the last failure, or 503 when every
        candidate was skipped (breakers open, keys resting) without a connection attempt."""
        if self.last_error is not None:
            err = self.last_error
        else:
            wait = self.retry_at - time.monotonic() if self.retry_at < math.inf else 1.0
            err = UpstreamUnavailable(
                f"No healthy upstream can serve the model '{model}' right now; retry later.",
                status=503, code="no_healthy_upstream",
                headers={"Retry-After": str(max(1, math.ceil(wait)))})
        err.headers.update(self.headers())
        return err


def bind(route, url: str, key, budget_left: float):
    """The route with its adapter pointed at one URL and key, its connect time within budget."""
    adapter = copy.copy(route.provider)
    adapter.upstream = dataclasses.replace(adapter.upstream, base_url=url, api_key=key.value)
    connect, read = adapter.timeout
    adapter.timeout = (min(connect, max(budget_left, 0.05)), read)
    return dataclasses.replace(route, provider=adapter)


def order(routes) -> list:
    """Lowest priority first; within a priority, weighted random when weights are set, else
    config order."""
    groups: dict[int, list] = {}
    for route in routes:
        groups.setdefault(route.provider.upstream.priority, []).append(route)
    ordered = []
    for priority in sorted(groups):
        group = groups[priority]
        if len(group) > 1 and any(r.provider.upstream.weight is not None for r in group):
            # Efraimidis-Spirakis: sorting by u^(1/w) draws without replacement by weight
            group = sorted(group, key=lambda r: -random.random() ** (
                1.0 / (r.provider.upstream.weight or 1.0)))
        ordered.extend(group)
    return ordered
