"""Database setup: SQLite pragmas for the embedded default, PostgreSQL connections that wait on
gevent's loop, schema migrations, billing start-up."""

import atexit
import fcntl
import logging
import os
from contextlib import contextmanager

import psycopg
from alembic import command
from gevent import get_hub, monkey
from psycopg.waiting import Ready
from sqlalchemy import event, func, inspect, select, text

import models  # noqa: F401  (registers the tables)
from extensions import db, migrate
from services.billing import Billing
from services.pricing import Pricing

log = logging.getLogger(__name__)
MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")
# The first revision: the schema as create_all made it before migrations existed.
INITIAL_REVISION = "0001"
MIGRATION_LOCK = 7_412_906  # PostgreSQL advisory lock id held while migrating


def prepare_database(app):
    """Configure the engine and, unless switched off, bring the schema up to date."""
    migrate.init_app(app, db, directory=MIGRATIONS)
    with app.app_context():
        engine = db.engine
        if engine.dialect.name == "sqlite":
            event.listen(engine, "connect", _sqlite_pragmas)
        if engine.dialect.driver == "psycopg":
            event.listen(engine, "do_connect", _gevent_connection)
        if app.config["STORAGE_REFUSE_VALUE"]:
            refused = app.config["STORAGE_REFUSE_VALUE"]
            if engine.dialect.driver == "psycopg":  # also what billing sends psycopg itself
                event.listen(engine, "connect",
                             lambda conn, _record: _refusing_dumper(conn, refused))
            else:
                event.listen(engine, "before_cursor_execute", _refusing(refused))
        if app.config["CREATE_TABLES"]:
            upgrade_database(app)


class GeventConnection(psycopg.Connection):
    """psycopg's connection, waiting for its socket on gevent's loop itself.

    Under gevent's patches psycopg cannot use its C wait (it would block the process) and waits
    through gevent's emulation of select.poll instead: a poll object, a watcher and a timer (the
    0.1 s interval) made for each wait of each statement. This waits on one watcher per wait:
    about 20 us of CPU less a statement (5,000 parameterised SELECTs on one connection, five
    alternations, 185 -> 163 us). psycopg's generators tolerate a readiness that was not asked
    for, so a wait for either reports both. A wait with a timeout is psycopg's own.
    """

    def wait(self, gen, interval=0.1, timeout=None):
        if timeout is not None:
            return super().wait(gen, interval, timeout)
        fileno, hub = self.pgconn.socket, get_hub()
        try:
            state = next(gen)
            while True:
                watcher = hub.loop.io(fileno, state)  # psycopg's Wait is libev's READ/WRITE
                try:
                    hub.wait(watcher)
                finally:
                    watcher.close()
                state = gen.send(Ready(state))
        except StopIteration as done:
            return done.value


def _gevent_connection(dialect, record, cargs, cparams):
    """SQLAlchemy's do_connect: a GeventConnection where gevent patched select (the workers),
    else psycopg's own (the CLI, the tests in one process)."""
    if monkey.is_module_patched("select"):
        return GeventConnection.connect(*cargs, **cparams)
    return None


def upgrade_database(app, revision: str = "head"):
    """Run pending migrations, one process at a time (safe with several workers and hosts).

    A database made by create_all before migrations existed has the initial schema but no
    alembic_version table: it is stamped at the initial revision, then upgraded.
    """
    with app.app_context(), _migration_lock(db.engine) as connection:
        config = app.extensions["migrate"].migrate.get_config(MIGRATIONS)
        config.attributes["connection"] = connection
        tables = set(inspect(connection).get_table_names())
        if "alembic_version" not in tables and "users" in tables:
            log.info("database predates migrations: stamping revision %s", INITIAL_REVISION)
            command.stamp(config, INITIAL_REVISION)
        command.upgrade(config, revision)
        connection.commit()


@contextmanager
def _migration_lock(engine):
    """A connection that alone may migrate: a PostgreSQL advisory lock, or a lock file beside
    the SQLite database (an in-memory SQLite database is private to its process anyway)."""
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK})
            connection.commit()
            try:
                yield connection
            finally:
                connection.rollback()
                connection.execute(text("SELECT pg_advisory_unlock(:id)"),
                                   {"id": MIGRATION_LOCK})
                connection.commit()
            return
        path = engine.url.database
        if engine.dialect.name != "sqlite" or not path or path == ":memory:":
            yield connection
            return
        with open(path + ".migrate-lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield connection
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _sqlite_pragmas(dbapi_connection, _record):
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _refusing(value: str):
    """A statement hook that fails like the driver does on a value it cannot store (also inside
    an array parameter, as set-based statements on PostgreSQL send them)."""
    def refuse(conn, _cursor, _statement, parameters, _context, executemany):
        rows = parameters if executemany else [parameters]
        for row in rows:
            values = row.values() if isinstance(row, dict) else (row or ())
            if value in values or any(isinstance(v, list) and value in v for v in values):
                raise conn.dialect.loaded_dbapi.DataError(f"refused value {value!r}")
    return refuse


def _refusing_dumper(conn, value: str):
    """psycopg refusing `value` as it refuses a string it cannot send (a DataError before the
    statement leaves), in a parameter of its own or an array's item: the testing aid on the
    driver itself, so that it reaches the statements billing sends past SQLAlchemy."""
    from psycopg.types.string import StrDumperUnknown  # the Python dumper: C ones are final

    class Refusing(StrDumperUnknown):
        def dump(self, obj):
            if obj == value:
                raise psycopg.DataError(f"refused value {value!r}")
            return super().dump(obj)

    conn.adapters.register_dumper(str, Refusing)


def start_billing(app) -> Billing:
    """The billing service, with stale holds swept now and settlements flushed at exit."""
    with app.app_context():
        engine = db.engine
    billing = Billing(engine, Pricing(app.config["PRICING"]),
                      queue_size=app.config["SETTLE_QUEUE_SIZE"], hold_ttl=app.config["HOLD_TTL"],
                      gather_seconds=float(app.config["SETTLE_GATHER_SECONDS"]))
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
