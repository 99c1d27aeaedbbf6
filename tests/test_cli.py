"""Operator commands: users, keys (printed once, listed without the key), revoke, providers."""

from extensions import db
from models import ApiKey


def run(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    return result


def test_user_and_key_lifecycle(app, client):
    assert "created user bob" in run(app, "users", "create", "bob").output
    assert run(app, "users", "create", "bob").exit_code != 0
    created = run(app, "keys", "create", "bob", "--name", "laptop", "--expires-days", "30")
    key = created.stdout.strip().splitlines()[-1]
    assert key.startswith("tg-")
    listing = run(app, "keys", "list").output
    assert "bob" in listing and "laptop" in listing and "active" in listing
    assert key not in listing and key[-4:] in listing
    auth = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/models", headers=auth).status_code == 200
    with app.app_context():
        key_id = db.session.query(ApiKey.id).scalar()
    assert "revoked" in run(app, "keys", "revoke", str(key_id)).output
    assert "revoked" in run(app, "keys", "list", "--user", "bob").output
    assert run(app, "keys", "revoke", str(key_id)).exit_code != 0
    app.extensions["keys"].forget()
    assert client.get("/v1/models", headers=auth).status_code == 401
    assert run(app, "keys", "create", "nobody").exit_code != 0


def test_first_key_only_once(app, client):
    out = run(app, "first-key").output
    key = [line.strip() for line in out.splitlines() if line.strip().startswith("tg-")][0]
    assert client.get("/v1/models", headers={"x-api-key": key}).status_code == 200
    balance = client.get("/v1/credits", headers={"x-api-key": key}).json["data"]
    assert balance == {"balance": 1000.0, "amount": 1000.0}
    assert "pro" in run(app, "users", "show", "admin").output
    again = run(app, "first-key")
    assert "tg-" not in again.output


def test_credits_grant_and_show(app, client, api_key):
    assert "balance 1250" in run(app, "credits", "grant", "alice", "250.5", "--reason",
                                 "invoice 7").output.replace(".500000", "")
    assert run(app, "credits", "grant", "alice", "abc").exit_code != 0
    assert run(app, "credits", "grant", "alice", "0.0000001").exit_code != 0
    client.post("/v1/chat/completions", headers={"x-api-key": api_key},
                json={"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]})
    app.extensions["billing"].flush()
    shown = run(app, "credits", "show", "alice").output
    assert "credited in all 1250.500000" in shown and "gpt-test" in shown


def test_providers_listing(app):
    out = run(app, "providers").output
    assert "fake\topenai\thttp://127.0.0.1" in out and "key set" in out
    assert "gpt-test" in out and "CANARY" not in out


def test_names_the_database_cannot_store_are_refused(app):
    """User and key names, grant reasons and look-ups are checked before they reach a row or a
    query: no control characters, valid Unicode, within the column's length."""
    from models import User
    for bad in ("bo\x00b", "bo\x1bb", "x" * 121):
        result = run(app, "users", "create", bad)
        assert result.exit_code != 0 and "name" in result.output
    assert run(app, "users", "create", "bob").exit_code == 0
    result = run(app, "keys", "create", "bob", "--name", "lap\x00top")
    assert result.exit_code != 0 and "name" in result.output
    result = run(app, "credits", "grant", "bob", "5", "--reason", "r" * 501)
    assert result.exit_code != 0 and "reason" in result.output
    assert run(app, "keys", "list", "--user", "bo\x00b").exit_code != 0
    with app.app_context():
        assert [u.name for u in db.session.query(User).all()] == ["bob"]
        assert db.session.query(ApiKey).count() == 0
