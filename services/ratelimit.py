"""Rate-limit bookkeeping without Flask: the storage-down policy, failed-authentication counting
per client address, and picking the limit to report. Counting itself is the `limits` package's
(moving window), on the storage flask-limiter was given (memory per process, or Redis)."""

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.errors import StorageError

from errors import RateLimited, RateLimitUnavailable

log = logging.getLogger(__name__)
POLICIES = ("open", "closed")
SCOPE = "auth-failures"  # the counter's name in storage, beside the client address


@dataclass(frozen=True)
class Standing:
    """Where a caller stands against one limit: its size, what is left, when a slot frees."""

    limit: int
    remaining: int
    reset_at: float  # UTC epoch seconds

    def retry_after(self, now: float | None = None) -> int:
        """Whole seconds to wait before the next request can succeed (at least 1)."""
        return max(1, math.ceil(self.reset_at - (now or time.time())))


def tightest(standings: list[Standing]) -> Standing | None:
    """The limit closest to refusing: fewest requests left, the later reset breaking ties."""
    return min(standings, key=lambda s: (s.remaining, -s.reset_at), default=None)


class StorageGuard:
    """Applies the configured policy when the rate-limit storage cannot be reached.

    "open": requests go on unlimited; "closed": they get 503. Either way each failure is counted
    and logged (at most once per `log_every` seconds), and the storage is left alone for
    `retry_after` seconds so that a dead Redis costs one timeout, not one per request.
    """

    def __init__(self, policy: str, retry_after: float, log_every: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        if policy not in POLICIES:
            raise ValueError(f"RATELIMIT_ON_STORAGE_ERROR must be one of {POLICIES}")
        self.policy, self.retry_after, self.log_every = policy, retry_after, log_every
        self.clock = clock
        self.errors = 0  # storage calls that failed
        self.degraded = 0  # rate-limit checks answered by the policy instead of the storage
        self._down_until = 0.0
        self._logged_at = -math.inf

    @property
    def down(self) -> bool:
        return self.clock() < self._down_until

    def call(self, fn: Callable, *args):
        """fn(*args); when the storage is down, None ("open") or RateLimitUnavailable ("closed")."""
        if not self.down:
            try:
                return fn(*args)
            except StorageError as exc:
                self.failed(exc)
        return self._degrade()

    def failed(self, exc: Exception) -> None:
        """Record a storage failure and stop using the storage for a while."""
        now = self.clock()
        self.errors += 1
        self._down_until = now + self.retry_after
        if now - self._logged_at >= self.log_every:
            self._logged_at = now
            verb = "allowed without limits" if self.policy == "open" else "refused with 503"
            log.warning("rate-limit storage unreachable (%s); requests are %s for %.0fs "
                        "(%d storage errors, %d checks skipped so far in this process)",
                        type(exc.__cause__ or exc).__name__, verb, self.retry_after,
                        self.errors, self.degraded)

    def _degrade(self) -> None:
        self.degraded += 1
        if self.policy == "closed":
            raise RateLimitUnavailable(
                "Rate limiting is temporarily unavailable; please retry shortly.",
                headers={"Retry-After": str(max(1, math.ceil(self.retry_after)))})
        return None


class AuthFailures:
    """Failed key checks per client address: past the limit, the address is refused (429) before
    its key is even looked up, so keys cannot be guessed at speed."""

    def __init__(self, strategy: Callable, limit: str | None, guard: StorageGuard):
        self.strategy = strategy  # returns the limits.strategies.RateLimiter in use
        self.items: list[RateLimitItem] = parse_many(limit) if limit else []
        self.guard = guard

    def check(self, address: str) -> None:
        """Raise RateLimited when this address has failed too often lately."""
        for item in self.items:
            if self.guard.call(self.strategy().test, item, SCOPE, address) is False:
                wait = self._wait(item, address)
                raise RateLimited("Too many failed authentication attempts from this address; "
                                  f"retry after {wait} seconds.",
                                  headers={"Retry-After": str(wait)})

    def record(self, address: str) -> None:
        """Count one failed attempt from this address."""
        for item in self.items:
            self.guard.call(self.strategy().hit, item, SCOPE, address)

    def _wait(self, item: RateLimitItem, address: str) -> int:
        stats = self.guard.call(self.strategy().get_window_stats, item, SCOPE, address)
        reset = stats.reset_time if stats else time.time() + item.get_expiry()
        return Standing(item.amount, 0, reset).retry_after()
