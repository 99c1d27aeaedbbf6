"""services.billing on its own, against a real database (SQLite, and PostgreSQL when configured):
reserve, settle, release, the sweep, and exact amounts. No app and no HTTP."""

import logging
import os
import tempfile
import threading
import time
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, event, select, text, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

import models  # noqa: F401  (registers the tables)
from errors import InsufficientCredits
from extensions import db
from models import Account, Hold, UsageRecord, User, utcnow
from services.billing import Billing, Charge, balance, grant, ledger_gap
from services.pricing import Pricing
from translation.ir import Usage

PRICING = {"default": {"input": 1, "output": 3, "minimum": 0},
           "models": {"exact": {"input": "0.001", "output": "0.002", "minimum": 0}}}


@pytest.fixture
def engine(database_url):
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://", 1))
    db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    yield engine
    db.metadata.drop_all(engine)
    engine.dispose()


@pytest.fixture
def billing(engine):
    service = Billing(engine, Pricing(PRICING), hold_ttl=60)
    yield service
    service.shutdown()


def user_with(engine, credits) -> SimpleNamespace:
    with Session(engine) as session:
        user = User(name=f"u{credits}-{id(session)}")
        session.add(user)
        session.commit()
        grant(session, user.id, Decimal(credits), "test")
        return SimpleNamespace(user_id=user.id, key_id=1)


def books(engine, caller):
    with Session(engine) as session:
        bal, _ = balance(session, caller.user_id)
        records = session.scalars(select(UsageRecord)
                                  .where(UsageRecord.user_id == caller.user_id)).all()
        holds = session.scalars(select(Hold).where(Hold.user_id == caller.user_id)).all()
        return bal, records, holds, ledger_gap(session, caller.user_id)


def test_reserve_holds_the_most_the_request_can_cost(engine, billing):
    caller = user_with(engine, 10)
    ticket = billing.reserve(caller, "m", prompt_tokens=1000, max_output=1000)
    assert ticket.amount == Decimal(4)  # 1 per 1k in, 3 per 1k out
    assert ticket.price == billing.pricing.for_model("m")
    bal, records, holds, gap = books(engine, caller)
    assert (bal, records, [h.amount for h in holds], gap) == (Decimal(6), [], [Decimal(4)], 0)


def test_reserve_refuses_what_the_balance_cannot_cover(engine, billing):
    caller = user_with(engine, 3)
    with pytest.raises(InsufficientCredits) as info:
        billing.reserve(caller, "m", prompt_tokens=1000, max_output=1000)
    assert info.value.status == 402
    assert books(engine, caller)[:3] == (Decimal(3), [], [])


def test_settle_charges_the_real_cost_and_returns_the_rest(engine, billing):
    caller = user_with(engine, 10)
    ticket = billing.reserve(caller, "m", 1000, 1000)
    cost = billing.charge(ticket, Usage(input=500, output=100), estimated=True, partial=True)
    assert cost == Decimal("0.8")
    assert billing.flush()
    bal, records, holds, gap = books(engine, caller)
    assert (bal, holds, gap) == (Decimal("9.2"), [], 0)
    [record] = records
    assert (record.price, record.input_tokens, record.output_tokens) == (Decimal("0.8"), 500, 100)
    assert (record.estimated, record.partial, record.model) == (True, True, "m")


def test_release_gives_the_whole_hold_back_and_writes_no_record(engine, billing):
    caller = user_with(engine, 10)
    billing.release(billing.reserve(caller, "m", 1000, 1000))
    assert billing.flush()
    assert books(engine, caller) == (Decimal(10), [], [], 0)


def test_a_cost_above_the_hold_never_takes_the_balance_below_zero(engine, billing):
    caller = user_with(engine, 5)
    ticket = billing.reserve(caller, "m", 1000, 1000)  # holds 4 of 5
    billing.charge(ticket, Usage(input=10_000, output=0))  # costs 10: only 5 exist
    assert billing.flush()
    bal, [record], holds, gap = books(engine, caller)
    assert (bal, record.price, holds, gap) == (Decimal(0), Decimal(5), [], 0)


