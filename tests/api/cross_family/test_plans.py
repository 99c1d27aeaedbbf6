"""Model access by plan: the models list and chat requests, with per-user overrides set by CLI."""

import time

import openai
import pytest

from tests.conftest import make_user, provider_entry

PLANS = {"free": {"requests_per_minute": {"chat": 50}, "models": ["gpt-test", "mini-*"]}}
CHAT_MESSAGES = [{"role": "user", "content": "hi"}]
CACHE_TTL = 0.1  # seconds: plan changes reach a cached key within this


@pytest.fixture
def settings(upstream):
    return {"PLANS": PLANS, "KEY_CACHE_TTL": CACHE_TTL,
            "PROVIDERS": [provider_entry(upstream, models=("gpt-test", "gpt-big", "mini-1"))]}


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


def cli(app, *args):
    result = app.test_cli_runner().invoke(args=list(args))
    assert result.exit_code == 0, result.output
    return result.output


def change(app, *args):
    """An operator change, and the wait until every cached key sees it."""
    output = cli(app, *args)
    time.sleep(CACHE_TTL * 1.5)
    return output


def test_models_list_shows_only_what_the_plan_allows(sdk):
    assert sorted(m.id for m in sdk.models.list()) == ["gpt-test", "mini-1"]
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("gpt-big")


def test_disallowed_model_is_403_and_not_forwarded(sdk, upstream):
    with pytest.raises(openai.PermissionDeniedError) as info:
        sdk.chat.completions.create(model="gpt-big", messages=CHAT_MESSAGES)
    assert info.value.status_code == 403
    assert info.value.body["type"] == "permission_error"
    assert info.value.body["param"] == "model"
    assert not upstream.received
    assert sdk.chat.completions.create(model="mini-1", messages=CHAT_MESSAGES).choices


def test_overrides_and_plan_changes_take_effect(app, gateway, upstream):
    _, key = make_user(app, "carol")
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    change(app, "users", "limits", "carol", "--models", "gpt-big")
    assert [m.id for m in sdk.models.list()] == ["gpt-big"]
    assert sdk.chat.completions.create(model="gpt-big", messages=CHAT_MESSAGES).choices
    with pytest.raises(openai.PermissionDeniedError):
        sdk.chat.completions.create(model="gpt-test", messages=CHAT_MESSAGES)

    cli(app, "users", "limits", "carol", "--reset")
    change(app, "users", "plan", "carol", "pro")  # pro (a default plan) allows every model
    assert sorted(m.id for m in sdk.models.list()) == ["gpt-big", "gpt-test", "mini-1"]
    assert "pro: 2000/hour, chat 300/min, embeddings 600/min, images 60/min" in cli(
        app, "users", "show", "carol")


def test_cli_refuses_unknown_plans_and_bad_limits(app):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["users", "create", "dave", "--plan", "gold"]).exit_code != 0
    cli(app, "users", "create", "dave", "--plan", "standard")
    for bad in (["--per-hour", "0"], ["--per-minute", "chat"], ["--per-minute", "chat=x"]):
        assert runner.invoke(args=["users", "limits", "dave", *bad]).exit_code != 0
    assert runner.invoke(args=["users", "plan", "dave", "gold"]).exit_code != 0
    listed = cli(app, "users", "list")
    assert "dave\tstandard\n" in listed, "a refused change was stored"
