from datetime import UTC, datetime


def utcnow():
    """Naive UTC now: the same on SQLite (which keeps no zone) and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)
