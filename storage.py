"""Database setup: SQLite pragmas for the embedded default, and table creation."""

import logging

from sqlalchemy import event
from sqlalchemy.exc import OperationalError, ProgrammingError

import models  # noqa: F401  (registers the tables)
from extensions import db

log = logging.getLogger(__name__)


def prepare_database(app):
    """Configure the engine and create missing tables (idempotent; safe with several workers)."""
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
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
