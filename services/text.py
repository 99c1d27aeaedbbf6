"""Checks for strings people type before they reach a row or a query: valid Unicode, no control
characters, within the column's length."""

import re
import unicodedata

from errors import InvalidRequest

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u2028\u2029]")
EMAIL = re.compile(r"[^@\s]+@[^@\s.]+(\.[^@\s.]+)+")
MODEL_PATTERN = re.compile(r"[A-Za-z0-9._:/*?\[\]@+-]{1,256}")


def clean(value, *, field: str, max_length: int, required: bool = False,
          multiline: bool = False) -> str:
    """The stripped string, or a 400 naming `field`."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InvalidRequest(f"'{field}' must be a string", param=field)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidRequest(f"'{field}' is not valid Unicode", param=field) from None
    value = unicodedata.normalize("NFC", value).strip()
    text = value.replace("\n", "").replace("\r", "").replace("\t", "") if multiline else value
    if _CONTROL.search(text) or (not multiline and re.search(r"[\n\r\t]", value)):
        raise InvalidRequest(f"'{field}' contains control characters", param=field)
    if len(value) > max_length:
        raise InvalidRequest(f"'{field}' is longer than {max_length} characters", param=field)
    if required and not value:
        raise InvalidRequest(f"'{field}' is required", param=field)
    return value


def email(value) -> str:
    """A normalised (lower-case) email address, or a 400."""
    address = clean(value, field="email", max_length=120, required=True).lower()
    if not EMAIL.fullmatch(address):
        raise InvalidRequest("Enter a valid email address, like name@example.com.",
                             param="email")
    return address


def model_patterns(values, *, field: str = "models") -> list[str]:
    """Model names or glob patterns a key is restricted to (at most 50)."""
    if isinstance(values, str):
        values = [v for v in re.split(r"[,\s]+", values) if v]
    if not isinstance(values, list) or len(values) > 50:
        raise InvalidRequest(f"'{field}' must be a list of at most 50 model names", param=field)
    for value in values:
        if not isinstance(value, str) or not MODEL_PATTERN.fullmatch(value):
            raise InvalidRequest(f"'{field}' holds an invalid model name: {str(value)[:60]!r}",
                                 param=field)
    return values
