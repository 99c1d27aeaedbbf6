"""Database setup: SQLite pragmas for the embedded default, and table creation."""

import atexit
import logging

from sqlalchemy import event, func, select
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


def observe_storage(app, metrics) -> None:
    """Scrape-time figures read from the database: holds open now (across every process)."""
    from services.metrics import gauge_family

    engine = app.extensions["billing"].engine
    count = select(func.count()).select_from(models.Hold)

    def collect():
        try:
            with engine.connect() as conn:
                value = conn.execute(count).scalar_one()
        except Exception as exc:  # the database is away: leave the figure out of this scrape
            log.warning("holds count for metrics failed: %s", type(exc).__name__)
            return
        yield gauge_family("tollgate_holds_open", "Credit holds open (requests in flight)", value)

    metrics.add_collector(collect)
