"""One user never sees or acts on another's keys or usage: every such request is a 404, and
the other user's key keeps working."""

import re

import openai
import pytest
from sqlalchemy import select

from extensions import db
from models import ApiKey, UsageRecord
from tests.web.helpers import new_key, post_form, signup


@pytest.fixture
def settings():
    return {"SIGNUP_CREDITS": 100}


def test_another_users_keys_and_usage_are_404(app, gateway):
    ann, bob = app.test_client(), app.test_client()
    signup(ann, "ann@example.com")
    signup(bob, "bob@example.com")
    ann_key = new_key(ann, "ann's key")
    with app.app_context():
        key_id, hint = db.session.execute(select(ApiKey.id, ApiKey.hint)
                                          .where(ApiKey.name == "ann's key")).one()
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=ann_key, max_retries=0)
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    app.extensions["billing"].flush()
    with app.app_context():
        record_id = db.session.scalar(select(UsageRecord.id))

    assert ann.get(f"/console/keys/{key_id}").status_code == 200
    assert ann.get(f"/console/usage/{record_id}").status_code == 200
    for path in (f"/console/keys/{key_id}", f"/console/usage/{record_id}",
                 f"/console/usage?key={key_id}", f"/console/usage.csv?key={key_id}"):
        assert bob.get(path).status_code == 404, path
    assert post_form(bob, f"/console/keys/{key_id}/revoke", {}).status_code == 404
    for path in ("/console/keys/99999999999999999999", "/console/usage/99999999999999999999999",
                 "/console/keys/0"):
        assert bob.get(path).status_code == 404, path
    page = bob.get("/console/usage").get_data(as_text=True)
    assert "gpt-test" not in page
    csv_text = bob.get("/console/usage.csv").get_data(as_text=True)
    assert csv_text.strip().count("\n") == 0  # the header line only
    # ann's key still works: bob's revoke did nothing
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert hint in ann.get("/console/keys").get_data(as_text=True)
    assert hint not in bob.get("/console/keys").get_data(as_text=True)


def test_full_key_is_shown_once(app, client):
    signup(client)
    key = new_key(client, "once")
    assert re.search(r"tg-[A-Za-z0-9_-]{40,}", key)
    for path in ("/console/keys", "/console", "/docs", "/console/usage"):
        assert key not in client.get(path).get_data(as_text=True), path
    hint = key[:7]
    assert hint in client.get("/console/keys").get_data(as_text=True)
    assert hint in client.get("/docs").get_data(as_text=True)  # the docs name the key's prefix