def test_sweep_releases_stale_holds_only(engine, billing):
    caller = user_with(engine, 10)
    stale = billing.reserve(caller, "m", 1000, 1000)
    billing.reserve(caller, "m", 1000, 1000)
    with engine.begin() as conn:
        conn.execute(update(Hold).where(Hold.id == stale.hold_id)
                     .values(created_at=utcnow() - timedelta(seconds=120)))
    assert billing.sweep() == 1
    bal, _, holds, gap = books(engine, caller)
    assert (bal, len(holds), gap) == (Decimal(6), 1, 0)
    billing.charge(stale, Usage(input=1000))  # settled after its sweep: from the balance alone
    assert billing.flush()
    bal, [record], _, gap = books(engine, caller)
    assert (bal, record.price, gap) == (Decimal(5), Decimal(1), 0)


def test_amounts_are_exact_over_many_small_charges(engine, billing):
    caller = user_with(engine, 1)
    for _ in range(300):
        ticket = billing.reserve(caller, "exact", prompt_tokens=1, max_output=1)
        billing.charge(ticket, Usage(input=1, output=1))  # 0.000003 each, exactly
    assert billing.flush()
    bal, records, holds, gap = books(engine, caller)
    assert bal == Decimal(1) - 300 * Decimal("0.000003") and len(records) == 300
    assert (holds, gap) == ([], 0)


def test_concurrent_holds_never_overdraw(engine, billing):
    caller = user_with(engine, 40)  # room for exactly ten holds of 4
    outcomes = []

    def take():
        try:
            outcomes.append(billing.reserve(caller, "m", 1000, 1000))
        except InsufficientCredits:
            outcomes.append(None)

    threads = [threading.Thread(target=take) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(t is not None for t in outcomes) == 10
    assert books(engine, caller)[0] == Decimal(0)


def test_a_burst_of_charges_is_written_whole(engine, billing):
    """Charges queued at once are settled in batches: every one of them is written."""
    caller = user_with(engine, 100)
    tickets = [billing.reserve(caller, "m", 100, 100) for _ in range(50)]
    for ticket in tickets:
        billing.charge(ticket, Usage(input=100, output=100))
    assert billing.flush()
    bal, records, holds, gap = books(engine, caller)
    assert (bal, len(records), holds, gap) == (Decimal(80), 50, [], 0)


def test_charges_a_moment_apart_share_one_commit_within_the_gather_time(engine):
    """At low load each request's settlement would be a transaction of its own: a batch waits
    `gather_seconds` after its first charge, so charges a few ms apart commit together. On
    PostgreSQL the batch is one statement outside a transaction (no commit through SQLAlchemy),
    which writes every record with one time."""
    billing = Billing(engine, Pricing(PRICING), hold_ttl=60, gather_seconds=0.5)
    commits = []
    event.listen(engine, "commit", lambda conn: commits.append(1))
    try:
        caller = user_with(engine, 100)
        tickets = [billing.reserve(caller, "m", 100, 100) for _ in range(3)]
        commits.clear()
        for ticket in tickets:
            billing.charge(ticket, Usage(input=100, output=100))
            time.sleep(0.02)
        assert billing.flush()
        bal, records, holds, gap = books(engine, caller)
        assert (len(records), holds, gap) == (3, [], 0)
        if engine.dialect.name == "postgresql":
            assert (len(commits), len({r.created_at for r in records})) == (0, 1)
        else:
            assert len(commits) == 1
    finally:
        billing.shutdown()


def counting_statements(engine):
    """The statements the engine sends, as the driver gets them (a real listener, no mock)."""
    sent = []
    event.listen(engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_rest: sent.append(statement))
    return sent


@contextmanager
def while_checked_out(engine, attach, detach):
    """attach(driver connection) at each checkout from the engine's pool, detach at checkin."""
    def on_checkout(driver, _record, _proxy):
        attach(driver)

    def on_checkin(driver, _record):
        detach(driver)

    event.listen(engine, "checkout", on_checkout)
    event.listen(engine, "checkin", on_checkin)
    try:
        yield
    finally:
        event.remove(engine, "checkout", on_checkout)
        event.remove(engine, "checkin", on_checkin)


@contextmanager
def wire_trace(engine):
    """What psycopg sends PostgreSQL on the engine's connections, message by message (libpq's
    own protocol trace, attached at checkout): the hold goes to the driver connection itself,
    past SQLAlchemy's statement events."""
    import psycopg
    trace, messages = tempfile.TemporaryFile(), []

    def attach(driver):
        driver.pgconn.trace(trace.fileno())
        driver.pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)

    try:
        with while_checked_out(engine, attach, lambda driver: driver.pgconn.untrace()):
            yield messages
    finally:
        trace.seek(0)
        messages += [line for line in trace.read().decode().splitlines() if line.strip()]
        trace.close()


