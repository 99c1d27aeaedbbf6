"""Canary secrets and the record of where any of them leaked, checked when the session ends.

Every provider key the tests configure and every client key they make is a canary: none may
appear in a response body, a log line or a database row, whatever a test does.
"""

import threading

UPSTREAM_KEY = "sk-CANARY-upstream-0123456789abcdef"  # looks like a key: caught by patterns too
PLAIN_UPSTREAM_KEY = "plain-canary-7d1e4b9a"  # looks like nothing: only knowing it redacts it
CANARIES = {UPSTREAM_KEY, PLAIN_UPSTREAM_KEY}
LEAKS: list[str] = []
LOG_LINES: list[str] = []
_lock = threading.Lock()


def add(secret: str) -> str:
    with _lock:
        CANARIES.add(secret)
    return secret


def scan(text: str, where: str) -> None:
    """Record a leak for each canary found in `text`."""
    for secret in list(CANARIES):
        if secret and secret in text:
            with _lock:
                LEAKS.append(f"{where}: {secret[:12]}…")


def scan_rows(engine, where: str) -> None:
    """Scan every row of every table of a database."""
    from sqlalchemy import inspect, text
    with engine.connect() as conn:
        for table in inspect(conn).get_table_names():
            for row in conn.execute(text(f'SELECT * FROM "{table}"')):
                scan(repr(tuple(row)), f"{where} table {table}")


class ScanResponses:
    """WSGI middleware: scans every response body, streamed chunks included, for canaries."""

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        where = f"response to {environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
        headers_seen = []

        def start(status, headers, exc_info=None):
            headers_seen.append(repr(headers))
            return start_response(status, headers, exc_info)

        body = self.app(environ, start)
        return _Scanned(body, where, headers_seen)


class _Scanned:
    def __init__(self, body, where, headers):
        self.body, self.where, self.headers, self.tail = body, where, headers, ""

    def __iter__(self):
        for chunk in self.body:
            text = self.tail + chunk.decode("utf-8", "replace")
            scan(text + "".join(self.headers), self.where)
            self.tail = text[-64:]
            yield chunk

    def close(self):
        scan("".join(self.headers), self.where)
        if hasattr(self.body, "close"):
            self.body.close()


class LogLines:
    """A logging handler keeping every formatted line (after the gateway's redaction)."""

    @staticmethod
    def handler():
        import logging

        class Keep(logging.Handler):
            def emit(self, record):
                try:
                    line = self.format(record)
                except Exception:
                    line = str(record.msg)
                with _lock:
                    LOG_LINES.append(line)

        return Keep(level=logging.DEBUG)
