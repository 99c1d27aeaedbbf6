"""Settlement survives a charge the database refuses: the others in its batch are written, the
refused one is set aside with its hold kept, and a database that is away is still waited for."""

import logging
import os
import threading
import time
from decimal import Decimal

import pytest
import requests
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

from extensions import db
from models import Account, Hold, UsageRecord, User
from services.billing import Billing, Charge, is_outage, ledger_gap
from services.keys import Caller
from services.pricing import Pricing
from tests.conftest import make_user, provider_entry
from translation.ir import Usage

POISON = "gpt-refused"  # the database driver refuses any statement carrying this value
PRICING = {"models": {"gpt-test": {"input": 1, "output": 1, "max_output_tokens": 1000},
                      POISON: {"input": 1, "output": 1, "max_output_tokens": 1000}}}


@pytest.fixture
def settings(upstream):
    return {"STORAGE_REFUSE_VALUE": POISON, "PRICING": PRICING, "RATELIMIT_ENABLED": False,
            "PROVIDERS": [provider_entry(upstream, models=("gpt-test", POISON))]}


def books(app, user_id):
    with app.app_context():
        records = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id)
                                     .order_by(UsageRecord.id)).all()
        holds = db.session.scalars(select(Hold).where(Hold.user_id == user_id)).all()
        return records, holds, ledger_gap(db.session, user_id)


def queue_in_one_batch(billing, charges):
    """Queue charges so the settle worker (not yet started) takes them as one batch."""
    for charge in charges[:-1]:
        billing.queue.put_nowait(charge)
    last = charges[-1]
    billing.charge(last.ticket, last.usage)


def test_refused_charge_does_not_stop_the_batch(app, caplog):
    user_id, _ = make_user(app, credits=Decimal(100))
    billing = app.extensions["billing"]
    caller = Caller(key_id=1, user_id=user_id, user_name="alice")
    tickets = [billing.reserve(caller, POISON if i == 2 else "gpt-test", 10, 10)
               for i in range(5)]
    usage = Usage(input=10, output=20)
    with caplog.at_level(logging.WARNING, logger="services.billing"):
        queue_in_one_batch(billing, [Charge(t, usage, t.price.cost(usage)) for t in tickets])
        assert billing.flush(timeout=10), "settlement is stuck"
    records, holds, gap = books(app, user_id)
    assert [r.model for r in records] == ["gpt-test"] * 4
    assert [h.id for h in holds] == [tickets[2].hold_id]  # kept for the sweep or an operator
    assert gap == 0 and billing.set_aside == 1
    assert "one by one" in caplog.text
    set_aside = [r.getMessage() for r in caplog.records if "set aside" in r.getMessage()]
    assert len(set_aside) == 1 and tickets[2].request_id in set_aside[0]
    # settlement goes on for everyone afterwards
    later = billing.reserve(caller, "gpt-test", 10, 10)
    billing.charge(later, usage)
    assert billing.flush(timeout=10)
    records, holds, gap = books(app, user_id)
    assert len(records) == 5 and len(holds) == 1 and gap == 0