@contextmanager
def sqlite_trace(engine):
    """What sqlite3 runs on the engine's connections, statement by statement (the driver's own
    trace callback, attached at checkout): the hold goes to the driver connection itself."""
    ran = []
    with while_checked_out(engine, lambda driver: driver.set_trace_callback(ran.append),
                           lambda driver: driver.set_trace_callback(None)):
        yield ran


def test_a_hold_is_one_statement_on_postgresql(engine, billing, backend):
    caller = user_with(engine, 10)
    if backend == "postgresql":
        with wire_trace(engine) as messages:
            billing.reserve(caller, "m", 1000, 1000)
            with pytest.raises(InsufficientCredits):
                billing.reserve(caller, "m", 10_000, 10_000)
        sent = [line.split("\t")[2].strip() for line in messages if line.startswith("F\t")]
        # each hold one statement in one round trip (extended protocol: Parse .. Sync), with no
        # BEGIN or COMMIT around it (they would be Query messages)
        assert sent.count("Execute") == 2 and sent.count("Sync") == 2
        assert "Query" not in sent
        pooled = engine.raw_connection()  # and the connection went back to the pool as it was
        try:
            assert pooled.driver_connection.autocommit is False
        finally:
            pooled.close()
    else:
        with sqlite_trace(engine) as sent:
            billing.reserve(caller, "m", 1000, 1000)
            with pytest.raises(InsufficientCredits):
                billing.reserve(caller, "m", 10_000, 10_000)
        # one transaction each (sqlite3 begins it before the UPDATE): taken and held, committed;
        # refused, rolled back
        assert [line.split()[0] for line in sent] == [
            "BEGIN", "UPDATE", "INSERT", "COMMIT", "BEGIN", "UPDATE", "ROLLBACK"]
    bal, _, [hold], gap = books(engine, caller)
    assert (bal, hold.amount, gap) == (Decimal(6), Decimal(4), 0)
    assert abs(hold.created_at - utcnow()) < timedelta(seconds=5)  # stored as SQLAlchemy would


