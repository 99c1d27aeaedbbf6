"""The admin API: users, idempotent top-ups, keys, plans and disabling, behind an admin key;
JSON errors in the OpenAI shape; 403 for a key whose user is not an admin."""

import threading

import openai
import pytest
import requests
from sqlalchemy import select

from extensions import db
from models import Grant, User
from services import accounts
from tests.conftest import make_user


@pytest.fixture
def admin_key(app):
    user_id, key = make_user(app, "root")
    with app.app_context():
        accounts.set_admin(db.session, db.session.get(User, user_id), True)
    return key


def call(gateway, key, method, path, **kwargs):
    return requests.request(method, f"{gateway}/admin/api{path}", timeout=10,
                            headers={"Authorization": f"Bearer {key}", **kwargs.pop("headers", {})},
                            **kwargs)


def test_user_lifecycle(app, gateway, admin_key):
    made = call(gateway, admin_key, "POST", "/users",
                json={"email": "Carol@Example.com", "plan": "pro", "credits": 40})
    assert made.status_code == 201, made.text
    user = made.json()
    assert (user["email"], user["plan"], user["balance"], user["disabled"]) == (
        "carol@example.com", "pro", 40.0, False)
    uid = user["id"]
    key = call(gateway, admin_key, "POST", f"/users/{uid}/keys", json={"name": "ci"}).json()
    assert key["key"].startswith("tg-") and key["prefix"] == key["key"][:7] + "…" + key["key"][-4:]
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key["key"], max_retries=0)
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    got = call(gateway, admin_key, "GET", f"/users/{uid}").json()
    assert got["keys"][0]["name"] == "ci" and "key" not in got["keys"][0]
    assert key["key"] not in call(gateway, admin_key, "GET", f"/users/{uid}").text

    patched = call(gateway, admin_key, "PATCH", f"/users/{uid}",
                   json={"plan": "standard", "disabled": True}).json()
    assert patched["plan"] == "standard" and patched["disabled"] is True
    with pytest.raises(openai.AuthenticationError):  # same worker: the cache was dropped
        sdk.chat.completions.create(model="gpt-test",
                                    messages=[{"role": "user", "content": "hi"}])
    call(gateway, admin_key, "PATCH", f"/users/{uid}", json={"disabled": False})
    sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "hi"}])

    deleted = call(gateway, admin_key, "DELETE", f"/keys/{key['id']}")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt-test",
                                    messages=[{"role": "user", "content": "hi"}])


def test_top_up_retried_with_the_same_key_is_applied_once(app, gateway, admin_key):
    uid = call(gateway, admin_key, "POST", "/users", json={"email": "dan@example.com"}).json()["id"]
    body = {"amount": "12.5", "reason": "invoice 1001", "idempotency_key": "inv-1001"}
    first = call(gateway, admin_key, "POST", f"/users/{uid}/credits", json=body)
    again = call(gateway, admin_key, "POST", f"/users/{uid}/credits", json=body)
    assert first.status_code == 201 and again.status_code == 200
    assert again.headers["Idempotent-Replayed"] == "true"
    assert first.json()["grant"]["id"] == again.json()["grant"]["id"]
    assert again.json()["balance"] == 12.5
    # retried at the same moment from many clients: still once
    results = []
    threads = [threading.Thread(target=lambda: results.append(call(
        gateway, admin_key, "POST", f"/users/{uid}/credits",
        headers={"Idempotency-Key": "inv-1002"}, json={"amount": 5, "reason": "r"})))
        for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r.status_code for r in results) == [200] * 7 + [201], [r.text for r in results]
    assert call(gateway, admin_key, "GET", f"/users/{uid}").json()["balance"] == 17.5
    with app.app_context():
        assert len(db.session.scalars(select(Grant).where(Grant.user_id == uid)).all()) == 2
    clash = call(gateway, admin_key, "POST", f"/users/{uid}/credits",
                 json={**body, "amount": 99})
    assert clash.status_code == 409 and clash.json()["error"]["code"] == "idempotency_key_reused"
    missing = call(gateway, admin_key, "POST", f"/users/{uid}/credits", json={"amount": 1})
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "idempotency_key"


def test_non_admin_key_gets_403_and_no_key_401(app, gateway, admin_key):
    _, plain = make_user(app, "pleb")
    for method, path in (("GET", "/users/1"), ("POST", "/users"), ("PATCH", "/users/1"),
                         ("DELETE", "/keys/1"), ("POST", "/users/1/credits")):
        reply = call(gateway, plain, method, path, json={})
        assert reply.status_code == 403, (method, path)
        assert reply.json()["error"]["type"] == "permission_error"
    anonymous = requests.get(f"{gateway}/admin/api/users/1", timeout=10)
    assert anonymous.status_code == 401 and anonymous.json()["error"]["code"] == "invalid_api_key"


def test_bad_requests_get_openai_shaped_errors(gateway, admin_key):
    cases = [("GET", "/users/999", None, 404), ("DELETE", "/keys/999", None, 404),
             ("GET", "/users/99999999999999999999", None, 404),
             ("DELETE", "/keys/99999999999999999999", None, 404),
             ("POST", "/users", {"email": "bad\x00@example.com"}, 400),
             ("POST", "/users", {"email": "e@example.com", "plan": "gold"}, 400),
             ("POST", "/users", {"email": "e@example.com", "plan": ["pro"]}, 400),
             ("POST", "/users", {"email": "e@example.com", "credits": -5}, 400),
             ("PATCH", "/users/1", {"plan": {"x": 1}}, 400),
             ("POST", "/users/1/credits", {"amount": -1e9, "idempotency_key": "take"}, 400),
             ("POST", "/users/1/credits", {"amount": "abc", "idempotency_key": "k"}, 400),
             ("POST", "/users/1/credits", {"amount": 0.0000001, "idempotency_key": "k"}, 400),
             ("PATCH", "/users/1", {"disabled": "yes"}, 400),
             ("PATCH", "/users/1", {"colour": "red"}, 400),
             ("POST", "/users/1/keys", {"expires_in_days": 0}, 400),
             ("POST", "/users/1/keys", {"models": ["ok", "not ok!"]}, 400)]
    for method, path, body, status in cases:
        reply = call(gateway, admin_key, method, path, json=body)
        assert reply.status_code == status, (path, body, reply.text)
        error = reply.json()["error"]
        assert set(error) >= {"message", "type", "code", "param"}
    dup = call(gateway, admin_key, "POST", "/users", json={"email": "root"})
    assert dup.status_code == 409
    not_json = call(gateway, admin_key, "POST", "/users", data=b"{nope")
    assert not_json.status_code == 400
