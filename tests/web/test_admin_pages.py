"""The admin pages: only admins see them; grants (a double-submitted form applies once), plan
changes and disabling go through the same services as the admin API."""

import pytest
from sqlalchemy import select

from extensions import db
from models import Grant, User
from services import accounts
from services.billing import balance
from tests.conftest import provider_entry
from tests.web.helpers import post_form, signup


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": [provider_entry(upstream)]}


@pytest.fixture
def admin(app):
    client = app.test_client()
    signup(client, "root@example.com")
    with app.app_context():
        accounts.set_admin(db.session, db.session.scalar(
            select(User).where(User.name == "root@example.com")), True)
    return client


def user(app, email):
    with app.app_context():
        row = db.session.scalar(select(User).where(User.name == email))
        db.session.expunge_all()
        return row


def test_only_admins_see_admin_pages(app, admin):
    plain = app.test_client()
    signup(plain, "ann@example.com")
    target = user(app, "ann@example.com").id
    assert plain.get("/admin").status_code == 404
    assert post_form(plain, f"/admin/users/{target}/credits",
                     {"amount": "5", "idempotency_key": "x"}, page="/console").status_code == 404
    assert app.test_client().get("/admin").status_code == 302  # to the log-in page
    page = admin.get("/admin").get_data(as_text=True)
    assert "ann@example.com" in page and "Providers" in page and "gpt-test" in page


def test_grant_plan_and_disable(app, admin):
    plain = app.test_client()
    signup(plain, "ann@example.com")
    target = user(app, "ann@example.com").id
    form = {"amount": "7.25", "reason": "invoice 3", "idempotency_key": "form-123"}
    for _ in range(2):  # the same form sent twice
        reply = post_form(admin, f"/admin/users/{target}/credits", form, page="/admin")
        assert reply.status_code == 303
    with app.app_context():
        assert balance(db.session, target)[0] == 7.25
        assert db.session.scalar(select(Grant.reason).where(Grant.user_id == target)) == \
            "invoice 3"
    assert "Granted 7.25 credits" in admin.get("/admin").get_data(as_text=True)
    assert post_form(admin, f"/admin/users/{target}/credits", {"amount": "lots"},
                     page="/admin").status_code == 400

    assert post_form(admin, f"/admin/users/{target}/plan", {"plan": "pro"},
                     page="/admin").status_code == 303
    assert user(app, "ann@example.com").plan == "pro"
    assert post_form(admin, f"/admin/users/{target}/plan", {"plan": "gold"},
                     page="/admin").status_code == 400

    assert post_form(admin, f"/admin/users/{target}/status", {"disabled": "true"},
                     page="/admin").status_code == 303
    assert user(app, "ann@example.com").disabled
    assert plain.get("/console").status_code == 302  # the session ended with the disable
    assert post_form(admin, f"/admin/users/{target}/status", {"disabled": "false"},
                     page="/admin").status_code == 303
    assert not user(app, "ann@example.com").disabled
    me = user(app, "root@example.com").id
    assert post_form(admin, f"/admin/users/{me}/status", {"disabled": "true"},
                     page="/admin").status_code == 400
    assert admin.post(f"/admin/users/{target}/plan", data={"plan": "free"}).status_code == 400
