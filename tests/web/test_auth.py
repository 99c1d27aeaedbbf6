"""Sign-up, log-in and log-out: passwords hashed, sessions on the server, cookies locked down,
sign-up credits and closing, log-in throttled per address and per account, CSRF refused."""

from decimal import Decimal

import pytest
from sqlalchemy import select

from extensions import db
from models import User, WebSession
from services.billing import balance
from tests.web.helpers import TOKEN, csrf_token, login, signup


@pytest.fixture
def settings():
    return {"SIGNUP_CREDITS": 25, "LOGIN_LIMIT": "3/minute", "SIGNUP_LIMIT": "4/hour"}


def user_row(app, email):
    with app.app_context():
        user = db.session.scalar(select(User).where(User.name == email))
        db.session.expunge_all()
        return user


def test_signup_lands_on_console_with_credits_and_default_plan(app, client):
    reply = signup(client, "Ann@Example.com")
    assert reply.status_code == 303 and reply.headers["Location"] == "/console"
    user = user_row(app, "ann@example.com")  # emails are kept lower-case
    assert user.plan is None  # the default plan
    assert user.password_hash.startswith("$argon2id$") and "correct horse" not in \
        user.password_hash
    with app.app_context():
        assert balance(db.session, user.id) == (Decimal(25), Decimal(25))
    page = client.get("/console").get_data(as_text=True)
    assert "25.00" in page and "ann@example.com" in page


def test_session_cookie_flags(app, client):
    reply = signup(client)
    cookie = reply.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and "Secure" not in cookie
    secure, https = app.test_client(), "https://gateway.example"
    page = secure.get("/signup", base_url=https).get_data(as_text=True)
    reply = secure.post("/signup", base_url=https, headers={"Referer": https + "/signup"},
                        data={"email": "cy@example.com", "password": "correct horse 1",
                              "csrf_token": TOKEN.search(page).group(1)})
    assert reply.status_code == 303
    assert "Secure" in reply.headers["Set-Cookie"]


def test_signup_can_be_closed(app, client):
    app.config["ALLOW_SIGNUP"] = False
    reply = signup(client)
    assert reply.status_code == 403 and "closed" in reply.get_data(as_text=True)
    assert user_row(app, "ann@example.com") is None


def test_signup_refuses_bad_input_and_duplicates(client):
    assert signup(client, "not-an-email").status_code == 400
    assert signup(client, "ann@example.com", "short").status_code == 400
    assert signup(client, "a\x07b@example.com").status_code == 400
    assert signup(client, "ann@example.com").status_code == 303
    other = client.application.test_client()
    reply = signup(other, "ann@example.com")
    assert reply.status_code == 409 and "exists" in reply.get_data(as_text=True)


def test_signups_are_limited_per_address(app):
    for n in range(4):
        assert signup(app.test_client(), f"u{n}@example.com").status_code == 303
    reply = signup(app.test_client(), "u9@example.com")
    assert reply.status_code == 429 and user_row(app, "u9@example.com") is None


def test_login_and_wrong_password(app, client):
    signup(client)
    fresh = app.test_client()
    assert login(fresh, "ann@example.com", "wrong password").status_code == 401
    assert login(fresh, "nobody@example.com").status_code == 401
    reply = login(fresh, "ANN@example.com")
    assert reply.status_code == 303 and reply.headers["Location"] == "/console"
    assert fresh.get("/console").status_code == 200


def test_login_next_stays_on_this_site(app, client):
    signup(client)
    fresh = app.test_client()
    token = csrf_token(fresh)
    for target, lands in (("/console/keys", "/console/keys"), ("//evil.example/x", "/console"),
                          ("https://evil.example/", "/console")):
        reply = fresh.post("/login", data={"email": "ann@example.com", "next": target,
                                           "password": "correct horse 1", "csrf_token": token})
        assert reply.headers["Location"] == lands
        token = csrf_token(fresh)


def test_login_is_limited_per_account(app, client):
    signup(client)
    for _ in range(3):  # from three different addresses
        guesser = app.test_client()
        guesser.environ_base["REMOTE_ADDR"] = f"10.0.0.{_ + 1}"
        assert login(guesser, "ann@example.com", "guess").status_code == 401
    fresh = app.test_client()
    fresh.environ_base["REMOTE_ADDR"] = "10.9.9.9"
    reply = login(fresh, "ann@example.com")  # even the right password waits now
    assert reply.status_code == 429 and "Retry-After" in reply.headers


def test_login_is_limited_per_address(app, client):
    signup(client)
    guesser = app.test_client()
    for n in range(3):
        assert login(guesser, f"someone{n}@example.com", "guess").status_code == 401
    assert login(guesser, "ann@example.com").status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.1.1"
    assert login(other, "ann@example.com").status_code == 303


def test_logout_ends_the_session_on_the_server(app, client):
    signup(client)
    cookie = client.get_cookie("tollgate_session").value
    token = csrf_token(client, "/console")
    assert client.post("/logout", data={"csrf_token": token}).status_code == 303
    assert client.get("/console").status_code == 302
    replay = app.test_client()
    replay.set_cookie("tollgate_session", cookie)  # the cookie as it was before log-out
    assert replay.get("/console").status_code == 302
    with app.app_context():
        assert db.session.scalar(select(WebSession.id)) is None


def test_form_post_without_csrf_token_is_refused(app, client):
    signup(client)
    for path, data in (("/console/keys", {"name": "x"}), ("/logout", {}),
                       ("/login", {"email": "ann@example.com", "password": "correct horse 1"})):
        reply = client.post(path, data=data)
        assert reply.status_code == 400, path
        assert "form could not be checked" in reply.get_data(as_text=True)
    wrong = client.post("/console/keys", data={"name": "x", "csrf_token": "forged"})
    assert wrong.status_code == 400
    assert client.post("/playground/api/chat", json={"model": "gpt-test"}).status_code == 400


def test_pages_send_a_strict_csp(client):
    for path in ("/", "/login", "/docs", "/pricing", "/static/app.js"):
        csp = client.get(path).headers["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "default-src 'none'" in csp, path
        assert "unsafe-inline" not in csp
    page = client.get("/").get_data(as_text=True)
    assert "<script>" not in page and " onclick=" not in page and "style=" not in page
