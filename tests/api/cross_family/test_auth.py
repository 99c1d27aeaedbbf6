"""API keys: every accepted header, and 401 for missing, unknown, revoked and expired keys."""

import time
from datetime import timedelta

import pytest
from sqlalchemy import event

from extensions import db
from models import ApiKey, utcnow
from services.keys import revoke_key
from tests.conftest import make_user

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize("how", ["bearer", "x-api-key", "x-goog-api-key", "query"])
def test_every_key_location(client, api_key, how):
    headers, url = {}, "/v1/chat/completions"
    if how == "bearer":
        headers["Authorization"] = f"Bearer {api_key}"
    elif how == "query":
        url += f"?key={api_key}"
    else:
        headers[how] = api_key
    resp = client.post(url, json=BODY, headers=headers)
    assert resp.status_code == 200, resp.json
    assert resp.json["choices"][0]["message"]["content"] == "echo: hi"


@pytest.mark.parametrize("headers", [
    {}, {"Authorization": "Bearer "}, {"Authorization": "Bearer tg-unknown"},
    {"Authorization": "Basic abc"}, {"Authorization": "Bearer " + "x" * 10_000},
    {"x-api-key": "' OR '1'='1"},
])
def test_bad_keys_get_401_openai_shape(client, upstream, headers):
    resp = client.post("/v1/chat/completions", json=BODY, headers=headers)
    assert resp.status_code == 401
    assert resp.json == {"error": {"message": resp.json["error"]["message"],
                                   "type": "authentication_error", "param": None,
                                   "code": "invalid_api_key"}}
    assert upstream.received == []


def test_revoked_key_stops_within_ttl(app, client):
    app.extensions["keys"]._cache.ttl  # noqa: B018  (the cache exists)
    user_id, key = make_user(app)
    auth = {"Authorization": f"Bearer {key}"}
    assert client.post("/v1/chat/completions", json=BODY, headers=auth).status_code == 200
    with app.app_context():
        key_id = db.session.query(ApiKey.id).filter_by(user_id=user_id).scalar()
        assert revoke_key(db.session, key_id)
    deadline = time.monotonic() + app.config["KEY_CACHE_TTL"] + 2
    while time.monotonic() < deadline:
        if client.post("/v1/chat/completions", json=BODY, headers=auth).status_code == 401:
            break
        time.sleep(0.2)
    else:
        pytest.fail("revoked key still accepted after the cache TTL")


def test_expired_key_is_401(app, client):
    _, key = make_user(app, expires_at=utcnow() - timedelta(seconds=1))
    resp = client.post("/v1/chat/completions", json=BODY, headers={"x-api-key": key})
    assert resp.status_code == 401


def test_key_lookup_is_cached(app, client, api_key):
    """Ten requests with one key: at most one database query for authentication."""
    statements = []
    with app.app_context():
        engine = db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731
    event.listen(engine, "before_cursor_execute", listener)
    try:
        for _ in range(10):
            resp = client.post("/v1/chat/completions", json=BODY,
                               headers={"Authorization": f"Bearer {api_key}"})
            assert resp.status_code == 200
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert len([s for s in statements if "api_keys" in s]) <= 1


def test_keys_stored_only_as_digests(app, api_key):
    with app.app_context():
        rows = db.session.execute(db.text("SELECT * FROM api_keys")).all()
    dump = repr(rows)
    assert api_key not in dump and api_key[3:] not in dump
    assert api_key[-4:] in dump  # the hint shown in key lists
