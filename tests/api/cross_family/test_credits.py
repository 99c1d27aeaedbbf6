"""Credits through the API: holds, charges, the ledger, 402, and the balance endpoint."""

import json
import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
import requests
from sqlalchemy import select, update

from extensions import db
from models import Account, Hold, UsageRecord, utcnow
from services.billing import balance, ledger_gap
from tests.conftest import make_user
from tests.fake_upstream import Script

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
USAGE = {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000,
         "prompt_tokens_details": {"cached_tokens": 600}}


@pytest.fixture
def settings():
    return {"RATELIMIT_ENABLED": False,  # bursts here test the ledger, not the rate limits
            "PRICING": {"models": {"gpt-test": {"input": 2, "output": 4, "cache_read": 0.5,
                                                "minimum": 0.001, "max_output_tokens": 8000}}}}


@pytest.fixture
def user(app):
    return make_user(app, credits=Decimal(100))


def post(gateway, key, body=BODY, **kw):
    return requests.post(f"{gateway}/v1/chat/completions", json=body, timeout=15,
                         headers={"Authorization": f"Bearer {key}"}, **kw)


def books(app, user_id):
    """(balance, records, open holds, gap) once every settlement is written."""
    assert app.extensions["billing"].flush()
    return _read_books(app, user_id)


def settled_books(app, user_id, timeout=20):
    """books() once no hold is open: streams whose clients left settle when the server notices."""
    deadline = time.monotonic() + timeout
    while True:
        snapshot = books(app, user_id)
        if not snapshot[2] or time.monotonic() > deadline:
            return books(app, user_id)
        time.sleep(0.1)


def _read_books(app, user_id):
    with app.app_context():
        records = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id)
                                     .order_by(UsageRecord.id)).all()
        holds = db.session.scalars(select(Hold).where(Hold.user_id == user_id)).all()
        return balance(db.session, user_id)[0], records, holds, ledger_gap(db.session, user_id)


# 400 uncached * 2 + 600 cached * 0.5 + 2000 * 4, per 1000
COST = Decimal("0.8") + Decimal("0.3") + Decimal("8")


def test_whole_answer_is_charged_once(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage=USAGE))
    resp = post(gateway, key)
    assert resp.json()["credits_consumed"] == float(COST)
    assert resp.json()["usage"] == USAGE
    bal, records, holds, gap = books(app, user_id)
    assert bal == Decimal(100) - COST and gap == 0 and holds == []
    [r] = records
    assert (r.input_tokens, r.cache_read_tokens, r.output_tokens) == (400, 600, 2000)
    assert r.price == COST and not r.estimated and not r.partial


def test_stream_costs_the_same_and_says_so(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage=USAGE), Script(usage=USAGE))
    resp = post(gateway, key, {**BODY, "stream": True, "stream_options": {"include_usage": True}})
    usage_chunk = [json.loads(e[6:]) for e in resp.content.split(b"\n\n")
                   if e.startswith(b"data: {") and b'"choices": []' in e][0]
    assert usage_chunk["credits_consumed"] == float(COST)
    post(gateway, key, {**BODY, "stream": True})  # usage not asked for: still charged
    bal, records, holds, gap = books(app, user_id)
    assert [r.price for r in records] == [COST, COST]
    assert bal == Decimal(100) - 2 * COST and gap == 0 and holds == []


def test_out_of_credits_is_402_and_nothing_forwarded(app, gateway, upstream):
    user_id, key = make_user(app, "poor", credits=Decimal("0.5"))
    resp = post(gateway, key)  # may cost up to 8000 output tokens * 4 / 1000 = 32 credits
    assert resp.status_code == 402
    assert resp.json()["error"]["type"] == "insufficient_quota"
    assert resp.json()["error"]["code"] == "insufficient_credits"
    assert resp.headers["x-should-retry"] == "false"
    assert upstream.received == []
    resp = post(gateway, key, {**BODY, "max_tokens": 50})  # a small cap fits the balance
    assert resp.status_code == 200
    assert upstream.last.json["max_tokens"] == 50


def test_output_cap_is_sent_upstream_and_clamps(app, gateway, upstream, user):
    _, key = user
    post(gateway, key)
    assert upstream.last.json["max_completion_tokens"] == 8000
    post(gateway, key, {**BODY, "max_tokens": 10**9})
    assert upstream.last.json["max_tokens"] == 8000


