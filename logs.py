"""Logging that cannot leak keys: every record is redacted before any handler sees it."""

import logging

from errors import redact


class RedactingFilter(logging.Filter):
    def filter(self, record):
        message = record.getMessage()
        cleaned = redact(message)
        if record.exc_info and record.exc_info[1] is not None:
            # tracebacks can carry keys in exception text; keep only the type and a clean message
            exc = record.exc_info[1]
            cleaned += f" [{type(exc).__name__}: {redact(str(exc))[:300]}]"
            record.exc_info = None
            record.exc_text = None
        record.msg, record.args = cleaned, None
        return True


def install_redaction():
    """Attach the filter to the root logger's handlers and to the loggers that log requests."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO,
                            format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    flt = RedactingFilter()
    for handler in root.handlers:
        if not any(isinstance(f, RedactingFilter) for f in handler.filters):
            handler.addFilter(flt)
    for name in ("gunicorn.error", "gunicorn.access", "werkzeug"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactingFilter) for f in logger.filters):
            logger.addFilter(flt)
