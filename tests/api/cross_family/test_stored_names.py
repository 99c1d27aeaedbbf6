"""Names that reach the ledger or a query are checked first: a model name the database cannot
store (NUL, control characters, a lone surrogate, longer than its column) is a 400 in the
caller's format naming the field, before anything is held or forwarded, on every family."""

import json
from decimal import Decimal

import pytest
from sqlalchemy import select

from extensions import db
from models import Hold, UsageRecord
from services.billing import balance, ledger_gap
from tests.conftest import provider_entry

BAD_NAMES = {"nul": "gg-a\x00b", "escape": "gg-a\x1b[31m", "c1": "gg-a\x85",
             "surrogate": "gg-a\ud800", "too_long": "gg-" + "a" * 254}


@pytest.fixture
def settings(upstream):
    # glob patterns route any name as it is, like the OpenRouter preset's "*/*"
    return {"PROVIDERS": [provider_entry(upstream, "any-openai", ("gg-*",)),
                          provider_entry(upstream, "any-claude", ("gg-*",), type="anthropic"),
                          provider_entry(upstream, "any-gemini", ("gg-*",), type="gemini")]}


@pytest.fixture
def user(app):
    from tests.conftest import make_user
    return make_user(app, credits=Decimal(100))


def openai_call(model, **extra):
    return "/v1/chat/completions", {"model": model, **extra,
                                    "messages": [{"role": "user", "content": "hi"}]}


def anthropic_call(model, **extra):
    return "/v1/messages", {"model": model, "max_tokens": 10, **extra,
                            "messages": [{"role": "user", "content": "hi"}]}


def responses_call(model, **extra):
    return "/v1/responses", {"model": model, "input": "hi", **extra}


def gemini_call(model, method="generateContent", **extra):
    from urllib.parse import quote
    return (f"/v1beta/models/{quote(model, safe='', errors='surrogatepass')}:{method}",
            {"contents": [{"parts": [{"text": "hi"}]}], **extra})


def post(client, key, path, body):
    return client.post(path, data=json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {key}"})


def field_named(family, resp, field):
    error = resp.get_json()["error"]
    if family in ("openai", "responses"):
        return error["param"] == field
    return f"'{field}'" in error["message"]


def nothing_held_or_forwarded(app, upstream, user_id):
    assert app.extensions["billing"].flush()
    assert upstream.received == []
    with app.app_context():
        assert db.session.scalars(select(Hold)).all() == []
        assert db.session.scalars(select(UsageRecord)).all() == []
        assert balance(db.session, user_id)[0] == Decimal(100)
        assert ledger_gap(db.session, user_id) == 0


CALLS = {"openai": openai_call, "anthropic": anthropic_call, "gemini": gemini_call,
         "responses": responses_call}
SHAPES = {"openai": lambda e: "type" in e["error"] and "param" in e["error"],
          "responses": lambda e: "type" in e["error"] and "param" in e["error"],
          "anthropic": lambda e: e["type"] == "error",
          "gemini": lambda e: e["error"]["status"] == "INVALID_ARGUMENT"}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("name", list(BAD_NAMES))
@pytest.mark.parametrize("family", list(CALLS))
def test_unstorable_model_names_are_400(app, client, upstream, user, family, name, stream):
    user_id, key = user
    if family == "gemini" and name == "surrogate":
        pytest.skip("a URL path decodes to valid Unicode (U+FFFD): no lone surrogate")
    if family == "gemini":
        path, body = gemini_call(BAD_NAMES[name],
                                 "streamGenerateContent" if stream else "generateContent")
    else:
        path, body = CALLS[family](BAD_NAMES[name], stream=stream)
    resp = post(client, key, path, body)
    assert resp.status_code == 400, resp.get_data()
    assert SHAPES[family](resp.get_json()) and field_named(family, resp, "model")
    nothing_held_or_forwarded(app, upstream, user_id)


@pytest.mark.parametrize("family", list(CALLS))
def test_unstorable_provider_names_are_400(app, client, upstream, user, family):
    user_id, key = user
    path, body = CALLS[family]("gg-fine")
    resp = post(client, key, path, {**body, "provider": "any\x00openai"})
    assert resp.status_code == 400 and field_named(family, resp, "provider")
    nothing_held_or_forwarded(app, upstream, user_id)


def test_gemini_count_tokens_checks_the_path_model(app, client, upstream, user):
    user_id, key = user
    resp = post(client, key, *gemini_call("gg-a\x00", "countTokens"))
    assert resp.status_code == 400 and field_named("gemini", resp, "model")
    nothing_held_or_forwarded(app, upstream, user_id)


def test_longest_storable_name_is_served_and_recorded(app, client, upstream, user):
    user_id, key = user
    name = "gg-" + "é" * 253  # 256 characters: the column's length, in characters
    resp = post(client, key, *openai_call(name))
    assert resp.status_code == 200
    assert app.extensions["billing"].flush()
    with app.app_context():
        assert db.session.scalars(select(UsageRecord.model)).all() == [name]
        assert ledger_gap(db.session, user_id) == 0
