"""PostgreSQL connections that wait on gevent's loop (storage.GeventConnection): statements and
errors as psycopg's own give them, waits that let other greenlets run, a lost connection an
error and not a hang; and the workers' engine makes them where gevent patched select."""

import os
import subprocess
import sys
import time

import gevent
import psycopg
import pytest

from storage import GeventConnection

pytestmark = pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"),
                                reason="needs PostgreSQL")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def conninfo():
    return os.environ["TEST_DATABASE_URL"]


def test_statements_and_errors_as_psycopg_gives_them(conninfo):
    with GeventConnection.connect(conninfo) as conn:
        assert conn.execute("SELECT %s::int + %s::int", (2, 3)).fetchone() == (5,)
        big = "x" * 2_000_000  # more than a socket buffer: psycopg waits to write, too
        assert conn.execute("SELECT length(%s)", (big,)).fetchone() == (len(big),)
        assert len(conn.execute("SELECT repeat('y', 3000000)").fetchone()[0]) == 3_000_000
        with pytest.raises(psycopg.errors.DivisionByZero):
            conn.execute("SELECT 1 / 0")
        conn.rollback()
        with conn.transaction():
            conn.execute("CREATE TEMP TABLE t (n int)")
            conn.cursor().executemany("INSERT INTO t VALUES (%s)", [(i,) for i in range(50)])
        assert conn.execute("SELECT sum(n) FROM t").fetchone() == (sum(range(50)),)


def test_a_wait_lets_the_other_greenlets_run(conninfo):
    conns = [GeventConnection.connect(conninfo, autocommit=True) for _ in range(4)]
    try:
        started = time.monotonic()
        jobs = [gevent.spawn(c.execute, "SELECT pg_sleep(0.5)") for c in conns]
        gevent.joinall(jobs, raise_error=True)
        took = time.monotonic() - started
    finally:
        for c in conns:
            c.close()
    assert took < 1.5, f"four 0.5 s statements took {took:.2f} s: the waits blocked each other"


def test_a_connection_ended_by_the_server_is_an_error_not_a_hang(conninfo):
    with psycopg.connect(conninfo, autocommit=True) as admin:
        conn = GeventConnection.connect(conninfo, autocommit=True)
        pid = conn.info.backend_pid
        waiting = gevent.spawn(conn.execute, "SELECT pg_sleep(30)")
        gevent.sleep(0.3)
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        waiting.join(timeout=10)
    assert waiting.ready(), "the wait outlived its connection"
    assert isinstance(waiting.exception, psycopg.OperationalError)
    assert conn.closed or conn.broken


def test_the_workers_engine_makes_them_and_the_cli_psycopgs_own(tmp_path, conninfo):
    """In a process gevent patched, as gunicorn's gevent worker does before loading the app,
    the engine's connections are GeventConnections; without the patch, psycopg's own."""
    script = """
import sys
if sys.argv[1] == "patched":
    from gevent import monkey
    monkey.patch_all()
from app import create_app
from extensions import db
app = create_app({"SQLALCHEMY_DATABASE_URI": sys.argv[2], "CREATE_TABLES": False})
with app.app_context():
    pooled = db.engine.raw_connection()
    print(type(pooled.driver_connection).__name__, pooled.driver_connection.execute(
        "SELECT 40 + 2").fetchone()[0])
    pooled.close()
"""
    env = {**os.environ, "GATEWAY_CONFIG": "/nonexistent.toml"}
    env.pop("DATABASE_URL", None)
    seen = {}
    for mode in ("patched", "plain"):
        done = subprocess.run([sys.executable, "-c", script, mode, conninfo], cwd=ROOT,
                              env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        seen[mode] = done.stdout.split()[-2:]
    assert seen == {"patched": ["GeventConnection", "42"], "plain": ["Connection", "42"]}