def test_one_batch_of_every_kind_of_charge(engine, billing, backend):
    """Charges, releases, a cost above its hold, a hold the sweep released, a charge queued
    twice and two users in one batch: one statement on PostgreSQL for the common ones (three on
    SQLite), the per-charge path for the rest, and the books exact."""
    rich, poor = user_with(engine, 100), user_with(engine, 5)
    m = billing.pricing.for_model("m")
    charged = [billing.reserve(rich, "m", 1000, 1000) for _ in range(4)]  # 4 held each
    released = billing.reserve(rich, "m", 1000, 1000)
    above = billing.reserve(poor, "m", 1000, 1000)  # 4 of 5 held; costs 10: takes the last 1
    swept = billing.reserve(rich, "m", 1000, 1000)
    with engine.begin() as conn:
        conn.execute(update(Hold).where(Hold.id == swept.hold_id)
                     .values(created_at=utcnow() - timedelta(seconds=120)))
    assert billing.sweep() == 1  # its 4 are back; settled now, it is charged from the balance
    usage = Usage(input=500, output=100)  # 0.8
    batch = [Charge(t, usage, m.cost(usage)) for t in charged]
    batch += [batch[0], Charge(released, None, Decimal(0)),
              Charge(above, Usage(input=10_000), m.cost(Usage(input=10_000))),
              Charge(swept, usage, m.cost(usage))]
    sent = counting_statements(engine)
    if backend == "postgresql":
        with wire_trace(engine) as messages:
            billing._settle_with_retry(batch)  # as the settlement worker writes a batch
        kinds = [line.split("\t")[2].strip() for line in messages if line.startswith("F\t")]
        first = "\n".join(messages).split("\tSync", 1)[0]  # up to the first round trip's end
        # the set first, to psycopg itself: one statement in one round trip (Parse .. Sync)
        # with no BEGIN before it; then, through SQLAlchemy, for the duplicate, the one above
        # its hold and the swept one, their statements one by one in a transaction (20
        # statements without the set)
        assert kinds[:kinds.index("Sync")] == ["Parse", "Bind", "Describe", "Execute"]
        assert "unnest" in first and "BEGIN" not in first
        assert "unnest" not in " ".join(sent) and len(sent) == 10
        assert sent[0].startswith("DELETE FROM holds")
    else:
        billing._settle_with_retry(batch)
        # the set in three statements (the holds dropped, the refunds, the records), the rest
        # as on PostgreSQL
        assert sent[0].startswith("DELETE FROM holds") and "RETURNING" in sent[0]
        assert sent[1].startswith("UPDATE accounts") and sent[2].startswith("INSERT INTO usage")
        assert len(sent) == 13
    assert billing.set_aside == 0
    bal, records, holds, gap = books(engine, rich)
    assert (bal, len(records), holds, gap) == (Decimal(100) - 5 * Decimal("0.8"), 5, [], 0)
    assert sorted(r.request_id for r in records) == sorted(
        t.request_id for t in [*charged, swept])
    bal, [record], holds, gap = books(engine, poor)
    assert (bal, record.price, holds, gap) == (Decimal(0), Decimal(5), [], 0)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_connection_the_server_dropped_is_replaced(engine, billing, backend):
    """No pre-ping: a pooled connection PostgreSQL closed fails its hold, which is tried once
    more on a fresh connection; the request never sees it."""
    caller = user_with(engine, 10)
    billing.reserve(caller, "m", 1000, 1000)  # leaves a connection in the pool
    other = create_engine(engine.url, poolclass=NullPool)  # not one of the pool's connections
    with other.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        admin.commit()
    other.dispose()
    billing.reserve(caller, "m", 1000, 1000)
    bal, _, holds, gap = books(engine, caller)
    assert (bal, len(holds), gap) == (Decimal(2), 2, 0)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_settlement_on_a_dropped_connection_is_written_once(engine, billing, backend, caplog):
    """The settlement's one statement meets a pooled connection PostgreSQL closed: it is sent
    once more on a fresh one, at once (not the outage back-off), and written once."""
    caller = user_with(engine, 10)
    tickets = [billing.reserve(caller, "m", 1000, 1000) for _ in range(2)]
    other = create_engine(engine.url, poolclass=NullPool)
    with other.connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        admin.commit()
    other.dispose()
    usage = Usage(input=500, output=100)  # 0.8 each
    with caplog.at_level(logging.WARNING, logger="services.billing"):
        billing._settle_with_retry([Charge(t, usage, Decimal("0.8")) for t in tickets])
    assert "retrying" not in caplog.text and billing.set_aside == 0
    bal, records, holds, gap = books(engine, caller)
    assert (bal, len(records), holds, gap) == (Decimal("8.4"), 2, [], 0)


