"""The same upstream usage is charged the same credits whatever format the client speaks:
whole answers and streams, for each provider wire format, through the real HTTP path."""

from decimal import Decimal

import pytest
import requests
from sqlalchemy import select

from extensions import db
from models import UsageRecord
from tests.conftest import every_provider_type, make_user
from tests.fake_upstream import Script

MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}
# One upstream usage (30 prompt tokens of which 12 cached, 7 output) in each provider's words.
UPSTREAM_USAGE = {
    "openai": {"prompt_tokens": 30, "completion_tokens": 7, "total_tokens": 37,
               "prompt_tokens_details": {"cached_tokens": 12}},
    "anthropic": {"input_tokens": 15, "cache_read_input_tokens": 12,
                  "cache_creation_input_tokens": 3, "output_tokens": 7},
    "gemini": {"promptTokenCount": 30, "cachedContentTokenCount": 12, "candidatesTokenCount": 5,
               "thoughtsTokenCount": 2, "totalTokenCount": 37},
}
# (input, cache_read, cache_write, output) that usage means, and its cost at the prices below
EXPECTED = {"openai": (18, 12, 0, 7), "anthropic": (15, 12, 3, 7), "gemini": (18, 12, 0, 7)}


@pytest.fixture
def settings(upstream):
    price = {"input": 2, "output": 4, "cache_read": 0.5, "cache_write": 3, "minimum": 0.001,
             "max_output_tokens": 321}
    return {"PROVIDERS": every_provider_type(upstream),
            "PRICING": {"models": dict.fromkeys(MODELS.values(), price)}}


def call(gateway, key, client_format, model, stream):
    if client_format == "openai":
        url, body = "/v1/chat/completions", {"model": model, "stream": stream,
                                             "messages": [{"role": "user", "content": "x"}]}
    elif client_format == "anthropic":
        url, body = "/v1/messages", {"model": model, "stream": stream, "max_tokens": 20,
                                     "messages": [{"role": "user", "content": "x"}]}
    else:
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        url, body = (f"/v1beta/models/{model}:{method}",
                     {"contents": [{"role": "user", "parts": [{"text": "x"}]}]})
    resp = requests.post(gateway + url, json=body, timeout=15,
                         headers={"Authorization": f"Bearer {key}"})
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_same_upstream_usage_same_charge(app, gateway, upstream, provider, stream):
    user_id, key = make_user(app, credits=Decimal(100))
    for client_format in MODELS:
        upstream.push(Script(usage=UPSTREAM_USAGE[provider]))
        call(gateway, key, client_format, MODELS[provider], stream)
    assert app.extensions["billing"].flush()
    with app.app_context():
        records = db.session.scalars(select(UsageRecord).where(UsageRecord.user_id == user_id)
                                     .order_by(UsageRecord.id)).all()
    charged = [(r.input_tokens, r.cache_read_tokens, r.cache_write_tokens, r.output_tokens,
                r.price, r.estimated, r.partial) for r in records]
    tokens = EXPECTED[provider]
    cost = (Decimal(2) * tokens[0] + Decimal("0.5") * tokens[1] + Decimal(3) * tokens[2]
            + Decimal(4) * tokens[3]) / 1000
    assert charged == [(*tokens, cost, False, False)] * 3


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_format", list(MODELS))
def test_no_upstream_usage_is_estimated_from_what_the_client_got(app, gateway, upstream,
                                                                client_format, stream):
    """The output is counted in the client's own format (re-encoded, if it was translated)."""
    user_id, key = make_user(app, credits=Decimal(100))
    upstream.push(Script(content="one two three four five six seven eight", usage=None))
    call(gateway, key, client_format, "gpt-test", stream)
    assert app.extensions["billing"].flush()
    with app.app_context():
        [record] = db.session.scalars(select(UsageRecord)
                                      .where(UsageRecord.user_id == user_id)).all()
    assert record.estimated and not record.partial
    assert record.output_tokens == 10  # 39 characters, one token per 4


def test_output_limit_is_the_clients_or_the_models_cap(app, gateway, upstream):
    """Anthropic needs max_tokens: a Gemini or OpenAI client that gives none gets the model's
    max_output_tokens (what its hold was sized for); a larger request is capped to it."""
    _, key = make_user(app, credits=Decimal(100))
    call(gateway, key, "gemini", "claude-test", False)
    assert upstream.last.json["max_tokens"] == 321
    call(gateway, key, "openai", "claude-test", True)
    assert upstream.last.json["max_tokens"] == 321
    call(gateway, key, "anthropic", "gemini-test", False)  # asks for 20
    assert upstream.last.json["generationConfig"]["maxOutputTokens"] == 20
    call(gateway, key, "anthropic", "gpt-test", False)
    assert upstream.last.json["max_completion_tokens"] == 20
