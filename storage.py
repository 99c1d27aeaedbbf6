"""Database setup: SQLite pragmas for the embedded default, and table creation."""

import atexit
import logging

from sqlalchemy import event
from sqlalchemy.exc import OperationalError, ProgrammingError

import models  # noqa: F401  (registers the tables)
from extensions import db
from services.billing import Billing
from services.pricing import Pricing

log = logging.getLogger(__name__)


def prepare_database(app):
    """Configure the engine and create missing tables (idempotent; safe with several workers)."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if app.config["STORAGE_REFUSE_VALUE"]:
            event.listen(engine, "before_cursor_execute",
                         _refusing(app.config["STORAGE_REFUSE_VALUE"]))
        if app.config["CREATE_TABLES"]:
            try:
                db.create_all()
            except (OperationalError, ProgrammingError) as exc:  # another worker won the race
                log.info("create_all raced another process: %s", type(exc).__name__)
                db.session.rollback()
                db.create_all()


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _refusing(value: str):
    """A statement hook that fails like the driver does on a value it cannot store."""
    def refuse(conn, _cursor, _statement, parameters, _context, executemany):
        rows = parameters if executemany else [parameters]
        for row in rows:
            values = row.values() if isinstance(row, dict) else (row or ())
            if value in values:
                raise conn.dialect.loaded_dbapi.DataError(f"refused value {value!r}")
    return refuse


def start_billing(app) -> Billing:
    """The billing service, with stale holds swept now and settlements flushed at exit."""
    with app.app_context():
        engine = db.engine
    billing = Billing(engine, Pricing(app.config["PRICING"]),
                      queue_size=app.config["SETTLE_QUEUE_SIZE"], hold_ttl=app.config["HOLD_TTL"])
    try:
        billing.sweep()
    except Exception as exc:  # the database may come up later; the periodic sweep retries
        log.error("start-up hold sweep failed: %s", type(exc).__name__)
    atexit.register(billing.shutdown)
    return billing
