"""Rate-limit bookkeeping without Flask: checking and counting a request against all its limits
at once, the storage-down policy, failed-authentication counting per client address, and picking
the limit to report. Counting is a moving window. On Redis (flask-limiter's storage) it is the
`limits` package's own layout, and all of a request's limits are checked, counted and read back
in one round trip (`Windows`); with flask-limiter's memory storage the request limits are kept
in this process by `LocalWindows` instead (see there why)."""

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage
from limits.strategies import MovingWindowRateLimiter
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError

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


# One request against all its limits (KEYS, tightest window first; ARGV: now, then each limit's
# size and window in seconds), with the moving window's data layout in `limits` (a list of hit
# timestamps per key, newest first, at most `size` long): limits.strategies reads the same keys.
# Each limit in turn: entries that left the window are dropped from the tail (each entry once,
# so this is O(1) a request on average; past PRUNE at once the rest is found by bisection), and
# the request is refused if the window is full, else counted; the first refusal ends the walk.
# Returns the 1-based index of the refusing limit (0: none), then per limit walked its count in
# the window (this request included) and the timestamp of its oldest entry, for the headers.
ACQUIRE_ALL = """
local now = tonumber(ARGV[1])
local result = {0}
for i, key in ipairs(KEYS) do
    local size, window = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])
    local start, pruned = now - window, 0
    local tail = redis.call('lindex', key, -1)
    while tail and tonumber(tail) < start and pruned < 1000 do
        redis.call('rpop', key)
        pruned = pruned + 1
        tail = redis.call('lindex', key, -1)
    end
    local count = redis.call('llen', key)
    local oldest = tail or ARGV[1]
    local stale = tail and tonumber(tail) < start
    if stale then
        local low, high = 0, count - 1
        count, oldest = 0, ARGV[1]
        while low <= high do
            local mid = math.floor((low + high) / 2)
            local entry = redis.call('lindex', key, mid)
            if tonumber(entry) >= start then
                count, oldest, low = mid + 1, entry, mid + 1
            else
                high = mid - 1
            end
        end
    end
    if count >= size then
        result[1] = i
        table.insert(result, count)
        table.insert(result, oldest)
        return result
    end
    redis.call('lpush', key, ARGV[1])
    if stale then
        redis.call('ltrim', key, 0, size - 1)
    end
    redis.call('expire', key, math.ceil(window))
    table.insert(result, count + 1)
    table.insert(result, oldest)
end
return result
"""


class LocalWindows:
    """Moving windows in this process's memory: each key's hit times, oldest first, at most the
    limit's size of them. A request is checked and counted against all its limits under one
    lock, with no thread or timer: `limits`' memory storage starts a timer thread every 10 ms
    while it is being hit (to expire entries), which cost the one-worker embedded setup about
    an eighth of its CPU. Keys whose newest hit has left its window are dropped once a minute,
    so memory stays bounded by the callers active within their windows."""

    SWEEP_EVERY = 60.0

    def __init__(self, clock: Callable[[], float] = time.time):
        self.clock = clock
        self._hits: dict[str, tuple[deque, float]] = {}  # key -> (hit times, window seconds)
        self._lock = threading.Lock()
        self._swept_at = clock()

    def hit(self, limits: list[tuple[RateLimitItem, str]]
            ) -> tuple[RateLimitItem | None, list[Standing]]:
        now, standings = self.clock(), []
        with self._lock:
            if now - self._swept_at >= self.SWEEP_EVERY:
                self._sweep(now)
            for item, key in limits:
                window = item.get_expiry()
                hits = self._window(key, window, now)
                oldest = hits[0] if hits else now
                if len(hits) >= item.amount:
                    standings.append(Standing(item.amount, 0, oldest + window))
                    return item, standings
                hits.append(now)
                standings.append(Standing(item.amount, item.amount - len(hits), oldest + window))
        return None, standings

    def read(self, item: RateLimitItem, key: str) -> Standing:
        """Where `key` stands against `item`, without counting a request."""
        now, window = self.clock(), item.get_expiry()
        with self._lock:
            hits = self._window(key, window, now) if key in self._hits else ()
            oldest = hits[0] if hits else now
            return Standing(item.amount, max(item.amount - len(hits), 0), oldest + window)

    def _window(self, key: str, window: float, now: float) -> deque:
        found = self._hits.get(key)
        if found is None:
            found = self._hits[key] = (deque(), window)
        hits, start = found[0], now - window
        while hits and hits[0] < start:
            hits.popleft()
        return hits

    def _sweep(self, now: float) -> None:
        self._swept_at = now
        for key in [k for k, (hits, window) in self._hits.items()
                    if not hits or hits[-1] < now - window]:
            del self._hits[key]


