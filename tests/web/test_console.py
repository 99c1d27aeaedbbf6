"""The console over the real ledger: balance, the spend chart, usage pages with the credits
API's cursor, filters, CSV export, and keys with an expiry or a model restriction."""

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import openai
import pytest
import requests
from sqlalchemy import select

from extensions import db
from models import UsageRecord, User
from tests.conftest import provider_entry
from tests.web.helpers import new_key, signup


@pytest.fixture
def settings(upstream):
    return {"SIGNUP_CREDITS": 500, "DEFAULT_PLAN": "standard",
            "PROVIDERS": [provider_entry(upstream, models=("gpt-test", "gpt-other", "=*"))]}


@pytest.fixture
def ann(app, client, gateway):
    signup(client)
    key = new_key(client, "main")
    client.sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    client.key = key
    return client


def chat(sdk, model="gpt-test", text="hello"):
    return sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])


def user_id(app):
    with app.app_context():
        return db.session.scalar(select(User.id).where(User.name == "ann@example.com"))


def test_balance_chart_and_records_follow_the_ledger(app, ann, gateway):
    for _ in range(11):
        chat(ann.sdk)
    chat(ann.sdk, "gpt-other")
    uid = user_id(app)
    with app.app_context():  # an older record, and one from before the chart's 30 days
        for days, model in ((3, "gpt-old"), (40, "gpt-ancient")):
            db.session.add(UsageRecord(user_id=uid, key_id=0, model=model, input_tokens=1,
                                       output_tokens=1, price=Decimal("2.5"),
                                       created_at=datetime.now(UTC).replace(tzinfo=None)
                                       - timedelta(days=days)))
        db.session.commit()
    app.extensions["billing"].flush()
    page = ann.get("/console").get_data(as_text=True)
    credits = requests.get(f"{gateway}/api/v1/credits?include_usage=true&pageSize=10",
                           headers={"Authorization": f"Bearer {ann.key}"}, timeout=10).json()
    balance = credits["data"]["balance"]
    assert balance < 500 and f"{balance:,.2f}" in page
    bars = re.findall(r'<rect class="bar"[^>]*><title>([^<]+)</title>', page)
    today = datetime.now(UTC).date()
    assert any(t.startswith(f"{today} · gpt-test") for t in bars)
    assert any(t.startswith(f"{today} · gpt-other") for t in bars)
    assert any(t.startswith(f"{today - timedelta(days=3)} · gpt-old: 2.5 credits") for t in bars)
    assert not any("gpt-ancient" in t for t in bars)
    # the newest records, as the credits API pages them, with the same cursor
    api_ids = [r["id"] for r in credits["data"]["usage"]["list"]]
    assert _record_ids(page) == api_ids
    next_id = credits["data"]["usage"]["nextId"]
    older = ann.get(f"/console?nextId={next_id}").get_data(as_text=True)
    api_older = requests.get(
        f"{gateway}/api/v1/credits?include_usage=true&pageSize=10&nextId={next_id}",
        headers={"Authorization": f"Bearer {ann.key}"}, timeout=10).json()
    assert _record_ids(older) == [r["id"] for r in api_older["data"]["usage"]["list"]]
    assert f"nextId={next_id}" in page


def _record_ids(page):
    return [int(n) for n in re.findall(r'href="/console/usage/(\d+)"', page)]


def test_usage_filters_and_csv(app, ann):
    chat(ann.sdk)
    chat(ann.sdk, "gpt-other")
    chat(ann.sdk, "=HYPERLINK(\"http://x\")")
    app.extensions["billing"].flush()
    everything = ann.get("/console/usage").get_data(as_text=True)
    assert "3 records" in everything
    only_other = ann.get("/console/usage?model=gpt-other").get_data(as_text=True)
    assert "1 record " in only_other and len(_record_ids(only_other)) == 1
    yesterday = (datetime.now(UTC).date() - timedelta(days=1)).isoformat()
    assert "0 records" in ann.get(f"/console/usage?to={yesterday}").get_data(as_text=True)
    assert "3 records" in ann.get(f"/console/usage?from={yesterday}").get_data(as_text=True)
    assert ann.get("/console/usage?from=yesterday").status_code == 400

    export = ann.get("/console/usage.csv")
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert {r["model"] for r in rows} == {"gpt-test", "gpt-other", "'=HYPERLINK(\"http://x\")"}
    assert all(r["key"] == "main" and Decimal(r["credits"]) > 0 for r in rows)
    filtered = ann.get("/console/usage.csv?model=gpt-test").get_data(as_text=True)
    assert [r["model"] for r in csv.DictReader(io.StringIO(filtered))] == ["gpt-test"]


def test_key_restricted_to_models_and_expiry(app, ann, gateway):
    restricted = new_key(ann, "only other", models="gpt-other", expires="7")
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=restricted, max_retries=0)
    chat(sdk, "gpt-other")
    with pytest.raises(openai.PermissionDeniedError):
        chat(sdk, "gpt-test")
    assert [m.id for m in sdk.models.list()] == ["gpt-other"]
    app.extensions["billing"].flush()
    page = ann.get("/console/keys").get_data(as_text=True)
    rows = {name: row for row in page.split('<tr class="key-')[1:]
            for name in ("only other", "main") if f">{name}</a>" in row}
    cells = {name: re.findall(r"<td>(.*?)</td>", row) for name, row in rows.items()}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    expires = (datetime.now(UTC) + timedelta(days=7)).strftime("%Y-%m-%d")
    # name | key | created | last used | expires | models | status
    assert cells["only other"][2].startswith(today) and cells["only other"][3].startswith(expires)
    assert cells["only other"][4] == "gpt-other"
    assert cells["main"][2:5] == ["Never", "Never", "All"]


def test_revoked_key_stops_working(app, ann):
    chat(ann.sdk)
    key_id = int(re.search(r'data-key-id="(\d+)"', ann.get("/console/keys").get_data(
        as_text=True)).group(1))
    from tests.web.helpers import post_form
    reply = post_form(ann, f"/console/keys/{key_id}/revoke", {})
    assert reply.status_code == 303
    with pytest.raises(openai.AuthenticationError):
        chat(ann.sdk)
    page = ann.get("/console/keys").get_data(as_text=True)
    assert "revoked" in page and f"/console/keys/{key_id}/revoke" not in page