def test_refused_charge_through_the_api(app, gateway, upstream, caplog):
    """A request whose charge can never be written does not stop anyone else's billing."""
    user_id, key = make_user(app, credits=Decimal(100))
    headers = {"Authorization": f"Bearer {key}"}

    def ask(model, stream=False):
        return requests.post(f"{gateway}/v1/chat/completions", headers=headers, timeout=15,
                             json={"model": model, "stream": stream,
                                   "messages": [{"role": "user", "content": "hi"}]})

    refused = [ask(POISON), ask(POISON, stream=True)]
    assert [r.status_code for r in refused] == [200, 200]
    request_ids = [r.headers["x-request-id"] for r in refused]
    for stream in (False, True, False):
        assert ask("gpt-test", stream).status_code == 200
    billing = app.extensions["billing"]
    assert billing.flush(timeout=10)
    records, holds, gap = books(app, user_id)
    assert [r.model for r in records] == ["gpt-test"] * 3
    assert len(holds) == 2 and gap == 0 and billing.set_aside == 2
    logged = " ".join(r.getMessage() for r in caplog.records if "set aside" in r.getMessage())
    assert all(request_id in logged for request_id in request_ids)
    # the sweep releases what was set aside once the hold is old; the books still balance
    billing.hold_ttl = 0
    assert billing.sweep() == 2
    records, holds, gap = books(app, user_id)
    assert holds == [] and gap == 0


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
def test_postgresql_refusing_a_name_is_not_an_outage(app, backend):
    """Without the testing aid: names PostgreSQL itself cannot store, reaching settlement."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL refuses these; SQLite stores them")
    user_id, _ = make_user(app, credits=Decimal(100))
    billing = app.extensions["billing"]
    caller = Caller(key_id=1, user_id=user_id, user_name="alice")
    names = ["gpt-test", "nul\x00name", "gpt-test", "x" * 300, "lone\ud800", "gpt-test"]
    tickets = [billing.reserve(caller, "gpt-test", 10, 10) for _ in names]
    for ticket, name in zip(tickets, names, strict=True):
        ticket.model = name  # what an unchecked name would have become
    usage = Usage(input=10, output=20)
    queue_in_one_batch(billing, [Charge(t, usage, t.price.cost(usage)) for t in tickets])
    assert billing.flush(timeout=10), "settlement is stuck"
    records, holds, gap = books(app, user_id)
    assert len(records) == 3 and len(holds) == 3 and gap == 0 and billing.set_aside == 3


def test_database_away_is_waited_for(tmp_path):
    """An outage is not a refused charge: the charges are kept and written once it is back."""
    home, away = tmp_path / "db", tmp_path / "db-away"
    home.mkdir()
    engine = create_engine(f"sqlite:///{home}/ledger.db")
    db.metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(User).values(id=1, name="alice"))
        conn.execute(insert(Account).values(user_id=1, balance=Decimal(100),
                                            credited=Decimal(100)))
    billing = Billing(engine, Pricing(PRICING))
    caller = Caller(key_id=1, user_id=1, user_name="alice")
    tickets = [billing.reserve(caller, "gpt-test", 10, 10) for _ in range(3)]
    home.rename(away)  # the database is gone: new connections fail
    engine.dispose()
    try:
        for ticket in tickets:
            billing.charge(ticket, Usage(input=10, output=20))
        time.sleep(0.5)
        assert billing.queue.unfinished_tasks == 3 and billing.set_aside == 0
    finally:
        away.rename(home)
    assert billing.flush(timeout=15)
    with Session(engine) as session:
        assert len(session.scalars(select(UsageRecord)).all()) == 3
        assert session.scalars(select(Hold)).all() == [] and ledger_gap(session, 1) == 0
    billing.shutdown()
    engine.dispose()


def test_outages_and_refusals_are_told_apart(tmp_path):
    from sqlalchemy.exc import IntegrityError, OperationalError
    down = create_engine(f"sqlite:///{tmp_path}/missing/dir/x.db")
    with pytest.raises(OperationalError) as outage:
        down.connect()
    assert is_outage(outage.value)
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    db.metadata.create_all(engine)
    with pytest.raises(IntegrityError) as refused, engine.begin() as conn:
        conn.execute(insert(Hold).values(user_id=None, amount=Decimal(1)))
    assert not is_outage(refused.value)
    assert not is_outage(UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogates not allowed"))


def test_a_retried_settlement_is_written_once(app):
    """A settlement retried after its commit went through (the answer lost with the connection)
    finds its record and changes nothing: one record, one charge."""
    user_id, _ = make_user(app, credits=Decimal(100))
    billing = app.extensions["billing"]
    caller = Caller(key_id=1, user_id=user_id, user_name="alice")
    ticket = billing.reserve(caller, "gpt-test", 10, 10)
    usage = Usage(input=1000, output=1000)
    cost = billing.charge(ticket, usage)
    assert billing.flush()
    billing.charge(ticket, usage)  # the same settlement again
    queue_in_one_batch(billing, [Charge(ticket, usage, cost)] * 2)  # twice in one batch, too
    assert billing.flush(timeout=10)
    records, holds, gap = books(app, user_id)
    assert len(records) == 1 and records[0].request_id == ticket.request_id
    assert records[0].price == cost and holds == [] and gap == 0
    with app.app_context():
        from services.billing import balance
        assert balance(db.session, user_id)[0] == Decimal(100) - cost
    assert billing.set_aside == 0


def test_a_cost_above_the_hold_is_taken_once(app):
    """The upstream counted more than the hold allowed for: the excess comes from the balance,
    once, and never below zero."""
    from services.billing import balance
    user_id, _ = make_user(app, credits=Decimal(100))
    billing = app.extensions["billing"]
    caller = Caller(key_id=1, user_id=user_id, user_name="alice")
    ticket = billing.reserve(caller, "gpt-test", 10, 10)  # holds the minimum, 1 credit
    cost = billing.charge(ticket, Usage(input=5000, output=5000))  # 10 credits
    assert billing.flush()
    _, holds, gap = books(app, user_id)
    with app.app_context():
        assert balance(db.session, user_id)[0] == Decimal(100) - cost
    assert holds == [] and gap == 0
    poor = make_user(app, "poor", credits=Decimal(3))[0]
    ticket = billing.reserve(Caller(key_id=2, user_id=poor, user_name="poor"), "gpt-test", 10, 10)
    billing.charge(ticket, Usage(input=5000, output=5000))
    assert billing.flush()
    [record], holds, gap = books(app, poor)
    with app.app_context():
        assert balance(db.session, poor)[0] == 0 and record.price == Decimal(3) and gap == 0


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
def test_connections_postgresql_dropped_do_not_fail_requests(app, client, backend):
    """No pre-ping on checkout: after PostgreSQL closed every pooled connection (a restart, a
    failover), the key lookup and the hold meet a dead one, retry on a fresh one, and the
    request goes through, charged once."""
    if backend != "postgresql":
        pytest.skip("PostgreSQL only")
    user_id, key = make_user(app, credits=Decimal(100))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    headers = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    with app.app_context():
        url = db.engine.url
    other = create_engine(url, poolclass=NullPool)
    with other.connect() as admin:
        killed = admin.execute(text(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()")).scalar()
        admin.commit()
    other.dispose()
    assert killed >= 1
    app.extensions["keys"].forget()  # the key is looked up again, on a dead connection
    assert client.post("/v1/chat/completions", json=body, headers=headers).status_code == 200
    assert app.extensions["billing"].flush(timeout=10)
    records, holds, gap = books(app, user_id)
    assert len(records) == 2 and holds == [] and gap == 0


def test_open_streams_hold_no_database_connection(app, gateway, upstream):
    """While streams are open (their key looked up, their credits held), no pooled connection
    is checked out: holds and settlements never wait behind streams for one."""
    from tests.fake_upstream import Script
    user_id, key = make_user(app, credits=Decimal(100))
    hold = threading.Event()
    upstream.push(*[Script(content="first then the rest", hold=hold) for _ in range(3)])
    opened = [requests.post(f"{gateway}/v1/chat/completions", stream=True, timeout=10,
                            headers={"Authorization": f"Bearer {key}"},
                            json={"model": "gpt-test", "stream": True,
                                  "messages": [{"role": "user", "content": "hi"}]})
              for _ in range(3)]
    try:
        lines = [resp.iter_lines() for resp in opened]
        for resp, events in zip(opened, lines, strict=True):  # each stream has begun
            assert resp.status_code == 200 and next(line for line in events if line)
        with app.app_context():
            assert db.engine.pool.checkedout() == 0
        _, holds, _ = books(app, user_id)
        assert len(holds) == 3  # each stream's credits are held meanwhile
    finally:
        hold.set()
        rests = [[line for line in events if line] for events in lines]
        for resp in opened:
            resp.close()
    assert all(rest[-1] == b"data: [DONE]" for rest in rests)
    assert app.extensions["billing"].flush(timeout=10)
    records, holds, gap = books(app, user_id)
    assert len(records) == 3 and holds == [] and gap == 0
