"""Log-in and sign-up throttling: attempts counted per client address and per account with a
moving window, on the same storage as the request limits (memory, or Redis when shared)."""

import time
from collections.abc import Callable

from limits import parse_many

from errors import RateLimited
from services.ratelimit import Standing, StorageGuard


class Throttle:
    """`check(*subjects)` raises 429 once any subject has used up its attempts; `hit` counts
    one attempt against each. Subjects are strings such as "address:1.2.3.4"."""

    def __init__(self, scope: str, strategy: Callable, limit: str | None, guard: StorageGuard,
                 message: str):
        self.scope, self.strategy, self.guard, self.message = scope, strategy, guard, message
        self.items = parse_many(limit) if limit else []

    def check(self, *subjects: str) -> None:
        for item in self.items:
            for subject in subjects:
                if self.guard.call(self.strategy().test, item, self.scope, subject) is False:
                    wait = self._wait(item, subject)
                    raise RateLimited(self.message.format(wait=wait),
                                      headers={"Retry-After": str(wait)})

    def hit(self, *subjects: str) -> None:
        for item in self.items:
            for subject in subjects:
                self.guard.call(self.strategy().hit, item, self.scope, subject)

    def _wait(self, item, subject) -> int:
        stats = self.guard.call(self.strategy().get_window_stats, item, self.scope, subject)
        reset = stats.reset_time if stats else time.time() + item.get_expiry()
        return Standing(item.amount, 0, reset).retry_after()
