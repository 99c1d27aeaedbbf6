"""Plans from config and per-user overrides (services.plans: plain data, no app)."""

import pytest

from services.plans import PlanBook


def test_default_plans_are_the_documented_ones():
    plans = PlanBook({}, "free").plans
    shape = {name: (p.per_hour, p.minute_limit("chat"), p.minute_limit("images"), p.models)
             for name, p in plans.items()}
    assert shape == {
        "free": (200, 10, 5, None),
        "standard": (None, 60, 20, None),
        "pro": (2000, 300, 60, None),
        "lifetime": (2000, 300, 60, None),
        "enterprise": (None, None, None, None),
    }


def test_a_configured_plan_replaces_the_default_whole():
    book = PlanBook({"free": {"requests_per_minute": {"chat": 3}}, "team": {"models": ["a*"]}},
                    "free")
    free = book.plans["free"]
    assert (free.per_hour, free.minute_limit("chat"), free.minute_limit("images")) == (
        None, 3, None)
    assert book.plans["pro"].per_hour == 2000
    assert book.plans["team"].allows("abc") and not book.plans["team"].allows("b")


def test_overrides_change_only_what_they_name():
    book = PlanBook({}, "free")
    plan = book.for_user("pro", {"requests_per_hour": None,
                                 "requests_per_minute": {"chat": 7}, "models": ["gpt-4o*"]})
    assert plan.name == "pro"
    assert (plan.per_hour, plan.minute_limit("chat"), plan.minute_limit("images")) == (None, 7, 60)
    assert plan.allows("gpt-4o-mini") and not plan.allows("o3")
    assert book.for_user(None, None) is book.plans["free"]


def test_unknown_user_plan_falls_back_to_the_default(caplog):
    assert PlanBook({}, "standard").for_user("gold", None).name == "standard"
    assert "gold" in caplog.text


@pytest.mark.parametrize("table", [
    {"free": {"requests_per_hour": 0}},
    {"free": {"requests_per_hour": "100"}},
    {"free": {"requests_per_minute": {"chat": True}}},
    {"free": {"requests_per_minute": 10}},
    {"free": {"models": "gpt-4o"}},
    {"free": {"per_hour": 10}},
])
def test_bad_plan_tables_are_refused(table):
    with pytest.raises(ValueError, match="plan free"):
        PlanBook(table, "free")


def test_default_plan_must_exist():
    with pytest.raises(ValueError, match="DEFAULT_PLAN"):
        PlanBook({}, "gold")
