"""The playground's endpoint runs the API pipeline for the logged-in user: plan, rate limits,
credits and ledger, with errors in the OpenAI envelope and CSRF required (it uses a cookie)."""

import json

import pytest
from sqlalchemy import select

from extensions import db
from models import UsageRecord, User
from services import accounts
from tests.conftest import provider_entry
from tests.web.helpers import csrf_token, signup


@pytest.fixture
def settings(upstream):
    return {"SIGNUP_CREDITS": 10, "PROVIDERS": [provider_entry(upstream,
                                                               models=("gpt-test", "gpt-big"),
                                                               embedding_models=["embed-test"])],
            "PLANS": {"free": {"requests_per_minute": {"chat": 3},
                               "models": ["gpt-test", "embed-*"]}}}


def ask(client, token, **body):
    payload = {"model": "gpt-test", "messages": [{"role": "user", "content": "hello there"}],
               "max_tokens": 50, **body}
    return client.post("/playground/api/chat", json=payload, headers={"X-CSRFToken": token})


def events(reply) -> list:
    return [json.loads(line[6:]) for line in reply.get_data(as_text=True).splitlines()
            if line.startswith("data: {")]


def test_streams_and_charges_the_user(app, client, upstream):
    signup(client)
    token = csrf_token(client, "/playground")
    reply = ask(client, token, system="Be kind.", temperature=0.3, max_tokens=50)
    assert reply.status_code == 200 and reply.mimetype == "text/event-stream"
    chunks = events(reply)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "echo: hello there"
    usage_chunk = chunks[-1]
    assert usage_chunk["usage"]["completion_tokens"] > 0 and usage_chunk["credits_consumed"] > 0
    sent = upstream.last.json
    assert sent["messages"][0] == {"role": "system", "content": "Be kind."}
    assert sent["stream"] is True and sent["temperature"] == 0.3
    app.extensions["billing"].flush()
    with app.app_context():
        record = db.session.scalar(select(UsageRecord))
        assert record.key_id == 0 and float(record.price) == usage_chunk["credits_consumed"]
    assert "Playground" in client.get("/console/usage").get_data(as_text=True)


def test_plan_limits_and_credits_apply(app, client, upstream):
    signup(client)
    token = csrf_token(client, "/playground")
    refused = ask(client, token, model="gpt-big")
    assert refused.status_code == 403
    assert refused.get_json()["error"]["code"] == "model_not_allowed"
    page = client.get("/playground").get_data(as_text=True)
    assert '<option value="gpt-test">' in page and "gpt-big" not in page
    too_costly = ask(client, token, max_tokens=100_000)
    assert too_costly.status_code == 402
    assert too_costly.get_json()["error"]["code"] == "insufficient_credits"
    assert ask(client, token).status_code == 200  # the 403 and 402 counted: 3 a minute
    limited = ask(client, token)
    assert limited.status_code == 429 and "Retry-After" in limited.headers
    other = client.application.test_client()
    signup(other, "other@example.com")  # counted per user, not for everyone
    assert ask(other, csrf_token(other, "/playground")).status_code == 200


def test_bad_requests(app, client):
    assert client.post("/playground/api/chat", json={}).status_code == 400  # no CSRF token
    anonymous = app.test_client()
    reply = anonymous.post("/playground/api/chat", json={},
                           headers={"X-CSRFToken": csrf_token(anonymous, "/login")})
    assert reply.status_code == 401 and reply.get_json()["error"]["code"] == "login_required"
    signup(client)
    with app.app_context():  # more than the free plan's 3 a minute
        accounts.set_plan(db.session, db.session.scalar(select(User)), "standard",
                          app.extensions["keys"].plans)
    token = csrf_token(client, "/playground")
    for body, param in (({"messages": []}, "messages"),
                        ({"messages": [{"role": "system", "content": "x"}]}, "messages[0].role"),
                        ({"temperature": 5}, "temperature"), ({"max_tokens": "9"}, "max_tokens")):
        reply = ask(client, token, **body)
        assert reply.status_code == 400, body
        assert reply.get_json()["error"]["param"] == param


def test_disabled_user_is_logged_out(app, client):
    signup(client)
    with app.app_context():
        user = db.session.scalar(select(User))
        accounts.set_disabled(db.session, user, True)
    assert client.get("/console").status_code == 302
    assert client.get("/playground").status_code == 302



def test_the_page_offers_chat_models_only(app, client, upstream):
    """An embedding model cannot chat: the playground's model list leaves it out."""
    signup(client)
    page = client.get("/playground").get_data(as_text=True)
    assert "gpt-test" in page and "embed-test" not in page

