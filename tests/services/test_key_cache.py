"""The key cache once an entry is due to be read again: while one request reads it, the others
go on with the last answer; a revocation takes effect once that read is done."""

import threading
import time

import pytest
import sqlalchemy
from sqlalchemy import event

from extensions import db
from models import ApiKey
from services.keys import revoke_key
from tests.conftest import make_user

TTL = 0.3


@pytest.fixture
def settings():
    return {"KEY_CACHE_TTL": TTL}


def lookups(app):
    """The key lookups sent to the database from now on (a list that grows)."""
    seen = []
    with app.app_context():
        engine = db.engine

    def listener(conn, cursor, statement, *args):
        if "WHERE api_keys.digest" in statement:
            seen.append(statement)

    event.listen(engine, "before_cursor_execute", listener)
    return seen


def test_a_due_key_is_read_again_and_a_revocation_then_seen(app):
    user_id, key = make_user(app)
    keys = app.extensions["keys"]
    seen = lookups(app)
    with app.app_context():
        assert keys.cached(key) is None  # never read
        assert keys.authenticate(db.session, key).user_id == user_id
        assert keys.cached(key).user_id == user_id and len(seen) == 1  # fresh
        key_id = db.session.query(ApiKey.id).filter_by(user_id=user_id).scalar()
        assert revoke_key(db.session, key_id)
        time.sleep(TTL + 0.05)
        assert keys.cached(key) is None  # due, nobody reading it: ask the database
        assert keys.authenticate(db.session, key) is None and len(seen) == 2
        assert keys.cached(key) is None


def test_an_entry_unread_for_twice_the_ttl_is_gone(app):
    _, key = make_user(app)
    keys = app.extensions["keys"]
    with app.app_context():
        keys.authenticate(db.session, key)
        time.sleep(2 * TTL + 0.05)
        assert keys.cached(key) is None


def test_while_one_request_reads_a_due_key_the_others_go_on_with_it(app, database_url):
    """The read is held up by a lock on the keys table (PostgreSQL), so it is still out while
    other requests (threads here, greenlets under gevent) come; released, it finishes and sees
    the revocation made meanwhile."""
    if not database_url.startswith("postgresql"):
        pytest.skip("holds the reading request with a PostgreSQL table lock")
    user_id, key = make_user(app)
    keys = app.extensions["keys"]
    seen = lookups(app)
    with app.app_context():
        keys.authenticate(db.session, key)
        key_id = db.session.query(ApiKey.id).filter_by(user_id=user_id).scalar()
        db.session.rollback()
    time.sleep(TTL + 0.05)
    locker = sqlalchemy.create_engine(database_url.replace("postgresql://",
                                                           "postgresql+psycopg://", 1))
    results = []
    try:
        with locker.connect() as lock:
            lock.exec_driver_sql("LOCK TABLE api_keys IN ACCESS EXCLUSIVE MODE")

            def reader():
                with app.app_context():
                    results.append(keys.authenticate(db.session, key))

            reading = threading.Thread(target=reader)
            reading.start()
            deadline = time.monotonic() + 5
            while len(seen) < 2:  # its lookup went out and waits on the lock
                assert time.monotonic() < deadline
                time.sleep(0.01)
            others = []

            def other():
                with app.app_context():
                    others.extend(keys.cached(key) for _ in range(5))
                    others.append(keys.authenticate(db.session, key))

            meanwhile = threading.Thread(target=other, daemon=True)
            meanwhile.start()
            meanwhile.join(5)  # had they gone to the database, they would wait on the lock
            assert not meanwhile.is_alive() and len(seen) == 2  # the others sent none
            assert len(others) == 6 and all(c is not None and c.user_id == user_id
                                            for c in others)
            lock.execute(sqlalchemy.text("UPDATE api_keys SET revoked_at = now() WHERE id = :id"),
                         {"id": key_id})
            lock.commit()  # the lock goes with the transaction
        reading.join(10)
    finally:
        locker.dispose()
    assert results == [None]  # the reader saw the revocation
    assert keys.cached(key) is None

