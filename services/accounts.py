"""People and their accounts: sign-up, passwords, log-in sessions, plans, disabling, admin
rights and idempotent credit grants. Shared by the web pages, the admin API and the CLI."""

import hashlib
import secrets
from datetime import timedelta
from decimal import Decimal, InvalidOperation

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from errors import GatewayError, InvalidRequest, NotFound
from models import Account, ApiKey, Grant, UsageRecord, User, WebSession, utcnow
from services.billing import grant
from services.keys import revoke_key

HASHER = PasswordHasher()  # argon2id with the library's current recommended parameters
# Verified against when an email is unknown, so a miss takes as long as a wrong password.
_DUMMY_HASH = HASHER.hash("not a password anyone has")
MIN_PASSWORD, MAX_PASSWORD = 8, 1024
MAX_GRANT = Decimal(10) ** 12


class Conflict(GatewayError):
    status, kind, code = 409, "invalid_request", "conflict"


def check_password(password) -> str:
    """A password people may choose, or a 400 saying why not."""
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidRequest(f"Passwords need {MIN_PASSWORD} to {MAX_PASSWORD} characters.",
                             param="password")
    if "\x00" in password:
        raise InvalidRequest("Passwords cannot contain NUL characters.", param="password")
    return password


def create_user(session, name: str, *, password: str | None = None, plan: str | None = None,
                credits: Decimal = Decimal(0), admin: bool = False, reason: str = "") -> User:
    """A new user (on `plan`, None for the default) with an account and optional credits."""
    user = User(name=name, plan=plan, is_admin=admin,
                password_hash=HASHER.hash(check_password(password)) if password else None)
    session.add(user)
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise Conflict(f"A user named {name!r} exists already.", param="email") from None
    session.add(Account(user_id=user.id, balance=Decimal(0), credited=Decimal(0)))
    session.commit()
    if credits:
        grant(session, user.id, credits, reason)
    return user


def set_password(session, user: User, password: str) -> None:
    user.password_hash = HASHER.hash(check_password(password))
    session.commit()


def verify_login(session, name: str, password: str) -> User | None:
    """The user these credentials belong to, or None; disabled users are returned (the caller
    tells them apart), a user without a password never matches."""
    user = session.scalar(select(User).where(User.name == name))
    stored = user.password_hash if user is not None and user.password_hash else _DUMMY_HASH
    try:
        HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return None
    if user is None or not user.password_hash:
        return None
    if HASHER.check_needs_rehash(stored):
        user.password_hash = HASHER.hash(password)
        session.commit()
    return user


# ---- browser sessions ------------------------------------------------------------------------
def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(session, user: User, lifetime: float) -> str:
    """A new log-in session for user; returns the token for the cookie (stored only hashed)."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    session.add(WebSession(digest=_digest(token), user_id=user.id, created_at=now,
                           expires_at=now + timedelta(seconds=lifetime)))
    session.execute(delete(WebSession).where(WebSession.expires_at < now))
    session.commit()
    return token


def session_user(session, token) -> User | None:
    """The enabled user a session token belongs to, while it has not expired."""
    if not isinstance(token, str) or not 20 <= len(token) <= 100:
        return None
    user = session.scalar(select(User).join(WebSession, WebSession.user_id == User.id)
                          .where(WebSession.digest == _digest(token),
                                 WebSession.expires_at > utcnow()))
    return None if user is None or user.disabled else user


def end_session(session, token) -> None:
    if isinstance(token, str):
        session.execute(delete(WebSession).where(WebSession.digest == _digest(token)))
        session.commit()


# ---- what operators change -------------------------------------------------------------------
def get_user(session, user_id) -> User:
    user = session.get(User, user_id) if _valid_id(user_id) else None
    if user is None:
        raise NotFound(f"No user with id {user_id}.", code="user_not_found")
    return user


def set_plan(session, user: User, plan: str, plans) -> None:
    """Put user on a configured plan (takes effect for keys within KEY_CACHE_TTL)."""
    if not isinstance(plan, str) or plan not in plans.plans:
        raise InvalidRequest(f"No plan {str(plan)[:64]!r}; plans: "
                             f"{', '.join(sorted(plans.plans))}.", param="plan")
    user.plan = plan
    session.commit()


def set_disabled(session, user: User, disabled: bool) -> None:
    """Disable (or re-enable) a user: no log-in, sessions ended, keys refused within the
    key cache TTL."""
    user.disabled = bool(disabled)
    if disabled:
        session.execute(delete(WebSession).where(WebSession.user_id == user.id))
    session.commit()


def set_admin(session, user: User, admin: bool) -> None:
    user.is_admin = bool(admin)
    session.commit()


def parse_amount(value, *, field: str = "amount") -> Decimal:
    """A credit amount: non-zero, at most six decimals, within +-10^12."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidRequest(f"'{field}' must be a number", param=field)
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        raise InvalidRequest(f"'{field}' must be a number", param=field) from None
    if (not amount.is_finite() or amount == 0 or amount.as_tuple().exponent < -6
            or abs(amount) >= MAX_GRANT):
        raise InvalidRequest(f"'{field}' must be non-zero, below 10^12, with at most 6 "
                             "decimals", param=field)
    return amount


