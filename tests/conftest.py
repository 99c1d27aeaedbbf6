"""Fixtures: a fake upstream on loopback, the app on SQLite (and PostgreSQL when
TEST_DATABASE_URL is set), a user with a key, and the app served over real HTTP."""

import os
import threading
import uuid
import warnings
from decimal import Decimal
from urllib.parse import urlsplit, urlunsplit

import pytest
from werkzeug.serving import make_server

from app import create_app
from extensions import db, limiter
from models import User
from services.billing import grant
from services.keys import create_key
from tests import canaries
from tests.canaries import PLAIN_UPSTREAM_KEY, UPSTREAM_KEY
from tests.fake_upstream import FakeUpstream

# Canary secrets (tests/canaries.py): never in a response body, a page, a log line or a row.
UPSTREAM_KEY_ENV = "TOLLGATE_TEST_UPSTREAM_KEY"
PLAIN_UPSTREAM_KEY_ENV = "TOLLGATE_TEST_PLAIN_UPSTREAM_KEY"

BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])


def _redis_url_of_this_worker(url: str | None) -> str | None:
    """Under pytest-xdist each worker gets a Redis database of its own (the base URL's number
    plus the worker's): tests that run a gateway with the operator's plain REDIS_URL share no
    counters with tests of another worker, whose users may have the same ids."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not url or not worker.startswith("gw"):
        return url
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{(base + int(worker[2:])) % 16}"))


# Rate-limit storages: per-process memory always, Redis when TEST_REDIS_URL is set (CI sets it).
REDIS_URL = _redis_url_of_this_worker(os.environ.get("TEST_REDIS_URL"))
STORAGES = ["memory"] + (["redis"] if REDIS_URL else [])


def limit_storage(kind: str) -> dict:
    """Rate-limit settings for a storage kind. Redis is shared with parallel runs, so each call
    gets a key prefix of its own: no test ever counts another's hits."""
    if kind == "memory":
        return {"RATELIMIT_STORAGE_URI": "memory://"}
    return {"RATELIMIT_STORAGE_URI": REDIS_URL,
            "RATELIMIT_STORAGE_OPTIONS": {"key_prefix": f"tollgate-test-{uuid.uuid4().hex}"}}


@pytest.fixture(scope="session", autouse=True)
def log_lines():
    """Keep every log line of the session, to look for canaries in when it ends."""
    import logging
    handler = canaries.LogLines.handler()
    logging.getLogger().addHandler(handler)
    yield
    logging.getLogger().removeHandler(handler)


def pytest_sessionfinish(session, exitstatus):
    """The session fails if any canary secret showed up where it must not. A pytest-xdist
    worker hands its leaks to the controller (workeroutput), which reports them all."""
    for i, line in enumerate(canaries.LOG_LINES):
        canaries.scan(line, f"log line {i}")
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["canary_leaks"] = list(canaries.LEAKS)
        return
    if canaries.LEAKS:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"CANARY SECRETS LEAKED ({len(canaries.LEAKS)}):", red=True)
            for leak in sorted(set(canaries.LEAKS))[:50]:
                reporter.write_line(f"  {leak}", red=True)
        session.exitstatus = 1


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error):
    """pytest-xdist, on the controller: a worker is done; keep the leaks it found."""
    canaries.LEAKS.extend(getattr(node, "workeroutput", {}).get("canary_leaks", []))


@pytest.fixture(scope="session")
def postgres_url():
    """A database of this test session's own on the TEST_DATABASE_URL server, dropped at the end,
    so that parallel runs and leftovers from earlier runs never meet."""
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    base = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"tollgate_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield base.set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        # a drop waits for a checkpoint, which a busy server can make long: a database left
        # behind is only disk space, so give up after a while rather than fail the last test
        conn.execute(text("SET statement_timeout = '20s'"))
        try:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        except OperationalError as exc:
            warnings.warn(f"test database {name} was left behind: {exc}", stacklevel=1)
    admin.dispose()


@pytest.fixture
def database_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path}/test.db"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def upstream():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture
def settings():
    """Per-module config overrides: override this fixture in a test module."""
    return {}


BASE_PATHS = {"openai": "/v1", "openai-compatible": "/v1", "anthropic": "/v1",
              "gemini": "/v1beta", "responses": "/v1"}


def provider_entry(upstream, name="fake", models=("gpt-test",), type="openai", **extra):
    """A provider table pointing at the fake upstream, which speaks every wire format."""
    return {"name": name, "type": type, "base_url": f"{upstream.url}{BASE_PATHS[type]}",
            "api_key_env": UPSTREAM_KEY_ENV, "models": list(models), **extra}


def every_provider_type(upstream) -> list[dict]:
    """One fake provider per wire format: gpt-test (OpenAI), claude-test, gemini-test."""
    return [provider_entry(upstream),
            provider_entry(upstream, "fake-claude", ("claude-test",), type="anthropic"),
            provider_entry(upstream, "fake-gemini", ("gemini-test",), type="gemini")]


@pytest.fixture
def app(upstream, database_url, settings, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    monkeypatch.setenv(PLAIN_UPSTREAM_KEY_ENV, PLAIN_UPSTREAM_KEY)
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.delenv("REDIS_URL", raising=False)  # Redis only with a key prefix of the test's
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": database_url, "DATABASE_POOL_SIZE": 10,
              "PROVIDERS": [provider_entry(upstream)], "UPSTREAM_READ_TIMEOUT": 5.0,
              "UPSTREAM_CONNECT_TIMEOUT": 2.0,
              # Each test builds its tables with create_all below (fast); tests/test_migrations.py
              # holds the migrations to the same schema.
              "CREATE_TABLES": False, **settings}
    app = create_app(config)
    app.wsgi_app = canaries.ScanResponses(app.wsgi_app)  # no canary in any response body
    with app.app_context():
        db.drop_all()
        db.create_all()
    yield app
    app.extensions["billing"].shutdown()  # settle what is queued, stop the worker
    if REDIS_URL and app.config["RATELIMIT_STORAGE_URI"] == REDIS_URL:
        limiter.storage.reset()  # this test's own key prefix only
    with app.app_context():
        db.session.remove()
        canaries.scan_rows(db.engine, "database")  # nor in any row
        db.engine.dispose()


@pytest.fixture
def client(app):
    return app.test_client()


def make_user(app, name="alice", credits=Decimal(1000), **key_options):
    """A user with `credits` granted and a fresh key; returns (user_id, plaintext key)."""
    with app.app_context():
        user = db.session.query(User).filter_by(name=name).one_or_none()
        if user is None:
            user = User(name=name)
            db.session.add(user)
            db.session.commit()
            if credits:
                grant(db.session, user.id, Decimal(credits), "test")
        row, plaintext = create_key(db.session, user, **key_options)
        return user.id, canaries.add(plaintext)


@pytest.fixture
def api_key(app):
    return make_user(app)[1]


@pytest.fixture
def gateway(app):
    """The app served over real HTTP on loopback (threaded); yields its base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