@pytest.mark.parametrize("stream", [False, True])
def test_upstream_error_before_output_is_free(app, gateway, upstream, user, stream):
    user_id, key = user
    upstream.push(Script(status=500))
    assert post(gateway, key, {**BODY, "stream": stream}).status_code == 502
    bal, records, holds, gap = books(app, user_id)
    assert bal == Decimal(100) and records == [] and holds == [] and gap == 0


def test_missing_usage_is_estimated(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage=None, content="x" * 400))
    resp = post(gateway, key)
    _, [record], _, gap = books(app, user_id)
    assert record.estimated and record.output_tokens == 100 and gap == 0
    assert resp.json()["credits_consumed"] == float(record.price)


def test_broken_stream_charges_what_was_relayed(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage=None, content="abcd " * 20, drop_after=6))
    post(gateway, key, {**BODY, "stream": True})
    _, [record], holds, gap = books(app, user_id)
    assert record.partial and record.estimated and holds == [] and gap == 0
    assert 0 < record.output_tokens < 25  # five of twenty words were relayed


def test_stale_holds_are_swept(app, user):
    user_id, _ = user
    billing = app.extensions["billing"]
    with app.app_context():  # what a worker killed mid-request leaves behind
        db.session.add(Hold(user_id=user_id, amount=Decimal(7),
                            created_at=utcnow() - timedelta(hours=2)))
        db.session.execute(update(Account).where(Account.user_id == user_id)
                           .values(balance=Account.balance - Decimal(7)))
        db.session.commit()
    assert books(app, user_id)[0] == Decimal(93)
    assert billing.sweep() == 1
    bal, _, holds, gap = books(app, user_id)
    assert bal == Decimal(100) and holds == [] and gap == 0


