"""A provider's API keys: spread over requests, rested after 429, retired after 401/403.

Keys are named by their environment variable in every log line; the value never leaves here
except in the request headers that need it.
"""

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApiKey:
    env: str  # the variable it came from: the only name a log line may use
    value: str = field(repr=False)


class KeyPool:
    """Round robin over the keys not resting and not retired.

    `rest(key, seconds)`: the upstream said 429; the key is skipped until then (other keys take
    its share). `retire(key)`: the upstream refused it (401/403); it is skipped for
    `retire_seconds` (a reload, SIGHUP, brings it back at once).
    """

    def __init__(self, provider: str, keys: list[ApiKey], *, retire_seconds=3600.0):
        self.provider, self.keys = provider, list(keys)
        self.retire_seconds = retire_seconds
        self._until = dict.fromkeys((k.env for k in self.keys), 0.0)
        self._retired: set[str] = set()
        self._turn = itertools.count()
        self._lock = threading.Lock()

    def order(self, now: float | None = None) -> list[ApiKey]:
        """Usable keys, starting with this request's turn; [] when all are resting or retired."""
        if len(self.keys) <= 1:
            key = self.keys[0] if self.keys else ApiKey("", "")
            return [key] if self._usable(key, now) else []
        start = next(self._turn) % len(self.keys)
        turn = self.keys[start:] + self.keys[:start]
        return [k for k in turn if self._usable(k, now)]

    def any_usable(self, now: float | None = None) -> bool:
        """Whether some key may be tried now (no turn taken)."""
        return any(self._usable(k, now) for k in self.keys or [ApiKey("", "")])

    def _usable(self, key, now) -> bool:
        until = self._until.get(key.env, 0.0)
        return not until or (time.monotonic() if now is None else now) >= until

    def available_at(self) -> float:
        """When the soonest resting key is usable again (monotonic seconds)."""
        return min(self._until.values(), default=0.0)

    def rest(self, key: ApiKey, seconds: float) -> None:
        with self._lock:
            self._until[key.env] = max(self._until.get(key.env, 0.0),
                                       time.monotonic() + seconds)
        log.warning("provider %s: key %s rate limited; resting it for %.0f s", self.provider,
                    key.env or "(none)", seconds)

    def retire(self, key: ApiKey) -> None:
        with self._lock:
            self._until[key.env] = time.monotonic() + self.retire_seconds
            self._retired.add(key.env)
        log.error("provider %s: key %s was refused by the upstream (401/403); taken out of "
                  "rotation", self.provider, key.env or "(none)")

    def succeeded(self, key: ApiKey) -> None:
        if key.env in self._retired:  # a retired key back by its time-out and accepted again
            with self._lock:
                self._retired.discard(key.env)
            log.warning("provider %s: key %s accepted again", self.provider, key.env)


def retry_after_seconds(value: str | None, default: float, most: float = 3600.0) -> float:
    """Seconds from a Retry-After header: delta-seconds or an HTTP date; else `default`."""
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError, IndexError):
            return default
    return min(max(seconds, 0.0), most) if seconds == seconds else default
