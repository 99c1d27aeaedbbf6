"""Logging that cannot leak keys, with the request id on every line, as text or JSON.

Every record is redacted before any handler sees it, and carries `request_id` (the current
request's, "-" outside requests). `log_format = "json"` writes one JSON object per line.
"""

import json
import logging
import time

import tracing
from errors import redact

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"


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


class RequestIdFilter(logging.Filter):
    def filter(self, record):
        if not hasattr(record, "request_id"):
            record.request_id = tracing.current_request_id() or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, request_id, message, and the fields of
    an access line (`extra={"fields": {...}}`) at the top level."""

    def format(self, record):
        entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
                 + f".{int(record.msecs):03d}Z", "level": record.levelname,
                 "logger": record.name, "pid": record.process,
                 "request_id": getattr(record, "request_id", "-"),
                 "message": record.getMessage()}
        entry.update(getattr(record, "fields", None) or {})
        return json.dumps(entry, ensure_ascii=False, default=str)


def install_logging(log_format: str = "text", level: str = "INFO"):
    """Give the root logger a handler of ours (unless one is set up already), and attach the
    redaction and request-id filters to every handler and to the loggers that log requests."""
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, "tollgate", False)]
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.tollgate = True
        root.addHandler(handler)
        root.setLevel(getattr(logging, str(level).upper(), logging.INFO))
        ours = [handler]
    for handler in ours:
        handler.setFormatter(JsonFormatter() if log_format == "json"
                             else logging.Formatter(TEXT_FORMAT))
    for handler in root.handlers:
        _attach(handler)
    for name in ("gunicorn.error", "gunicorn.access", "werkzeug"):
        _attach(logging.getLogger(name))
    # What no format of ours (nor gunicorn's) shows is not gathered for every record, as the
    # logging HOWTO's "Optimization" section suggests: thread and process names and the
    # caller's frame (a stack walk per line). The process id stays (gunicorn shows it).
    logging.logThreads = False
    logging.logMultiprocessing = False
    logging._srcfile = None


def install_redaction():
    """Redaction and request ids only (kept for callers that set up their own handlers)."""
    install_logging()


def _attach(target):
    for kind in (RedactingFilter, RequestIdFilter):
        if not any(isinstance(f, kind) for f in target.filters):
            target.addFilter(kind())
