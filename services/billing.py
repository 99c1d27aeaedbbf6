"""Credits: reserve before forwarding, settle after, one ledger row per charge.

A request first holds the most it can cost, with one conditional UPDATE, so a balance never
goes below zero however many requests run at once. When the request ends, its real cost is
charged and the rest released, in one transaction that also writes the usage record. That
settlement happens off the response path, in a background worker fed by a bounded queue, and
is flushed on shutdown. Holds left by a dead process are released by a sweep.
"""

import logging
import os
import queue
import re
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from functools import partial

import psycopg
from sqlalchemy import (
    DateTime,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    tuple_,
    type_coerce,
    update,
)
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.orm import sessionmaker

from errors import InsufficientCredits
from models import Account, Grant, Hold, UsageRecord, utcnow
from models.credits import MICRO, Credits
from services.names import REASON_MAX, check_text
from translation.ir import Usage

log = logging.getLogger(__name__)

# Statements built once: reserve and settle run for every request, and building the SQL
# expression each time would cost more than sending it.
_AMOUNT = bindparam("delta", type_=Credits)
TAKE = (update(Account)
        .where(Account.user_id == bindparam("account"), Account.balance >= _AMOUNT)
        .values(balance=Account.balance - _AMOUNT))
GIVE = (update(Account).where(Account.user_id == bindparam("account"))
        .values(balance=Account.balance + _AMOUNT))
HOLD = insert(Hold).returning(Hold.id)
DROP_HOLD = delete(Hold).where(Hold.id == bindparam("hold_id"),  # its ticket's (see PG_RESERVE)
                               Hold.user_id == bindparam("user_id"),
                               Hold.amount == bindparam("held", type_=Credits))
DROP_HOLDS = (delete(Hold).where(tuple_(Hold.id, Hold.user_id, Hold.amount)  # see PG_RESERVE
                                 .in_(bindparam("holds", expanding=True)))
              .returning(Hold.id))
RECORD = insert(UsageRecord)
RECORDED = select(UsageRecord.id).where(UsageRecord.request_id == bindparam("rid"))

CREDITS = Credits()  # the column type's own rule for an amount sent past SQLAlchemy

# PostgreSQL: the hold in one round trip. The conditional UPDATE and the hold's INSERT are one
# statement, run outside an explicit transaction (one statement is atomic on its own), so no
# BEGIN and COMMIT either. No row back: the balance could not cover the amount (402).
#
# Its commit does not wait for the WAL to reach the disk (synchronous_commit off for this
# statement's transaction alone, as SET LOCAL would; settlements and everything else stay
# synchronous). Waiting was most of a hold's time and of PostgreSQL's CPU per request, and the
# account's row stays locked until the commit returns, so every other hold on the account
# waited behind that flush too. What a database crash can then lose is only the holds of its
# last moments (PostgreSQL flushes within 3 x wal_writer_delay): each goes with its own balance
# change, so the books still balance, and the request's settlement, finding no hold, charges
# its cost from the balance as it does for a hold the sweep released. A lost hold's id may be
# handed out again after the crash, so a settlement drops a hold only when its user and amount
# match the ticket's too: a hold that matches is the same user's for the same amount, and either
# ticket's settlement dropping it gives that user the same books.
PG_RESERVE = """
WITH quick AS (SELECT set_config('synchronous_commit', 'off', true)),
taken AS (
    UPDATE accounts SET balance = balance - %(amount)s
    WHERE user_id = %(account)s AND balance >= %(amount)s AND EXISTS (SELECT FROM quick)
    RETURNING user_id)
INSERT INTO holds (user_id, amount, created_at)
SELECT user_id, %(amount)s, %(created_at)s FROM taken
RETURNING id"""

# SQLite: the hold's two statements as the sqlite3 driver gets them, in one transaction (the
# driver begins it before the UPDATE); no data-modifying CTE there to make them one.
SQLITE_TAKE = "UPDATE accounts SET balance = balance - ? WHERE user_id = ? AND balance >= ?"
SQLITE_HOLD = "INSERT INTO holds (user_id, amount, created_at) VALUES (?, ?, ?)"