def test_concurrent_requests_keep_the_books(app, gateway, upstream, user):
    """200 requests at once, streamed and not, some failing upstream, some clients leaving."""
    user_id, key = user
    upstream.push(*[Script(usage={"prompt_tokens": 10, "completion_tokens": 20})
                    if i % 7 else Script(status=503) for i in range(200)])
    start = threading.Barrier(200)
    statuses, leavers = [], []

    def one(i):
        start.wait()
        body = {**BODY, "max_tokens": 100, "stream": i % 2 == 0}
        with requests.post(f"{gateway}/v1/chat/completions", json=body, stream=True,
                           timeout=30, headers={"Authorization": f"Bearer {key}"}) as resp:
            statuses.append(resp.status_code)
            if i % 10 == 4:  # leave mid-stream
                next(resp.iter_content(16), None)
                leavers.append(resp.status_code)
                return
            resp.content  # noqa: B018

    threads = [threading.Thread(target=one, args=(i,)) for i in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(statuses) == 200 and set(statuses) <= {200, 402, 502, 503}
    assert statuses.count(200) >= 150
    bal, records, holds, gap = settled_books(app, user_id)
    assert holds == [] and gap == 0 and bal >= 0
    # one record per answered request; a client that left before any output may cost nothing
    assert statuses.count(200) - leavers.count(200) <= len(records) <= statuses.count(200)
    assert all(r.price > 0 for r in records)
    assert bal == Decimal(100) - sum(r.price for r in records)


def test_balance_never_negative_under_a_burst(app, gateway, upstream):
    """The balance covers five worst-case holds; 200 concurrent requests cannot overdraw it."""
    user_id, key = make_user(app, "tight", credits=Decimal("2.0"))  # hold = 0.4 for 100 tokens
    start = threading.Barrier(200)
    statuses = []

    def one():
        start.wait()
        statuses.append(post(gateway, key, {**BODY, "max_tokens": 100}).status_code)

    threads = [threading.Thread(target=one) for _ in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    bal, records, holds, gap = books(app, user_id)
    assert 402 in statuses and statuses.count(200) == len(records) >= 5
    assert bal >= 0 and holds == [] and gap == 0


def test_balance_api_and_pagination(app, gateway, upstream, user):
    user_id, key = user
    other_id, other_key = make_user(app, "bob")
    # Small holds, and each settlement (written off the response path) awaited: a settle worker
    # starved by a busy machine must not make a later request a 402.
    small = {**BODY, "max_tokens": 50}
    for _ in range(3):
        assert post(gateway, other_key, small).status_code == 200
        assert app.extensions["billing"].flush()
    for _ in range(25):
        assert post(gateway, key, small).status_code == 200
        assert app.extensions["billing"].flush()
    books(app, user_id)
    auth = {"Authorization": f"Bearer {key}"}
    plain = requests.get(f"{gateway}/api/v1/credits", headers=auth, timeout=5).json()
    assert set(plain["data"]) == {"balance", "amount"} and plain["data"]["amount"] == 100.0
    seen, next_id = [], ""
    while True:
        page = requests.get(f"{gateway}/v1/credits", headers=auth, timeout=5, params={
            "include_usage": "true", "pageSize": 10, "nextId": next_id}).json()["data"]["usage"]
        seen += page["list"]
        next_id = page["nextId"]
        if not next_id:
            break
        post(gateway, key, small)  # a new record while paging: never seen again, never skipped
    ids = [r["id"] for r in seen]
    assert len(ids) == 25 == len(set(ids)) and ids == sorted(ids, reverse=True)
    item = seen[0]
    assert set(item) >= {"id", "tokens", "input_tokens", "output_tokens", "model", "price",
                         "cache_hit_tokens", "cache_creation_tokens", "create_time"}
    assert item["create_time"] > 1.7e12 and item["model"] == "gpt-test"
    bal, records, _, _ = books(app, user_id)
    assert plain["data"]["balance"] == float(Decimal(100) - sum(r.price for r in records[:25]))


@pytest.mark.parametrize("query, param", [({"pageSize": "0"}, "pageSize"),
                                          ({"pageSize": "101"}, "pageSize"),
                                          ({"pageSize": "x"}, "pageSize"),
                                          ({"nextId": "-4"}, "nextId"),
                                          ({"include_usage": "maybe"}, "include_usage")])
def test_balance_api_bad_params(client, api_key, query, param):
    resp = client.get("/api/v1/credits", query_string={"include_usage": "true", **query},
                      headers={"Authorization": f"Bearer {api_key}"})
    assert resp.status_code == 400 and resp.json["error"]["param"] == param


def test_shutdown_writes_every_queued_charge(app, user):
    """Charges queued at exit are written before the process goes."""
    from services.billing import Ticket
    from translation.ir import Usage
    user_id, _ = user
    billing = app.extensions["billing"]
    caller = type("Caller", (), {"user_id": user_id, "key_id": 1})()
    tickets = [billing.reserve(caller, "gpt-test", 10, 10) for _ in range(50)]
    assert all(isinstance(t, Ticket) for t in tickets)
    for ticket in tickets:
        billing.charge(ticket, Usage(input=10, output=10))
    billing.shutdown()
    bal, records, holds, gap = books(app, user_id)
    assert len(records) == 50 and holds == [] and gap == 0


def test_paging_250_records_while_more_are_written(app, client, user):
    """pageSize 100 over 250 records: exactly those 250, newest first, though 60 more arrive."""
    from services.billing import Charge, Ticket, settle
    from translation.ir import Usage
    user_id, key = user
    price = app.extensions["billing"].pricing.for_model("gpt-test")

    def write(n):
        ticket = Ticket(hold_id=0, amount=Decimal(0), user_id=user_id, key_id=1,
                        model="gpt-test", price=price, prompt_estimate=0)
        with app.extensions["billing"].engine.begin() as conn:
            settle(conn, [Charge(ticket, Usage(input=1, output=1), Decimal("0.001"))] * n)

    write(250)
    auth = {"Authorization": f"Bearer {key}"}
    seen, next_id = [], ""
    while True:
        data = client.get("/api/v1/credits", headers=auth, query_string={
            "include_usage": "true", "pageSize": 100, "nextId": next_id}).json["data"]
        seen += [r["id"] for r in data["usage"]["list"]]
        next_id = data["usage"]["nextId"]
        writer = threading.Thread(target=write, args=(30,))
        writer.start()
        writer.join()
        if not next_id:
            break
    assert len(seen) == 250 == len(set(seen)) and seen == sorted(seen, reverse=True)
    with app.app_context():
        first_250 = db.session.scalars(select(UsageRecord.id).where(
            UsageRecord.user_id == user_id).order_by(UsageRecord.id).limit(250)).all()
    assert sorted(seen) == first_250
