"""Several hosts: two gateway instances (separate gunicorn masters on separate ports, two gevent
workers each) on one PostgreSQL database and one Redis. Rate limits are exact across both, the
ledger balances after a mixed burst against both, a key revoked through one stops working on
both within the key cache TTL, and a breaker opened by one is honoured by the other."""

import itertools
import json
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
import requests
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from extensions import db
from models import ApiKey, Hold, UsageRecord, User
from services.billing import balance, ledger_gap
from services.keys import revoke_key
from tests.conftest import REDIS_URL, UPSTREAM_KEY, UPSTREAM_KEY_ENV, make_user, provider_entry
from tests.fake_faults import Refuser
from tests.fake_upstream import FakeUpstream, Script
from tests.live_server import GunicornServer

pytestmark = pytest.mark.skipif(not (os.environ.get("TEST_DATABASE_URL") and REDIS_URL),
                                reason="needs TEST_DATABASE_URL and TEST_REDIS_URL")
BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}]}
KEY_TTL = 1.0


@pytest.fixture(scope="module")
def database():
    """A PostgreSQL database of this module's own, made by the gateway's migrations."""
    base = make_url(os.environ["TEST_DATABASE_URL"]).set(drivername="postgresql+psycopg")
    name = f"tollgate_two_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = base.set(database=name)
    yield url.render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module")
def flaky():
    """A fake upstream of its own for the burst that fails on purpose: the breaker its 500s may
    open (shared by both instances) must not stop the other tests' upstream."""
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def fleet(database, flaky, tmp_path_factory):
    """(instance A, instance B, the fake upstream, the dead URL's listener)."""
    upstream, dead = FakeUpstream().start(), Refuser()
    saved = os.environ.get(UPSTREAM_KEY_ENV)
    os.environ[UPSTREAM_KEY_ENV] = UPSTREAM_KEY  # the servers' environment is copied from ours
    providers = [provider_entry(upstream),
                 {**provider_entry(upstream, "dead", ("gpt-dead",)),
                  "base_url": f"{dead.url}/v1"},
                 provider_entry(flaky, "flaky", ("gpt-flaky",))]
    env = {"REDIS_URL": REDIS_URL, "GATEWAY_KEY_CACHE_TTL": str(KEY_TTL),
           "GATEWAY_RATELIMIT_STORAGE_OPTIONS": json.dumps(
               {"key_prefix": f"tollgate-test-{uuid.uuid4().hex}"}),
           "GATEWAY_BREAKER_FAILURES": "2", "GATEWAY_BREAKER_OPEN_SECONDS": "60",
           # a shared PostgreSQL: at most 4 x (4 + 4) connections for the four workers
           "GATEWAY_DATABASE_POOL_SIZE": "4"}
    servers = [GunicornServer(tmp_path_factory.mktemp(name), providers=providers,
                              database_url=database, workers=2, env=env) for name in "ab"]
    for server in servers:
        server.start()
    yield servers[0], servers[1], upstream, dead
    for server in servers:
        server.stop()
    upstream.stop()
    dead.stop()
    if saved is None:
        os.environ.pop(UPSTREAM_KEY_ENV, None)
    else:
        os.environ[UPSTREAM_KEY_ENV] = saved


@pytest.fixture(scope="module")
def books(database, fleet):
    """The gateway's own code on the shared database, to set up users and read the ledger."""
    from app import create_app

    saved = os.environ.get("GATEWAY_CONFIG")
    os.environ["GATEWAY_CONFIG"] = "/nonexistent/gateway.toml"  # no local config file
    try:
        app = create_app({"SQLALCHEMY_DATABASE_URI": database, "PROVIDERS": [],
                          "CREATE_TABLES": False})
    finally:
        if saved is None:
            del os.environ["GATEWAY_CONFIG"]
        else:
            os.environ["GATEWAY_CONFIG"] = saved
    yield app
    app.extensions["billing"].shutdown()
    with app.app_context():
        db.engine.dispose()