# PostgreSQL: a batch of settlements in one statement, whatever its size (arrays, unnested, so
# the text is the same for every batch and the driver prepares it once). It drops the holds it
# finds, gives each account back what its holds held beyond their costs (summed per account:
# an UPDATE changes a row once), and writes the usage records. It answers the holds it dropped;
# a charge whose hold was not there (released by the sweep, or settled by an earlier attempt
# whose commit answer was lost) is left to the per-charge path. The text goes to psycopg itself
# (Billing._lone_statement: one round trip in autocommit, the per-charge rest in a transaction
# after it) and, as PG_SETTLE, through SQLAlchemy (settle(): one transaction for all).
PG_SETTLE_SQL = """
WITH batch AS (
    SELECT * FROM unnest(CAST(%(hold_ids)s AS integer[]), CAST(%(user_ids)s AS integer[]),
                         CAST(%(held)s AS numeric[]),
                         CAST(%(refunds)s AS numeric[]), CAST(%(billed)s AS boolean[]),
                         CAST(%(key_ids)s AS integer[]), CAST(%(models)s AS text[]),
                         CAST(%(providers)s AS text[]), CAST(%(inputs)s AS integer[]),
                         CAST(%(cache_reads)s AS integer[]), CAST(%(cache_writes)s AS integer[]),
                         CAST(%(outputs)s AS integer[]), CAST(%(images)s AS integer[]),
                         CAST(%(prices)s AS numeric[]),
                         CAST(%(estimated)s AS boolean[]), CAST(%(partial)s AS boolean[]),
                         CAST(%(request_ids)s AS text[]))
        AS b(hold_id, user_id, held, refund, billed, key_id, model, provider, input_tokens,
             cache_read_tokens, cache_write_tokens, output_tokens, images, price, estimated,
             partial, request_id)),
dropped AS (
    DELETE FROM holds USING batch
    WHERE holds.id = batch.hold_id AND holds.user_id = batch.user_id
          AND holds.amount = batch.held
    RETURNING holds.id),
settled AS (
    SELECT batch.* FROM batch JOIN dropped ON dropped.id = batch.hold_id),
refunded AS (
    UPDATE accounts SET balance = accounts.balance + back.refund
    FROM (SELECT user_id, sum(refund) AS refund FROM settled WHERE refund > 0
          GROUP BY user_id) AS back
    WHERE accounts.user_id = back.user_id),
recorded AS (
    INSERT INTO usage_records (user_id, key_id, model, provider, input_tokens,
                               cache_read_tokens, cache_write_tokens, output_tokens, images,
                               price, estimated, partial, created_at, request_id)
    SELECT user_id, key_id, model, provider, input_tokens, cache_read_tokens,
           cache_write_tokens, output_tokens, images, price, estimated, partial, %(created_at)s,
           request_id
    FROM settled WHERE billed)
SELECT id FROM dropped"""
PG_SETTLE = text(re.sub(r"%\((\w+)\)s", r":\1", PG_SETTLE_SQL)).bindparams(
    bindparam("created_at", type_=UsageRecord.created_at.type))


@dataclass
class Ticket:
    """A request's open hold, and who and what it is for."""

    hold_id: int
    amount: Decimal
    user_id: int
    key_id: int
    model: str
    price: object  # services.pricing.Price
    prompt_estimate: int  # our own count of the prompt's tokens, used when upstream gives none
    request_id: str = ""  # names the request in logs (a set-aside charge, say)
    provider: str = ""  # the provider that served the request, once one has


@dataclass
class Charge:
    """A settlement waiting to be written: what to charge for a ticket (usage None: release)."""

    ticket: Ticket
    usage: object  # translation.ir.Usage or None
    cost: Decimal
    estimated: bool = False
    partial: bool = False


