"""Health of upstream URLs: a short cooldown after any failure, and a circuit breaker.

A URL that fails once (refused, timed out, 5xx) is *cooling* for `cooldown` seconds: it is tried
only after the URLs that are not. After `threshold` consecutive failures its breaker *opens*: for
`open_seconds` it gets no connection attempt at all. Then one trial request is let through
(half-open); its success closes the breaker, its failure opens it again.

State lives in this process (`MemoryBreakers`), or in Redis (`RedisBreakers`) so that every
worker and host sees the same breakers. Redis is read through a short local cache, and a Redis
that cannot be reached degrades to this process's memory, never to an error.
"""

import logging
import threading
import time
from dataclasses import dataclass

log = logging.getLogger(__name__)

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUES = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}  # the breaker-state gauge


@dataclass
class _Url:
    failures: int = 0  # consecutive
    failed_at: float = 0.0
    open_until: float = 0.0
    trial_until: float = 0.0  # a half-open trial is out until then


@dataclass(frozen=True)
class Verdict:
    """What routing may do with a URL now."""

    allowed: bool
    cooling: bool = False  # failed recently: try it after the others
    retry_at: float = 0.0  # when an open breaker lets a trial through (monotonic seconds)


class MemoryBreakers:
    """Breakers for this process only."""

    def __init__(self, *, threshold=5, open_seconds=30.0, cooldown=10.0, on_change=None):
        self.threshold, self.open_seconds, self.cooldown = threshold, open_seconds, cooldown
        self.on_change = on_change  # on_change(url, state): metrics
        self._urls: dict[str, _Url] = {}
        self._lock = threading.Lock()

    def check(self, url: str, now: float | None = None) -> Verdict:
        """May an attempt go to `url`? Claims the half-open trial when it is due."""
        now = time.monotonic() if now is None else now
        state = self._urls.get(url)
        if state is None or state.failures == 0:
            return Verdict(True)
        with self._lock:
            if state.failures >= self.threshold:
                if now < state.open_until or now < state.trial_until:
                    return Verdict(False, retry_at=max(state.open_until, state.trial_until))
                state.trial_until = now + self.open_seconds  # this caller runs the trial
                self._changed(url, HALF_OPEN)
                return Verdict(True)
        return Verdict(True, cooling=now - state.failed_at < self.cooldown)

    def succeeded(self, url: str) -> None:
        state = self._urls.get(url)
        if state is not None and state.failures:
            with self._lock:
                was_open = state.failures >= self.threshold
                self._urls[url] = _Url()
            if was_open:
                log.warning("breaker closed for %s", url)
                self._changed(url, CLOSED)

    def failed(self, url: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        with self._lock:
            state = self._urls.setdefault(url, _Url())
            state.failures += 1
            state.failed_at = now
            state.trial_until = 0.0
            opened = state.failures >= self.threshold
            if opened:
                state.open_until = now + self.open_seconds
        if opened:
            log.warning("breaker open for %s after %d consecutive failures", url, state.failures)
            self._changed(url, OPEN)

    def state(self, url: str, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        state = self._urls.get(url)
        if state is None or state.failures < self.threshold:
            return CLOSED
        return OPEN if now < state.open_until else HALF_OPEN

    def _changed(self, url, state):
        if self.on_change is not None:
            self.on_change(url, state)


class RedisBreakers(MemoryBreakers):
    """Breakers shared through Redis by every worker and host that uses the same key prefix.

    Per URL one hash: consecutive failures, when the breaker's open period ends and until when a
    half-open trial is out (wall-clock seconds: hosts share Redis, not a monotonic clock). Reads
    are cached here for `sync_seconds`; every failure and recovery is written through at once.
    """

    def __init__(self, client, prefix: str, *, sync_seconds=1.0, retry_seconds=5.0, **kw):
        super().__init__(**kw)
        self.redis, self.prefix = client, prefix
        self.sync_seconds, self.retry_seconds = sync_seconds, retry_seconds
        self._seen: dict[str, tuple[float, _Url]] = {}  # url -> (read at, shared state)
        self._reading: set[str] = set()  # URLs whose state one caller is reading from Redis now
        self._down_until = 0.0

    def _key(self, url):
        return f"{self.prefix}:breaker:{url}"

    def check(self, url, now=None):
        now = time.monotonic() if now is None else now
        shared = self._shared(url, now)
        if shared is None:  # Redis away: this worker's own view
            return super().check(url, now)
        if shared.failures == 0:
            return Verdict(True)
        wall = time.time()
        if shared.failures >= self.threshold:
            if wall < shared.open_until or wall < shared.trial_until:
                wait = max(shared.open_until, shared.trial_until) - wall
                return Verdict(False, retry_at=now + wait)
            if not self._claim_trial(url, wall):
                return Verdict(False, retry_at=now + 1.0)
            self._seen.pop(url, None)
            self._changed(url, HALF_OPEN)
            return Verdict(True)
        return Verdict(True, cooling=wall - shared.failed_at < self.cooldown)

    def succeeded(self, url):
        seen, local = self._seen.get(url), self._urls.get(url)
        if (seen is not None and seen[1].failures == 0
                and (local is None or local.failures == 0)):
            return  # nothing to clear: the common case costs no Redis call
        super().succeeded(url)
        if self._call(lambda: self.redis.delete(self._key(url))) is not None:
            self._seen[url] = (time.monotonic(), _Url())
            self._changed(url, CLOSED)

    def failed(self, url, now=None):
        super().failed(url, now)
        wall, key = time.time(), self._key(url)
        script = self._call(lambda: self.redis.register_script(FAIL_SCRIPT))
        if script is None:
            return
        ttl = int(max(self.open_seconds, self.cooldown) * 10) + 60
        opened = self._call(lambda: script(keys=[key], args=[wall, self.threshold,
                                                             wall + self.open_seconds, ttl]))
        self._seen.pop(url, None)
        if opened:
            self._changed(url, OPEN)

    def state(self, url, now=None):
        shared = self._shared(url, time.monotonic() if now is None else now)
        if shared is None:
            return super().state(url, now)
        if shared.failures < self.threshold:
            return CLOSED
        return OPEN if time.time() < shared.open_until else HALF_OPEN

    def _shared(self, url, now) -> _Url | None:
        """The URL's shared state, read from Redis at most once per `sync_seconds`. While one
        caller reads it, the others in this process go on with what was read before: else every
        request in flight when the read went stale would send the same read (32 at once at
        concurrency 32, and the client's pool opened a connection for each)."""
        seen = self._seen.get(url)
        if seen is not None and (now - seen[0] < self.sync_seconds or url in self._reading):
            return seen[1]
        self._reading.add(url)
        try:
            raw = self._call(lambda: self.redis.hgetall(self._key(url)))
        finally:
            self._reading.discard(url)
        if raw is None:
            return None
        state = _Url(failures=int(raw.get(b"failures", 0)),
                     failed_at=float(raw.get(b"failed_at", 0)),
                     open_until=float(raw.get(b"open_until", 0)),
                     trial_until=float(raw.get(b"trial_until", 0)))
        self._seen[url] = (now, state)
        return state

    def _claim_trial(self, url, wall) -> bool:
        """One trial for the whole fleet: whoever moves trial_until forward runs it."""
        script = self._call(lambda: self.redis.register_script(TRIAL_SCRIPT))
        if script is None:
            return True
        return bool(self._call(lambda: script(keys=[self._key(url)],
                                              args=[wall, wall + self.open_seconds])))

    def _call(self, fn):
        """Run one Redis operation; None (and local state for a while) when Redis is away."""
        if time.monotonic() < self._down_until:
            return None
        try:
            return fn()
        except Exception as exc:  # redis.RedisError, OSError: the breakers go local meanwhile
            log.warning("breaker storage unavailable (%s); using this worker's state",
                        type(exc).__name__)
            self._down_until = time.monotonic() + self.retry_seconds
            return None


# KEYS[1] the URL's hash; ARGV now, threshold, open until, ttl. Returns 1 when this opened it.
FAIL_SCRIPT = """
local n = redis.call('HINCRBY', KEYS[1], 'failures', 1)
redis.call('HSET', KEYS[1], 'failed_at', ARGV[1], 'trial_until', 0)
redis.call('EXPIRE', KEYS[1], ARGV[4])
if n >= tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], 'open_until', ARGV[3])
  return 1
end
return 0
"""
# KEYS[1] the URL's hash; ARGV now, trial until. Returns 1 when the caller got the trial.
TRIAL_SCRIPT = """
local t = tonumber(redis.call('HGET', KEYS[1], 'trial_until') or '0')
local o = tonumber(redis.call('HGET', KEYS[1], 'open_until') or '0')
if tonumber(ARGV[1]) < t or tonumber(ARGV[1]) < o then return 0 end
redis.call('HSET', KEYS[1], 'trial_until', ARGV[2])
return 1
"""


def make_breakers(config, on_change=None):
    """Shared breakers when Redis is configured for them, else this process's own."""
    options = {"threshold": config["BREAKER_FAILURES"],
               "open_seconds": config["BREAKER_OPEN_SECONDS"],
               "cooldown": config["UPSTREAM_URL_COOLDOWN"], "on_change": on_change}
    uri = config.get("BREAKER_STORAGE_URI") or ""
    if not uri.startswith(("redis://", "rediss://", "unix://")):
        return MemoryBreakers(**options)
    import redis  # only with Redis configured

    client = redis.Redis.from_url(uri, socket_connect_timeout=0.25, socket_timeout=0.25)
    return RedisBreakers(client, config["BREAKER_KEY_PREFIX"],
                         sync_seconds=config["BREAKER_SYNC_SECONDS"], **options)