class ScriptCalls:
    """Runs one Lua script on Redis over connections this process keeps for it.

    redis-py's command path around a call (its pool's checkout with a readiness poll of the
    socket and connection-count metrics, retry and timing wrappers, argument filtering, the
    script object's own call) cost more of the worker's CPU than sending the command and
    reading the answer. Here a call takes an idle connection of this object's (the client's
    pool makes one when none is idle), sends EVALSHA and reads the reply. A connection goes
    back to the idle list only after a whole reply was read; after any other outcome it is
    disconnected and handed back to the pool. A kept connection the server closed (a restart) is
    tried once more on a new one, as the pool's checkout would have reconnected it; a time-out
    is not retried: a server that does not answer costs one. Connections are per process: after
    a fork the idle list starts empty.
    """

    def __init__(self, client, source: str):
        self.script = client.register_script(source)  # its sha, and loading it on NOSCRIPT
        self.pool = client.connection_pool
        self._idle: list = []
        self._pid = os.getpid()

    def __call__(self, keys: list[str], args: list) -> list:
        command = ("EVALSHA", self.script.sha, len(keys), *keys, *args)
        try:
            return self._send(command)
        except NoScriptError:  # a flushed or restarted server: redis-py loads it and runs it
            return self.script(keys, args)

    def _send(self, command: tuple):
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:  # one step, so that two threads cannot both take the last idle connection
            conn, kept = self._idle.pop(), True
        except IndexError:
            conn, kept = self.pool.get_connection(), False
        try:
            return self._on(conn, command)
        except RedisConnectionError:
            if not kept:
                raise
        return self._on(self.pool.get_connection(), command)

    def _on(self, conn, command: tuple):
        try:
            conn.send_command(*command)
            reply = conn.read_response()
        except NoScriptError:
            self._idle.append(conn)  # a whole error reply was read: the connection is fine
            raise
        except BaseException:  # no reply, half a reply, or the greenlet killed mid-call
            self._drop(conn)
            raise
        self._idle.append(conn)
        return reply

    def _drop(self, conn) -> None:
        conn.disconnect()
        self.pool.release(conn)


class Windows:
    """Checks and counts one request against several moving-window limits at once.

    The limits are walked tightest window first; the first one that is full refuses the
    request and the rest are not counted (as flask-limiter does). The result carries where the
    request stands against each limit walked, so the response headers need no second read.
    On Redis this is one script call (one round trip); with the memory storage LocalWindows;
    on any other storage `limits`' own storage calls.
    """

    def __init__(self, storage: Callable, clock: Callable[[], float] = time.time):
        self._storage_of = storage  # returns the storage in use (flask-limiter's)
        self.clock = clock
        self.storage, self._script, self._local, self._reader = None, None, None, None

    def _bind(self):
        storage = self._storage_of()
        if storage is not self.storage:
            self.storage, self._script, self._local = storage, None, None
            self._reader = MovingWindowRateLimiter(storage)  # reads `limits`' own layout
            if isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
                self._script = ScriptCalls(storage.get_connection(), ACQUIRE_ALL)
            elif isinstance(storage, MemoryStorage):
                self._local = LocalWindows(self.clock)

    def hit(self, limits: list[tuple[RateLimitItem, tuple[str, ...]]]
            ) -> tuple[RateLimitItem | None, list[Standing]]:
        """Count a request against each (limit, identifiers of its key), tightest first:
        (the limit that refused it or None, where it stands against each limit walked).
        Raises StorageError when the storage cannot be reached."""
        self._bind()
        keys = [item.key_for(*identifiers) for item, identifiers in limits]
        if self._script is not None:
            return self._hit_redis(limits, keys)
        if self._local is not None:
            return self._local.hit([(item, key) for (item, _), key
                                    in zip(limits, keys, strict=True)])
        standings = []
        for (item, _), key in zip(limits, keys, strict=True):
            expiry = item.get_expiry()
            acquired = self.storage.acquire_entry(key, item.amount, expiry)
            start, count = self.storage.get_moving_window(key, item.amount, expiry)
            standings.append(Standing(item.amount, max(item.amount - count, 0), start + expiry))
            if not acquired:
                return item, standings
        return None, standings

    def read(self, limits: list[tuple[RateLimitItem, tuple[str, ...]]]) -> list[Standing]:
        """Where the caller stands against each limit, without counting a request."""
        self._bind()
        if self._local is not None:
            return [self._local.read(item, item.key_for(*ids)) for item, ids in limits]
        return [Standing(item.amount, max(stats.remaining, 0), stats.reset_time)
                for item, stats in ((item, self._reader.get_window_stats(item, *ids))
                                    for item, ids in limits)]

    def _hit_redis(self, limits, keys):
        args = [time.time()]
        for item, _ in limits:
            args += [item.amount, item.get_expiry()]
        try:
            result = self._script([self.storage.prefixed_key(k) for k in keys], args)
        except self.storage.base_exceptions as exc:
            raise StorageError(exc) from exc
        refused, standings = int(result[0]), []
        for i in range(1, len(result), 2):
            item = limits[i // 2][0]
            standings.append(Standing(item.amount, max(item.amount - int(result[i]), 0),
                                      float(result[i + 1]) + item.get_expiry()))
        return (limits[refused - 1][0] if refused else None), standings


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
