"""API keys: generation, hashing, revocation, and a short-lived lookup cache for the hot path."""

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from threading import Lock

from cachetools import TTLCache
from sqlalchemy import bindparam, select
from sqlalchemy.exc import DBAPIError

from models import ApiKey, User, utcnow
from services.names import KEY_NAME_MAX, check_text
from services.plans import UNLIMITED, Plan, PlanBook

KEY_PREFIX = "tg-"
LOOKUP = (select(ApiKey.id, ApiKey.user_id, ApiKey.digest, ApiKey.revoked_at, ApiKey.expires_at,
                 ApiKey.models, User.name, User.plan, User.plan_overrides, User.is_admin,
                 User.disabled)
          .join(User, User.id == ApiKey.user_id).where(ApiKey.digest == bindparam("digest")))


@dataclass(frozen=True)
class Caller:
    """Who is calling: what the request pipeline needs to know about a key, nothing more."""

    key_id: int
    user_id: int
    user_name: str
    expires_at: object = None  # naive UTC datetime or None
    plan: Plan = UNLIMITED  # the user's plan with the user's overrides applied
    is_admin: bool = False

    @property
    def rate_key(self) -> str:
        """What request limits count against: the key, or the user for the browser console
        (the playground calls on a logged-in user's behalf with key_id 0)."""
        return f"key:{self.key_id}" if self.key_id else f"user:{self.user_id}"


def digest(key: str) -> str:
    """The stored form of a key: keys are 256-bit random, so a plain SHA-256 is enough."""
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def create_key(session, user: User, name: str = "", expires_at=None,
               models=None) -> tuple[ApiKey, str]:
    """Make a key for user; returns the row and the plaintext, which is never stored.
    `models` (names or globs) restricts the key to those of its plan's models."""
    check_text(name, param="name", max_length=KEY_NAME_MAX, allow_empty=True)
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(user_id=user.id, name=name, digest=digest(plaintext),
                 hint=f"{plaintext[:7]}…{plaintext[-4:]}", expires_at=expires_at,
                 models=list(models) if models else None)
    session.add(row)
    session.commit()
    return row, plaintext


def revoke_key(session, key_id: int) -> bool:
    """Mark a key revoked; False when there is no such usable key."""
    row = session.get(ApiKey, key_id)
    if row is None or row.revoked_at is not None:
        return False
    row.revoked_at = utcnow()
    session.commit()
    return True


class KeyStore:
    """Resolves presented keys to Callers, caching hits and misses for `ttl` seconds per process.
    A Caller carries its plan, so a plan change takes effect within `ttl` too."""

    def __init__(self, ttl: float, size: int, plans: PlanBook):
        # entries (read at, Caller or None) are kept twice the ttl: once one is due to be read
        # again, the one request reading it lets the others go on with it (see `cached`)
        self.ttl = ttl
        self._cache = TTLCache(maxsize=size, ttl=2 * ttl, timer=time.monotonic)
        self._reading: dict[str, float] = {}  # digest -> since when a request is reading it
        self._lock = Lock()
        self.plans = plans

    def cached(self, presented: str | None) -> Caller | None:
        """The Caller for a usable key resolved within the last `ttl` seconds, else None (not
        looked up: then ask `authenticate`).

        An entry due to be read again that another request is reading now (in `authenticate`)
        gives the last answer meanwhile. Without that, every request in flight when the entry
        went stale read the failed-auth counter and queried the database, the same key each.
        A revocation still takes effect within `ttl` and the time of that read (at most
        `READ_CLAIM_SECONDS` more: a read that takes longer is not waited for)."""
        if not presented or len(presented) > 256:
            return None
        wanted = digest(presented)
        with self._lock:
            entry = self._cache.get(wanted)
            if entry is None or self._due(wanted, entry, time.monotonic()):
                return None  # the caller asks `authenticate`
        return _usable(entry[1])

    def authenticate(self, session, presented: str | None) -> Caller | None:
        """The Caller for a usable key, else None; at most one database query per key per ttl
        (per process), and while one is out for a key the last answer serves."""
        if not presented or len(presented) > 256:
            return None
        wanted = digest(presented)
        with self._lock:
            entry = self._cache.get(wanted)
            now = time.monotonic()
            due = entry is None or self._due(wanted, entry, now)
            if due:
                self._reading[wanted] = now
        if not due:
            return _usable(entry[1])
        try:
            found = self._load(session, wanted)
            with self._lock:
                self._cache[wanted] = (time.monotonic(), found)
        finally:
            with self._lock:
                self._reading.pop(wanted, None)
        return _usable(found)

    def _due(self, wanted: str, entry: tuple, now: float) -> bool:
        """Whether an entry is to be read again by this caller: older than the ttl and not
        being read by another request (for at most READ_CLAIM_SECONDS). Under the lock."""
        if now - entry[0] < self.ttl:
            return False
        since = self._reading.get(wanted)
        return since is None or now - since > READ_CLAIM_SECONDS

    def forget(self):
        """Drop every cached entry (used after revocations made in this process)."""
        with self._lock:
            self._cache.clear()
            self._reading.clear()

    def _load(self, session, wanted: str) -> Caller | None:
        # Plain columns, not ORM objects: the rollback below expires objects, and reading one
        # afterwards would query again and hold a pooled connection for the rest of the request.
        for attempt in (1, 2):
            try:
                row = session.execute(LOOKUP, {"digest": wanted}).first()
                break
            except DBAPIError as exc:  # a pooled connection the server dropped: once more
                if attempt == 2 or not exc.connection_invalidated:
                    raise
            finally:
                session.rollback()  # hand the pooled connection back before a stream starts
        if (row is None or not hmac.compare_digest(row.digest, wanted) or row.revoked_at
                or row.disabled):
            return None
        plan = self.plans.for_user(row.plan, row.plan_overrides)
        if row.models:
            plan = plan.restricted_to(row.models)
        return Caller(key_id=row.id, user_id=row.user_id, user_name=row.name,
                      expires_at=row.expires_at, plan=plan, is_admin=bool(row.is_admin))


READ_CLAIM_SECONDS = 1.0  # how long others go on with a due entry while one request reads it


def _usable(found: Caller | None) -> Caller | None:
    if found is None or (found.expires_at is not None and found.expires_at <= utcnow()):
        return None
    return found
