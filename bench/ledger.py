"""The credit ledger's cost per request on PostgreSQL (or SQLite), measured in-process.

A request's bookkeeping is a hold before forwarding and its settlement after (written in batches
by the settlement worker). This runs both for `--requests` requests, `--concurrency` at a time
(gevent greenlets, as under gunicorn), against a database of its own, and prints per request:
statements sent (counted at the driver on PostgreSQL), commits through SQLAlchemy (each one a
BEGIN and a COMMIT; a lone statement in autocommit is neither), the time this process and the
PostgreSQL backends serving it spent on CPU, and the wall time. Statements and backend CPU are
the figures that the rest of a shared machine's load does not move much; bench/prod.py's
end-to-end figures move by a factor of two between runs.

    .venv/bin/python bench/ledger.py [--requests 5000] [--concurrency 1,32]
        [--database-url postgresql://postgres@127.0.0.1:5432/tollgate_bench]
        [--gateway-root DIR]   # the billing code of another checkout (git archive COMMIT)
"""

import argparse
import os
import re
import sys
import time

from gevent import monkey

monkey.patch_all()

import gevent  # noqa: E402
import gevent.pool  # noqa: E402

BENCH = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", default="1,32")
    parser.add_argument("--database-url",
                        default="postgresql://postgres@127.0.0.1:5432/tollgate_bench")
    parser.add_argument("--gateway-root", default=os.path.dirname(BENCH))
    parser.add_argument("--gather", type=float, default=None,
                        help="settle_gather_seconds (default: the gateway's own default)")
    args = parser.parse_args()
    sys.path.insert(0, os.path.abspath(args.gateway_root))
    sys.path.insert(0, BENCH)
    from decimal import Decimal
    from types import SimpleNamespace

    from loadgen import group_delta, matching_cpu, own_cpu
    from sqlalchemy import create_engine, event, text
    from sqlalchemy.orm import Session

    import models  # noqa: F401  (registers the tables)
    from extensions import db
    from models import User
    from services.billing import Billing, grant, ledger_gap
    from services.pricing import Pricing
    from translation.ir import Usage

    url = args.database_url.replace("postgresql://", "postgresql+psycopg://", 1)
    # as the gateway configures it on PostgreSQL (config.py) at the commit being measured
    sys.path.insert(0, os.path.abspath(args.gateway_root))
    import config
    options = dict(config.DEFAULTS["SQLALCHEMY_ENGINE_OPTIONS"])
    engine = create_engine(url, pool_size=config.DEFAULTS["DATABASE_POOL_SIZE"],
                           max_overflow=config.DEFAULTS["DATABASE_POOL_SIZE"], **options)
    sent, commits = [0], [0]
    if engine.dialect.driver == "psycopg":
        # counted at the driver: the hold and the settlement go to psycopg past SQLAlchemy
        import psycopg

        class Counted(psycopg.Cursor):
            def execute(self, *a, **kw):
                sent[0] += 1
                return super().execute(*a, **kw)

            def executemany(self, *a, **kw):
                sent[0] += 1
                return super().executemany(*a, **kw)

        event.listen(engine, "connect",
                     lambda conn, _record: setattr(conn, "cursor_factory", Counted))
    else:
        event.listen(engine, "before_cursor_execute",
                     lambda *_a: sent.__setitem__(0, sent[0] + 1))
    event.listen(engine, "commit", lambda _conn: commits.__setitem__(0, commits[0] + 1))
    if engine.dialect.name == "postgresql":
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
    db.metadata.drop_all(engine)
    db.metadata.create_all(engine)
    with Session(engine) as session:
        user = User(name="bench")
        session.add(user)
        session.commit()
        grant(session, user.id, Decimal(10**9), "bench")
        caller = SimpleNamespace(user_id=user.id, key_id=1)
    gather = config.DEFAULTS.get("SETTLE_GATHER_SECONDS") if args.gather is None else args.gather
    billing = (Billing(engine, Pricing({}), gather_seconds=gather) if gather is not None
               else Billing(engine, Pricing({})))  # a tree from before the setting
    database = engine.url.database
    backends = rf"^postgres: .* {re.escape(database)} "
    usage = Usage(input=58, output=20)

    def one():
        ticket = billing.reserve(caller, "bench-model", 100, 256)
        billing.charge(ticket, usage)

    print("| concurrency | requests | statements per request | commits per request "
          "| this process CPU | PostgreSQL backends CPU | wall time per request |\n"
          "|---:|---:|---:|---:|---:|---:|---:|")
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        for _ in range(200):  # warm: connections open, statements prepared
            one()
        billing.flush(60)
        sent[0] = commits[0] = 0
        cpu0, pg0, t0 = own_cpu(), matching_cpu(backends), time.perf_counter()
        pool = gevent.pool.Pool(concurrency)
        for _ in range(args.requests):
            pool.spawn(one)
        pool.join()
        billing.flush(60)
        wall, cpu, pg = time.perf_counter() - t0, own_cpu() - cpu0, matching_cpu(backends)
        n = args.requests
        print(f"| {concurrency} | {n} | {sent[0] / n:.2f} | {commits[0] / n:.2f} "
              f"| {cpu / n * 1000:.3f} ms "
              f"| {group_delta(pg0, pg) / n * 1000:.3f} ms | {wall / n * 1000:.3f} ms |")
    with Session(engine) as session:
        gap = ledger_gap(session, caller.user_id)
    billing.shutdown()
    if gap != 0:
        sys.exit(f"the ledger is off by {gap}")


if __name__ == "__main__":
    main()