def user_key(app, name, plan=None, credits="1000") -> tuple[int, str]:
    """A user with credits and a key, on `plan` (the default, free, when None)."""
    user_id, key = make_user(app, name, credits=Decimal(credits))
    if plan:
        with app.app_context():
            db.session.get(User, user_id).plan = plan
            db.session.commit()
    return user_id, key


def post(url, key, body=BODY, **kw):
    return requests.post(f"{url}/v1/chat/completions", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {key}", "Connection": "close"}, **kw)


def test_rate_limit_is_exact_across_instances(fleet, books):
    a, b, upstream, _ = fleet
    _, key = user_key(books, "limited")  # the free plan: 10 chat requests a minute
    urls = itertools.cycle([a.url, b.url])
    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(lambda url: post(url, key).status_code,
                                 [next(urls) for _ in range(30)]))
    assert statuses.count(200) == 10 and statuses.count(429) == 20, statuses


def test_ledger_balances_after_a_mixed_burst_on_both(fleet, books, flaky):
    a, b, _, _ = fleet
    user_id, key = user_key(books, "burst", plan="enterprise", credits="20")
    flaky.push(*[Script(status=500) if i % 7 == 0 else Script(delay=0.02)
                    for i in range(80)])

    def one(i):
        url = (a.url, b.url)[i % 2]
        body = {**BODY, "model": "gpt-flaky", "stream": i % 3 == 0, "max_tokens": 500}
        resp = post(url, key, body, stream=True)
        if i % 5 == 0 and body["stream"]:
            resp.close()  # the client leaves mid-stream
            return "left"
        resp.content  # noqa: B018
        return resp.status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(pool.map(one, range(80)))
    flaky.scripts.clear()  # what requests refused with 402 left unused
    assert 200 in outcomes and 402 in outcomes  # some served, some out of credits
    deadline = time.monotonic() + 30
    with books.app_context():
        while db.session.scalar(select(func.count(Hold.id)).where(Hold.user_id == user_id)):
            assert time.monotonic() < deadline, "holds still open"
            time.sleep(0.2)
            db.session.rollback()
        assert ledger_gap(db.session, user_id) == Decimal(0)
        assert balance(db.session, user_id)[0] >= 0
        providers = set(db.session.scalars(select(UsageRecord.provider).distinct()
                                           .where(UsageRecord.user_id == user_id)))
        assert providers == {"flaky"}


def test_revoked_key_stops_on_both_within_the_ttl(fleet, books):
    a, b, _, _ = fleet
    user_id, key = user_key(books, "revokee", plan="enterprise")
    for url in (a.url, b.url, a.url, b.url):
        assert post(url, key).status_code == 200  # cached in the workers that served it
    with books.app_context():
        key_id = db.session.scalar(select(ApiKey.id).where(ApiKey.user_id == user_id))
        assert revoke_key(db.session, key_id)
    revoked_at = time.monotonic()
    time.sleep(KEY_TTL + 0.5)
    statuses = [post(url, key).status_code for url in (a.url, b.url) * 4]
    assert statuses == [401] * 8, statuses
    assert time.monotonic() - revoked_at < KEY_TTL + 5


def test_a_breaker_opened_by_one_instance_is_seen_by_the_other(fleet, books):
    a, b, _, dead = fleet
    _, key = user_key(books, "breaker", plan="enterprise")
    body = {**BODY, "model": "gpt-dead"}
    assert [post(a.url, key, body).status_code for _ in range(2)] == [502, 502]
    assert dead.connections == 2  # two failures through instance A: the breaker opens
    for _ in range(6):
        resp = post(b.url, key, body)
        assert resp.status_code == 503, resp.text
        assert resp.json()["error"]["code"] == "no_healthy_upstream"
        assert resp.headers["x-tollgate-attempts"] == "0"
        assert 50 <= int(resp.headers["Retry-After"]) <= 60
    assert dead.connections == 2  # instance B never tried it
