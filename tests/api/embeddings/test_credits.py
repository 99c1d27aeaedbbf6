"""Embeddings cost credits per input token: held before forwarding, charged once per request
from the upstream's count or, when it gives none, from ours (marked estimated)."""

from decimal import Decimal

import openai
import pytest

from tests.api.cross_family.test_credits import books
from tests.api.embeddings.conftest import GEMINI_MODEL, OPENAI_MODEL, embedding_providers
from tests.conftest import make_user
from tests.fake_upstream import Script

PRICES = {OPENAI_MODEL: {"input": 0.5, "output": 100, "minimum": 0.001},
          GEMINI_MODEL: {"input": 0.2, "minimum": 0.001}}


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": embedding_providers(upstream), "RATELIMIT_ENABLED": False,
            "PRICING": {"models": PRICES}}


@pytest.fixture
def user(app):
    return make_user(app, credits=Decimal(10))


def sdk(gateway, key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)


def test_charged_from_the_upstreams_count(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage={"prompt_tokens": 1000, "total_tokens": 1000}))
    reply = sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input=["a", "b"])
    assert reply.usage.prompt_tokens == 1000
    assert reply.model_extra["credits_consumed"] == 0.5  # input price only: no output
    bal, [record], holds, gap = books(app, user_id)
    assert bal == Decimal("9.5") and holds == [] and gap == 0
    assert (record.model, record.input_tokens, record.output_tokens) == (OPENAI_MODEL, 1000, 0)
    assert record.price == Decimal("0.5") and not record.estimated and not record.partial


def test_the_record_carries_the_requests_id_and_the_access_line_its_credits(app, gateway,
                                                                           upstream, user,
                                                                           caplog):
    user_id, key = user
    upstream.push(Script(usage={"prompt_tokens": 1000, "total_tokens": 1000}))
    with caplog.at_level("INFO", logger="tollgate.access"):
        raw = sdk(gateway, key).embeddings.with_raw_response.create(model=OPENAI_MODEL,
                                                                    input=["a"])
    _, [record], _, _ = books(app, user_id)
    assert record.request_id == raw.headers["x-request-id"]
    [line] = [r.getMessage() for r in caplog.records if r.name == "tollgate.access"
              and getattr(r, "request_id", None) == raw.headers["x-request-id"]]
    assert "credits=0.5" in line and f"model={OPENAI_MODEL}" in line


def test_an_upstream_count_above_the_hold_takes_only_what_the_balance_has(app, gateway,
                                                                         upstream):
    """The hold was sized by our count; the upstream counted more. The excess is taken once,
    and only as far as the balance goes."""
    user_id, key = make_user(app, "short", credits=Decimal("0.3"))
    upstream.push(Script(usage={"prompt_tokens": 1000, "total_tokens": 1000}))
    sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input="a")
    bal, [record], holds, gap = books(app, user_id)
    assert bal == 0 and record.price == Decimal("0.3") and holds == [] and gap == 0


def test_counted_and_marked_estimated_without_upstream_usage(app, gateway, upstream, user):
    """Gemini's embeddings report no usage: the inputs are counted (1 token per 3 bytes)."""
    user_id, key = user
    texts = ["x" * 300] * 250  # 100 tokens each; three upstream calls, one record
    raw = sdk(gateway, key).embeddings.with_raw_response.create(model=GEMINI_MODEL,
                                                                input=texts)
    assert raw.headers["x-tollgate-token-count"] == "estimated"
    assert raw.parse().usage.prompt_tokens == 25_000
    bal, [record], holds, gap = books(app, user_id)
    assert record.input_tokens == 25_000 and record.estimated and not record.partial
    assert record.price == Decimal(5) and bal == Decimal(5) and holds == [] and gap == 0


def test_openai_compatible_without_usage_is_estimated(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage=None))
    reply = sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input="y" * 30)
    assert reply.usage.prompt_tokens == 10
    _, [record], _, gap = books(app, user_id)
    assert record.estimated and record.input_tokens == 10 and gap == 0


def test_the_minimum_applies(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(usage={"prompt_tokens": 1, "total_tokens": 1}))
    sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input="z")
    _, [record], _, _ = books(app, user_id)
    assert record.price == Decimal("0.001")


def test_a_balance_short_of_the_hold_is_402_and_nothing_is_forwarded(app, gateway, upstream):
    user_id, key = make_user(app, "poor", credits=Decimal("0.01"))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input=["w" * 3000])
    assert caught.value.status_code == 402
    assert caught.value.body["code"] == "insufficient_credits"
    assert "fewer inputs" in caught.value.body["message"]
    assert upstream.received == []
    bal, records, holds, gap = books(app, user_id)
    assert bal == Decimal("0.01") and records == [] and holds == [] and gap == 0


def test_an_upstream_failure_costs_nothing(app, gateway, upstream, user):
    user_id, key = user
    upstream.push(Script(status=500))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key).embeddings.create(model=OPENAI_MODEL, input="v")
    assert caught.value.status_code == 502
    bal, records, holds, gap = books(app, user_id)
    assert bal == Decimal(10) and records == [] and holds == [] and gap == 0


def test_a_split_request_failing_midway_pays_for_what_was_embedded(app, gateway, upstream,
                                                                   user):
    user_id, key = user
    upstream.push(Script(), Script(status=503))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk(gateway, key).embeddings.create(model=GEMINI_MODEL, input=["x" * 300] * 150)
    assert caught.value.status_code == 503
    bal, [record], holds, gap = books(app, user_id)
    assert record.partial and record.estimated and record.input_tokens == 10_000
    assert bal == Decimal(8) and holds == [] and gap == 0