def test_a_forked_process_settles_its_own_charges(engine, billing):
    """The settler is a thread of the process that started it: a forked child (a worker) starts
    its own at its first charge, and its charges are written."""
    caller = user_with(engine, 100)
    usage = Usage(input=500, output=100)
    billing.charge(billing.reserve(caller, "m", 1000, 1000), usage)
    assert billing.flush()  # this process's settler runs
    pid = os.fork()
    if pid == 0:  # the child: only os._exit leaves it, with what it found as the exit code
        code = 1
        try:
            engine.dispose(close=False)  # the parent's connections stay the parent's
            billing.charge(billing.reserve(caller, "m", 1000, 1000), usage)
            code = 0 if billing.flush(timeout=10) else 2
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    _, records, holds, gap = books(engine, caller)
    assert (len(records), holds, gap) == (2, [], 0)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_hold_alone_commits_without_waiting_for_the_disk(engine, billing, backend):
    """The hold's statement turns synchronous_commit off for its own transaction only: inside
    it the setting is off, and the pooled connection it ran on is back to on (settlements and
    everything else on it wait for the flush)."""
    import psycopg

    from services.billing import PG_RESERVE
    caller = user_with(engine, 10)
    url = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(url) as conn:  # a transaction of its own, to look inside
        params = {"account": caller.user_id, "amount": Decimal(1), "created_at": utcnow()}
        assert conn.execute(PG_RESERVE, params).fetchone()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("off",)
        conn.rollback()
        assert conn.execute("SHOW synchronous_commit").fetchone() == ("on",)
    billing.reserve(caller, "m", 1000, 1000)
    idle = engine.pool.checkedin()  # the hold's connection among them
    pooled = [engine.raw_connection() for _ in range(idle)]
    try:
        assert idle >= 1 and [c.driver_connection.execute("SHOW synchronous_commit").fetchone()
                              for c in pooled] == [("on",)] * idle
    finally:
        for c in pooled:
            c.close()
    bal, _, holds, gap = books(engine, caller)
    assert (bal, len(holds), gap) == (Decimal(6), 1, 0)


@pytest.mark.parametrize("same_user", [False, True])
def test_a_settlement_drops_no_hold_but_its_own(engine, billing, same_user):
    """A database crash may lose a hold committed a moment before and hand its id out again:
    the lost hold's settlement leaves the new hold of that id alone unless it is the same
    user's for the same amount, and either way every charge is taken once and the books of
    both users balance."""
    from services.billing import Ticket
    first = user_with(engine, 100)
    second = first if same_user else user_with(engine, 50)
    m = billing.pricing.for_model("m")
    lost = billing.reserve(first, "m", 1000, 1000)  # holds 4
    with engine.begin() as conn:  # the crash: the hold and its balance change gone together
        conn.execute(Hold.__table__.delete().where(Hold.id == lost.hold_id))
        conn.execute(update(Account).where(Account.user_id == first.user_id)
                     .values(balance=Account.balance + lost.amount))
        held = lost.amount if same_user else Decimal(3)
        conn.execute(Hold.__table__.insert().values(id=lost.hold_id, user_id=second.user_id,
                                                    amount=held, created_at=utcnow()))
        conn.execute(update(Account).where(Account.user_id == second.user_id)
                     .values(balance=Account.balance - held))
    other = Ticket(lost.hold_id, held, second.user_id, second.key_id, "m", m, 1000, "other-req")
    usage = Usage(input=500, output=100)  # 0.8
    billing._settle_with_retry([Charge(lost, usage, m.cost(usage))])
    if not same_user:  # the other user's hold is untouched, the first charged from its balance
        bal, records, holds, gap = books(engine, second)
        assert (bal, records, [h.id for h in holds], gap) == (Decimal(47), [], [lost.hold_id], 0)
        bal, records, holds, gap = books(engine, first)
        assert (bal, [r.price for r in records], holds, gap) == (
            Decimal("99.2"), [Decimal("0.8")], [], 0)
    billing._settle_with_retry([Charge(other, usage, m.cost(usage))])
    start = Decimal(100) if same_user else Decimal(50)
    bal, records, holds, gap = books(engine, second)
    charged = Decimal("1.6") if same_user else Decimal("0.8")
    assert (bal, sum(r.price for r in records), holds, gap) == (start - charged, charged, [], 0)
    assert billing.set_aside == 0
