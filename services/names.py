"""Strings the gateway stores or looks up: model, provider, user and key names.

Every such string is checked before it reaches a row or a query, on every endpoint and in the
CLI: PostgreSQL refuses NUL characters and lone surrogates and enforces column lengths, and a
value it refuses after a request was served would leave that request unbilled. The limits are
the columns' own lengths, so a wider column widens the check with it.
"""

from errors import InvalidRequest
from models import ApiKey, Grant, UsageRecord, User

MODEL_MAX = UsageRecord.__table__.c.model.type.length  # 256
KEY_NAME_MAX = ApiKey.__table__.c.name.type.length  # 120
USER_NAME_MAX = User.__table__.c.name.type.length  # 120
REASON_MAX = Grant.__table__.c.reason.type.length  # 500
PROVIDER_MAX = 64  # the longest provider name a request may force


def text_problem(value, max_length: int, *, allow_empty: bool = False) -> str | None:
    """Why `value` cannot be stored as it is, or None when it can."""
    if not isinstance(value, str):
        return "Must be a string."
    if not value and not allow_empty:
        return "Must not be empty."
    if len(value) > max_length:
        return f"Must be at most {max_length} characters long."
    for char in value:  # Unicode's control characters (Cc) are exactly these two ranges
        if char < " " or "\x7f" <= char <= "\x9f":
            return f"Must not contain control characters (found U+{ord(char):04X})."
        if "\ud800" <= char <= "\udfff":
            return "Must be valid Unicode (found a lone surrogate)."
    return None


def check_text(value, *, param: str, max_length: int, allow_empty: bool = False) -> str:
    """`value` if it can be stored; otherwise a 400 naming `param` (in the caller's envelope)."""
    problem = text_problem(value, max_length, allow_empty=allow_empty)
    if problem:
        raise InvalidRequest(f"Invalid value for '{param}': {problem}", param=param)
    return value


def check_model(value, param: str = "model") -> str:
    """A model name fit for the usage ledger (and for routing)."""
    return check_text(value, param=param, max_length=MODEL_MAX)