def grant_once(session, user_id: int, amount: Decimal, reason: str,
               idempotency_key: str) -> tuple[Grant, bool]:
    """Grant credits once per (user, idempotency key); a retry returns the first grant.

    The grant row goes in first: its unique index turns a concurrent or repeated top-up into
    an IntegrityError before any balance moved. Returns (grant, replayed)."""
    existing = _grant_with_key(session, user_id, idempotency_key)
    if existing is None:
        row = Grant(user_id=user_id, amount=amount, reason=reason,
                    idempotency_key=idempotency_key, created_at=utcnow())
        session.add(row)
        try:
            session.flush()
            _ensure_account(session, user_id)
            moved = session.execute(Account.__table__.update()
                                    .where(Account.user_id == user_id,
                                           Account.balance + amount >= 0)
                                    .values(balance=Account.balance + amount,
                                            credited=Account.credited + amount)).rowcount
            if not moved:  # taking back more than the balance holds
                session.rollback()
                raise InvalidRequest("The balance is smaller than the credits to take back.",
                                     param="amount")
            session.commit()
            return row, False
        except IntegrityError:
            session.rollback()
            existing = _grant_with_key(session, user_id, idempotency_key)
            if existing is None:
                raise
    if existing.amount != amount:
        raise Conflict("This idempotency key was used for a different amount "
                       f"({existing.amount}).", param="idempotency_key",
                       code="idempotency_key_reused")
    return existing, True


def _grant_with_key(session, user_id, key):
    return session.scalar(select(Grant).where(Grant.user_id == user_id,
                                              Grant.idempotency_key == key))


def _ensure_account(session, user_id):
    if session.get(Account, user_id) is None:
        session.add(Account(user_id=user_id, balance=Decimal(0), credited=Decimal(0)))
        session.flush()


def user_key(session, user_id: int, key_id) -> ApiKey:
    """One of this user's keys; 404 for anyone else's (no hint that it exists)."""
    row = session.get(ApiKey, key_id) if _valid_id(key_id) else None
    if row is None or row.user_id != user_id:
        raise NotFound("No such key.", code="key_not_found")
    return row


def _valid_id(value, most: int = 2**31 - 1) -> bool:
    """A row id a query may be asked about: a positive integer within the column's range."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= most


def user_record(session, user_id: int, record_id):
    """One of this user's usage records; 404 for anyone else's."""
    row = session.get(UsageRecord, record_id) if _valid_id(record_id, 2**63 - 1) else None
    if row is None or row.user_id != user_id:
        raise NotFound("No such usage record.", code="record_not_found")
    return row


def revoke_user_key(session, user_id: int, key_id: int) -> None:
    """Revoke one of the user's keys (404 for another user's)."""
    row = user_key(session, user_id, key_id)
    if row.revoked_at is None:
        revoke_key(session, row.id)