class Billing:
    def __init__(self, engine, pricing, *, queue_size=10_000, hold_ttl=3600.0,
                 sweep_every=60.0, gather_seconds=0.0):
        self.engine = engine
        # how long a batch waits for more charges after its first: at low load, fewer
        # transactions (each batch is one commit); the charges are no later than that
        self.gather_seconds = gather_seconds
        self.postgres = engine.dialect.name == "postgresql"
        # the hold and the settlement's set statement go to psycopg 3 itself (the driver
        # config.py picks): Billing._lone_statement
        self.psycopg_direct = self.postgres and engine.dialect.driver == "psycopg"
        self.sqlite_hold = engine.dialect.name == "sqlite" and engine.dialect.driver == "pysqlite"
        # a time as SQLAlchemy stores it in SQLite: its text format
        dialect = engine.dialect
        self._sqlite_time = (DateTime().dialect_impl(dialect).bind_processor(dialect)
                             if self.sqlite_hold else None)
        self.session_factory = sessionmaker(bind=engine, expire_on_commit=False)
        self.pricing = pricing
        self.hold_ttl = hold_ttl
        self.sweep_every = sweep_every
        self.queue = queue.Queue(maxsize=queue_size)
        self._worker = None
        self._running_in = None  # the process whose settler thread runs
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.set_aside = 0  # charges the database refused, kept for an operator (see _set_aside)

    # ---- on the request path -------------------------------------------------------------
    def reserve(self, caller, model: str, prompt_tokens: int, max_output: int,
                price=None, request_id: str = "", images: int = 0) -> Ticket:
        """Hold the most this request can cost; raises InsufficientCredits (402) when it can't.

        `price` is the model's (services.pricing.Price) when the caller looked it up already;
        the ticket carries it to the settlement. `images`: the most images it may return.
        """
        price = price or self.pricing.for_model(model)
        amount = price.cost(Usage(input=prompt_tokens, output=max_output, images=images))
        if self.psycopg_direct:
            hold_id = self._hold_pg(caller.user_id, amount)
        elif self.sqlite_hold:
            hold_id = self._hold_sqlite(caller.user_id, amount)
        else:
            hold_id = self._hold(caller.user_id, amount)
        if hold_id is None:
            raise InsufficientCredits(
                f"Insufficient credits: this request may cost up to {amount} credits. "
                "Top up, or lower max_tokens.", headers={"x-should-retry": "false"})
        return Ticket(hold_id, amount, caller.user_id, caller.key_id, model, price, prompt_tokens,
                      request_id or uuid.uuid4().hex)

    def _hold(self, user_id: int, amount: Decimal) -> int | None:
        """The hold's id, or None when the balance can't cover it (a driver other than psycopg 3
        and sqlite3: two statements through SQLAlchemy)."""
        # Core statements on a plain connection: this is on every request's path, and the ORM
        # session's bookkeeping would cost more than the two statements themselves.
        with self.engine.begin() as conn:
            if not conn.execute(TAKE, {"account": user_id, "delta": amount}).rowcount:
                conn.rollback()
                return None
            return conn.execute(HOLD, {"user_id": user_id, "amount": amount,
                                       "created_at": utcnow()}).scalar_one()

    def _hold_sqlite(self, user_id: int, amount: Decimal) -> int | None:
        """SQLite: the two statements on the pooled sqlite3 connection itself, committed
        together; SQLAlchemy's execution machinery cost more CPU than they do (see _hold_pg).
        Values go in as SQLAlchemy would store them: the Credits column's integer micro-credits
        and its DateTime text. Driver errors are raised as SQLAlchemy's (503 upstream); the pool
        rolls back what a failed hold began when the connection goes back."""
        credits = CREDITS.process_bind_param(amount, self.engine.dialect)
        created = self._sqlite_time(utcnow())
        pooled = self.engine.raw_connection()  # SQLAlchemy's errors (pool timeout)
        try:
            cursor = pooled.driver_connection.cursor()
            try:
                cursor.execute(SQLITE_TAKE, (credits, user_id, credits))
                if not cursor.rowcount:
                    pooled.driver_connection.rollback()
                    return None
                cursor.execute(SQLITE_HOLD, (user_id, credits, created))
                hold_id = cursor.lastrowid
                pooled.driver_connection.commit()
                return hold_id
            finally:
                cursor.close()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(SQLITE_HOLD, None, exc, sqlite3.Error) from exc
        finally:
            pooled.close()

    def _hold_pg(self, user_id: int, amount: Decimal) -> int | None:
        """PostgreSQL: one statement, one round trip (see _lone_statement)."""
        rows = self._lone_statement(PG_RESERVE, {
            "account": user_id, "created_at": utcnow(),
            "amount": CREDITS.process_bind_param(amount, self.engine.dialect)})
        return rows[0][0] if rows else None

    def _lone_statement(self, statement: str, params: dict) -> list[tuple]:
        """One statement that is atomic on its own, sent on the pooled psycopg connection
        itself in autocommit: one round trip, no BEGIN and COMMIT, and none of SQLAlchemy's
        execution machinery (a Connection, its isolation level set and reset, an execution
        context, a result), which cost more CPU than the statement (about 0.25 against 0.1 ms a
        hold). psycopg prepares the statement after its first uses. Returns its rows.

        A pooled connection the server dropped (no pre-ping checks them out) fails the
        statement, which is tried once more on a fresh connection; the pool has then discarded
        the connections as old as it. Should the server have run it before the connection broke,
        its answer was lost: a hold that is nobody's is released by the sweep after hold_ttl (the
        credits are reserved a while, never lost); a settlement's retry finds its holds gone and
        its records written (see _settle_each_charge). Driver errors are raised as SQLAlchemy's
        (503 on the request path, an outage to the settler)."""
        for attempt in (1, 2):
            pooled = self.engine.raw_connection()  # SQLAlchemy's errors (pool timeout, connect)
            try:
                driver = pooled.driver_connection
                driver.autocommit = True
                try:
                    return driver.execute(statement, params).fetchall()
                finally:
                    if not driver.closed:
                        driver.autocommit = False  # the pool's other users expect transactions
            except psycopg.Error as exc:
                dropped = pooled.driver_connection.broken or pooled.driver_connection.closed
                if dropped:
                    pooled.invalidate(exc)
                if attempt == 2 or not dropped:
                    raise DBAPIError.instance(statement, params, exc, psycopg.Error,
                                              connection_invalidated=dropped) from exc
            finally:
                pooled.close()
        return []  # not reached

    def charge(self, ticket: Ticket, usage, *, estimated=False, partial=False) -> Decimal:
        """Queue the settlement of a finished request; returns its cost. No database wait."""
        cost = ticket.price.cost(usage)
        self._submit(Charge(ticket, usage, cost, estimated, partial))
        return cost

    def release(self, ticket: Ticket):
        """Queue the release of a hold whose request produced nothing billable."""
        self._submit(Charge(ticket, None, Decimal(0)))

    def _submit(self, item: Charge):
        self._ensure_worker()
        if self._stopping.is_set():
            self._settle_with_retry([item])
            return
        try:
            self.queue.put_nowait(item)
        except queue.Full:  # back-pressure instead of loss: settle on the caller's time
            log.warning("settlement queue full; settling inline")
            self._settle_with_retry([item])

    # ---- off the request path ------------------------------------------------------------
    def _ensure_worker(self):
        if self._stopping.is_set():
            return  # shut down: _submit's caller is the last one, settle_batch runs inline
        if self._running_in == os.getpid():  # per request: no look at the thread itself
            return
        with self._lock:  # none yet, the last one ended, or a forked child (no thread there)
            if self._running_in != os.getpid():
                self._running_in = os.getpid()
                self._worker = threading.Thread(target=self._run, name="settler", daemon=True)
                self._worker.start()

    def _run(self):
        try:
            self._settle_until_stopped()
        finally:
            self._running_in = None  # the next charge starts another

    def _settle_until_stopped(self):
        last_sweep = time.monotonic()
        while not self._stopping.is_set():
            try:
                first = self.queue.get(timeout=1.0)
            except queue.Empty:
                first = None
            batch = [first] if first is not None else []
            gather_until = time.monotonic() + self.gather_seconds
            while first is not None and len(batch) < 200:
                left = gather_until - time.monotonic()
                try:
                    batch.append(self.queue.get(timeout=left) if left > 0
                                 else self.queue.get_nowait())
                except queue.Empty:
                    break
            if batch:
                self._settle_with_retry(batch)
                for _ in batch:
                    self.queue.task_done()
            if time.monotonic() - last_sweep > self.sweep_every:
                last_sweep = time.monotonic()
                self._sweep_safely()

    def _settle_with_retry(self, batch):
        """Write a batch of charges. A database that is away is waited for (the batch is kept
        and retried with back-off); a batch the database refuses is written charge by charge,
        so one charge it can never store does not hold back the others."""
        delay = 0.1
        while batch:
            try:
                self._settle_batch(batch)
                return
            except Exception as exc:
                if not is_outage(exc):
                    log.warning("settling %d charges was refused (%s); writing them one by one",
                                len(batch), type(exc).__name__)
                    batch = self._settle_each(batch)
                    if not batch:
                        return
                log.error("settling %d charges failed (%s); retrying", len(batch),
                          type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    def _settle_each(self, batch) -> list:
        """Write each charge in its own transaction; returns those left when the database went
        away meanwhile. A charge refused twice is set aside (see _set_aside)."""
        for i, item in enumerate(batch):
            for attempt in (1, 2):
                try:
                    self._settle_batch([item])
                    break
                except Exception as exc:
                    if is_outage(exc):
                        return batch[i:]
                    if attempt == 2:
                        self._set_aside(item, exc)
        return []

    def _set_aside(self, item: Charge, exc: Exception):
        """A charge the database cannot store: log all an operator needs to settle it by hand.

        Its hold stays open, so the credits stay reserved until an operator settles it or the
        hold sweep releases it; the ledger invariant holds either way.
        """
        with self._lock:
            self.set_aside += 1
        t, u = item.ticket, item.usage
        tokens = "release" if u is None else (f"in {u.input} cache {u.cache_read}/"
                                              f"{u.cache_write} out {u.output}")
        log.error("charge set aside, the database refused it (%s: %s): request %s user %s key %s "
                  "hold %s model %s cost %s tokens %s", type(exc).__name__,
                  _reason(exc), t.request_id, t.user_id, t.key_id, t.hold_id,
                  ascii(t.model)[:300], item.cost, tokens)

    def _settle_batch(self, batch):
        if self.psycopg_direct:  # the common case in one round trip, the rest in a transaction
            batch = _settle_set(batch, partial(self._lone_statement, PG_SETTLE_SQL))
            if batch:
                with self.engine.begin() as conn:
                    _settle_each_charge(conn, batch)
            return
        with self.engine.begin() as conn:
            settle(conn, batch)

    def flush(self, timeout=10.0) -> bool:
        """Wait until every queued settlement is written (tests, shutdown)."""
        deadline = time.monotonic() + timeout
        while self.queue.unfinished_tasks:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def shutdown(self):
        """Write what is still queued, then stop the worker; called at process exit."""
        leftovers = []
        while True:
            try:
                leftovers.append(self.queue.get_nowait())
            except queue.Empty:
                break
        if leftovers:
            self._settle_with_retry(leftovers)
            for _ in leftovers:
                self.queue.task_done()
        if self._worker is not None:
            self.flush(timeout=30)
        self._stopping.set()

    def sweep(self) -> int:
        """Release holds older than hold_ttl: their process died before settling them."""
        cutoff = utcnow() - timedelta(seconds=self.hold_ttl)
        released = 0
        with self.session_factory() as session:
            for hold in session.scalars(select(Hold).where(Hold.created_at < cutoff)).all():
                if session.execute(delete(Hold).where(Hold.id == hold.id)).rowcount:
                    session.execute(update(Account).where(Account.user_id == hold.user_id)
                                    .values(balance=Account.balance + hold.amount))
                    released += 1
            session.commit()
        if released:
            log.warning("released %d stale holds", released)
        return released

    def _sweep_safely(self):
        try:
            self.sweep()
        except Exception as exc:
            log.error("hold sweep failed: %s", type(exc).__name__)


# The database is away (or this connection to it is): retry the same charges later. Anything
# else (a value it refuses, a constraint) is about the charges themselves.
OUTAGES = (OperationalError, InterfaceError, DisconnectionError, PoolTimeout)


def is_outage(exc: Exception) -> bool:
    """True when `exc` says the database cannot be reached, not that it refused the data."""
    return isinstance(exc, OUTAGES) or bool(getattr(exc, "connection_invalidated", False))


def _reason(exc: Exception) -> str:
    """The driver's own message, without SQLAlchemy's statement and parameters."""
    return str(getattr(exc, "orig", None) or exc).splitlines()[0][:200] if str(exc) else ""


def settle(conn, batch: list[Charge]):
    """Charge each real cost, release the rest of its hold, write its record: one transaction.
    The batch's common case (a hold found, a cost within it) goes set-wise: on PostgreSQL in one
    statement (PG_SETTLE), elsewhere in three (_settle_rows); what they leave (a hold not found,
    a cost above its hold) goes charge by charge."""
    if conn.dialect.name == "postgresql":
        batch = _settle_set(batch, lambda params: conn.execute(PG_SETTLE, params).fetchall())
    elif conn.dialect.delete_returning:
        batch = _settle_rows(conn, batch)
    if batch:
        _settle_each_charge(conn, batch)


def _common(batch: list[Charge]) -> list[int]:
    """Positions of the charges the set-wise paths take: a cost within its hold, each hold once
    (a charge queued twice goes the per-charge way, which finds its hold gone)."""
    chosen, holds = [], set()
    for i, item in enumerate(batch):
        if (item.usage is None or item.cost <= item.ticket.amount) \
                and item.ticket.hold_id not in holds:
            chosen.append(i)
            holds.add(item.ticket.hold_id)
    return chosen


def _settle_rows(conn, batch: list[Charge]) -> list[Charge]:
    """The batch's common case in three statements, whatever its size (SQLite): drop the holds
    it finds, give each account back what they held beyond their costs (summed per account),
    write the usage records. Returns the charges it could not settle."""
    chosen = _common(batch)
    if not chosen:
        return batch
    dropped = set(conn.execute(DROP_HOLDS, {"holds": [
        (batch[i].ticket.hold_id, batch[i].ticket.user_id, batch[i].ticket.amount)
        for i in chosen]}).scalars())
    settled = [i for i in chosen if batch[i].ticket.hold_id in dropped]
    refunds, records = {}, []
    for i in settled:
        item = batch[i]
        price = Decimal(0) if item.usage is None else item.cost
        # rounded to the micro-credit one by one, as the Credits type rounds each on the
        # per-charge path
        back = (item.ticket.amount - price).quantize(MICRO)
        if back > 0:
            refunds[item.ticket.user_id] = refunds.get(item.ticket.user_id, Decimal(0)) + back
        if item.usage is not None:
            records.append(_record(item, price))
    if refunds:
        conn.execute(GIVE, [{"account": user, "delta": back} for user, back in refunds.items()])
    if records:
        conn.execute(RECORD, records)
    done = set(settled)
    return [item for i, item in enumerate(batch) if i not in done]


def _record(item: Charge, price: Decimal) -> dict:
    ticket, u = item.ticket, item.usage
    return {"user_id": ticket.user_id, "key_id": ticket.key_id, "model": ticket.model,
            "provider": ticket.provider, "input_tokens": u.input,
            "cache_read_tokens": u.cache_read, "cache_write_tokens": u.cache_write,
            "output_tokens": u.output, "images": u.images, "price": price,
            "estimated": item.estimated, "partial": item.partial, "created_at": utcnow(),
            "request_id": ticket.request_id or None}


def _settle_set(batch: list[Charge], run) -> list[Charge]:
    """The batch's common case in one statement, PG_SETTLE's, sent by `run(params)` (which
    answers its rows); returns the charges it could not settle."""
    chosen = _common(batch)
    if not chosen:
        return batch
    simple = [batch[i] for i in chosen]
    columns = {name: [] for name in (
        "hold_ids", "user_ids", "held", "refunds", "billed", "key_ids", "models", "providers",
        "inputs", "cache_reads", "cache_writes", "outputs", "images", "prices", "estimated",
        "partial", "request_ids")}
    for item in simple:
        t, u = item.ticket, item.usage
        price = Decimal(0) if u is None else item.cost
        # amounts rounded to the micro-credit, as the Credits type rounds the per-charge path's
        row = (t.hold_id, t.user_id, t.amount.quantize(MICRO), (t.amount - price).quantize(MICRO),
               u is not None, t.key_id, t.model, t.provider, u.input if u else 0,
               u.cache_read if u else 0, u.cache_write if u else 0, u.output if u else 0,
               u.images if u else 0, price.quantize(MICRO),
               item.estimated, item.partial, t.request_id or None)
        for column, value in zip(columns.values(), row, strict=True):
            column.append(value)
    dropped = {row[0] for row in run({**columns, "created_at": utcnow()})}
    settled = {i for i in chosen if batch[i].ticket.hold_id in dropped}
    return [item for i, item in enumerate(batch) if i not in settled]


def _settle_each_charge(conn, batch: list[Charge]):
    """Charge by charge: the statements for each, then the usage records in one INSERT.

    A cost above the hold (the upstream counted more prompt tokens than we did) takes the excess
    from the balance only as far as the balance goes: it never goes below zero.
    """
    records = []
    for item in batch:
        ticket = item.ticket
        held = ticket.amount
        if not conn.execute(DROP_HOLD, {"hold_id": ticket.hold_id, "user_id": ticket.user_id,
                                        "held": ticket.amount}).rowcount:
            if ticket.request_id and conn.execute(RECORDED, {"rid": ticket.request_id}).first():
                continue  # settled already: a retry after a commit whose answer was lost
            held = Decimal(0)  # already released by a sweep: charge from the balance alone
        price = Decimal(0) if item.usage is None else item.cost
        if price > held:  # the hold is all spent; the excess comes from the balance
            price = held + _take(conn, ticket.user_id, price - held)
        elif held > price:
            conn.execute(GIVE, {"account": ticket.user_id, "delta": held - price})
        if item.usage is not None:
            records.append(_record(item, price))
    if records:
        conn.execute(RECORD, records)


def _take(conn, user_id, wanted: Decimal) -> Decimal:
    """Take up to `wanted` from a balance without going below zero; returns what was taken."""
    for _ in range(5):
        available = conn.execute(select(Account.balance)
                                 .where(Account.user_id == user_id)).scalar()
        amount = min(wanted, available or Decimal(0))
        if amount <= 0:
            return Decimal(0)
        if conn.execute(TAKE, {"account": user_id, "delta": amount}).rowcount:
            return amount
    return Decimal(0)


# ---- the ledger, for the API and the CLI ----------------------------------------------------
def grant(session, user_id: int, amount: Decimal, reason: str = "") -> Account:
    """Add credits to a user's balance and to the total credited, recording the grant."""
    check_text(reason, param="reason", max_length=REASON_MAX, allow_empty=True)
    account = session.get(Account, user_id)
    if account is None:
        account = Account(user_id=user_id, balance=Decimal(0), credited=Decimal(0))
        session.add(account)
        session.flush()
    session.execute(update(Account).where(Account.user_id == user_id)
                    .values(balance=Account.balance + amount, credited=Account.credited + amount))
    session.add(Grant(user_id=user_id, amount=amount, reason=reason))
    session.commit()
    session.refresh(account)
    return account


def balance(session, user_id: int) -> tuple[Decimal, Decimal]:
    """(balance, total credited) of a user; zeros when nothing was ever credited."""
    row = session.execute(select(Account.balance, Account.credited)
                          .where(Account.user_id == user_id)).first()
    return (row.balance, row.credited) if row else (Decimal(0), Decimal(0))


def usage_page(session, user_id: int, size: int, before_id: int | None):
    """Newest-first usage records below `before_id`; returns (records, next id or None)."""
    query = select(UsageRecord).where(UsageRecord.user_id == user_id)
    if before_id is not None:
        query = query.where(UsageRecord.id < before_id)
    rows = session.scalars(query.order_by(UsageRecord.id.desc()).limit(size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    return rows, (rows[-1].id if more else None)


def ledger_gap(session, user_id: int) -> Decimal:
    """credited - balance - (charges + open holds): zero whenever the books are right."""
    bal, credited = balance(session, user_id)
    charged = session.scalar(select(_total(UsageRecord.price))
                             .where(UsageRecord.user_id == user_id))
    held = session.scalar(select(_total(Hold.amount)).where(Hold.user_id == user_id))
    return credited - bal - charged - held


def _total(column):
    """SUM of a credits column, typed so SQLite's micro-credit integers come back as Decimals."""
    return type_coerce(func.coalesce(func.sum(column), 0), Credits)
