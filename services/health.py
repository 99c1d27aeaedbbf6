"""Whether each provider answered its last requests, as this worker saw them: kept in memory,
recorded around every upstream call, shown to operators on /admin."""

import threading
import time
from collections import deque
from dataclasses import dataclass

from errors import UpstreamUnavailable

KEPT = 20  # outcomes remembered per provider


@dataclass(frozen=True)
class Outcome:
    at: float  # epoch seconds
    answered: bool  # False: unreachable, timed out, 5xx or 429
    detail: str = ""


class ProviderHealth:
    def __init__(self):
        self._outcomes: dict[str, deque] = {}
        self._lock = threading.Lock()

    def record(self, provider: str, answered: bool, detail: str = "") -> None:
        with self._lock:
            self._outcomes.setdefault(provider, deque(maxlen=KEPT)).append(
                Outcome(time.time(), answered, detail))

    def recent(self, provider: str) -> list[Outcome]:
        """Newest first."""
        with self._lock:
            return list(reversed(self._outcomes.get(provider, ())))

    def watch(self, provider) -> None:
        """Record the outcome of each call to provider.open (its upstream answering or not)."""
        opened, name = provider.open, provider.upstream.name

        def open_and_record(*args, **kwargs):
            try:
                resp = opened(*args, **kwargs)
            except UpstreamUnavailable as err:
                self.record(name, False, err.message)
                raise
            except Exception:  # an answer the client is blamed for (4xx): the provider is up
                self.record(name, True, "refused the request")
                raise
            self.record(name, True)
            return resp

        provider.open = open_and_record
