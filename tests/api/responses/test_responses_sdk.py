"""The official openai SDK's client.responses against every provider kind: passthrough to an
OpenAI-type upstream, translated to an OpenAI-compatible chat-only one, Anthropic and Gemini."""

import base64
import json
from decimal import Decimal

import pytest

from tests.api.cross_family.test_credits import books
from tests.api.responses.conftest import CALLS, MODELS, SCHEMA, TOOLS, sent, upstream_path
from tests.conftest import make_user
from tests.fake_upstream import Script


@pytest.fixture
def backend():
    """Translation does not depend on the database: SQLite only (the stored-responses
    tests run on every backend)."""
    return "sqlite"


PNG = base64.b64encode(b"\x89PNG\r\n\x1a\nfake-image-bytes").decode()
USAGE = {"prompt_tokens": 1000, "completion_tokens": 2000, "total_tokens": 3000,
         "prompt_tokens_details": {"cached_tokens": 600}}
# the same upstream usage in each provider's own words
USAGE_BY_KIND = {
    "openai": USAGE,  # the fake speaks Responses on /responses: the same numbers, renamed
    "openai-compatible": USAGE,
    "anthropic": {"input_tokens": 400, "cache_read_input_tokens": 600,
                  "cache_creation_input_tokens": 0, "output_tokens": 2000},
    "gemini": {"promptTokenCount": 1000, "cachedContentTokenCount": 600,
               "candidatesTokenCount": 2000, "totalTokenCount": 3000},
}
COST = Decimal("0.8") + Decimal("0.3") + Decimal("8")  # 400*2 + 600*0.5 + 2000*4, per 1000


@pytest.mark.parametrize("model", list(MODELS))
def test_text(sdk, upstream, model):
    reply = sdk.responses.create(model=model, input="hello there", instructions="Be brief.",
                                 max_output_tokens=50)
    assert reply.object == "response" and reply.status == "completed"
    assert reply.output_text == "echo: hello there"
    assert reply.model == model if MODELS[model] != "openai" else reply.model
    assert reply.usage.output_tokens == 3 and reply.usage.input_tokens > 0
    assert reply.usage.total_tokens == reply.usage.input_tokens + reply.usage.output_tokens
    assert reply.model_extra["credits_consumed"] > 0
    assert upstream.last.path == upstream_path(model)
    body = sent(model, upstream.last.json)
    assert body["system"] == "Be brief." and body["user_texts"] == ["hello there"]


@pytest.mark.parametrize("model", list(MODELS))
def test_stream_helper_accumulates_the_non_streaming_response(sdk, upstream, model):
    upstream.push(Script(content="Paris is sunny today"), Script(content="Paris is sunny today"))
    whole = sdk.responses.create(model=model, input="weather?")
    with sdk.responses.stream(model=model, input="weather?") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == final.output_text == whole.output_text == "Paris is sunny today"
    assert shape(final) == shape(whole)
    assert final.usage == whole.usage
    assert upstream.last.json.get("stream") is True or "stream" in upstream.last.path


def shape(response) -> list:
    return [response.status, [(i.type, getattr(i, "status", None)) for i in response.output],
            response.output_text]


@pytest.mark.parametrize("model", list(MODELS))
def test_raw_stream_events(sdk, upstream, model):
    upstream.push(Script(content="one two three"))
    events = list(sdk.responses.create(model=model, input="count", stream=True))
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"]
    assert types[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added",
                 "response.output_text.done", "response.content_part.done",
                 "response.output_item.done"):
        assert types.count(kind) == 1, kind
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(set(numbers)) and numbers[0] == 0
    assert events[-1].response.usage.output_tokens == 3
    assert events[-1].response.id == events[0].response.id


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("model", list(MODELS))
def test_function_call_round_trip(sdk, upstream, model, stream):
    upstream.push(Script(tool_calls=CALLS), Script(content="Paris 18C, Rome 21C"))
    question = [{"role": "user", "content": "Weather in Paris and Rome?"}]
    first = ask(sdk, stream, model=model, input=question, tools=TOOLS,
                instructions="Answer briefly.")
    calls = [i for i in first.output if i.type == "function_call"]
    assert [(c.name, json.loads(c.arguments)) for c in calls] == CALLS
    assert all(c.call_id for c in calls) and len({c.call_id for c in calls}) == 2
    assert sent(model, upstream.last.json)["tools"] == ["get_weather"]

    results = [{"type": "function_call_output", "call_id": c.call_id, "output": out}
               for c, out in zip(calls, ["18C", "21C"], strict=True)]
    final = ask(sdk, stream, model=model, tools=TOOLS, store=False, instructions="Answer briefly.",
                input=[*question, *[c.model_dump(exclude_none=True) for c in calls], *results])
    assert final.output_text == "Paris 18C, Rome 21C"
    second = sent(model, upstream.last.json)
    assert [(name, args) for _, name, args in second["calls"]] == CALLS
    by_id = {call_id: args["city"] for call_id, _, args in second["calls"]}
    assert {by_id[c]: text for c, text in second["results"]} == {"Paris": "18C", "Rome": "21C"}


def ask(sdk, stream, **kwargs):
    if not stream:
        return sdk.responses.create(**kwargs)
    with sdk.responses.stream(**kwargs) as events:
        return events.get_final_response()


@pytest.mark.parametrize("model", list(MODELS))
def test_structured_output(sdk, upstream, model):
    upstream.push(Script(content='{"city": "Paris"}'))
    reply = sdk.responses.create(model=model, input="Where?", text={"format": {
        "type": "json_schema", "name": "place", "schema": SCHEMA, "strict": True}})
    assert json.loads(reply.output_text) == {"city": "Paris"}
    body = upstream.last.json
    schema = {"openai": lambda: body["text"]["format"]["schema"],
              "openai-compatible": lambda: body["response_format"]["json_schema"]["schema"],
              "anthropic": lambda: body["output_config"]["format"]["schema"],
              "gemini": lambda: body["generationConfig"]["responseJsonSchema"]}[MODELS[model]]()
    assert schema == SCHEMA


@pytest.mark.parametrize("model", ["chat-test", "claude-test", "gemini-test"])
def test_parse_with_a_pydantic_model(sdk, upstream, model):
    import pydantic

    class Place(pydantic.BaseModel):
        city: str

    upstream.push(Script(content='{"city": "Rome"}'))
    reply = sdk.responses.parse(model=model, input="Where?", text_format=Place)
    assert reply.output_parsed == Place(city="Rome")


@pytest.mark.parametrize("model", list(MODELS))
def test_image_input(sdk, upstream, model):
    sdk.responses.create(model=model, input=[{"role": "user", "content": [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}]}])
    text = json.dumps(upstream.last.json)
    assert PNG in text and "What is this?" in text


@pytest.mark.parametrize("model", list(MODELS))
def test_usage_costs_the_same_as_chat(app, sdk, gateway, upstream, model):
    user_id, key = make_user(app, "payer", credits=Decimal(100))
    sdk = sdk.with_options(api_key=key)
    kind = MODELS[model]
    upstream.push(*[Script(usage=USAGE_BY_KIND[kind]) for _ in range(3)])
    reply = sdk.responses.create(model=model, input="hi")
    assert reply.usage.input_tokens == 1000 and reply.usage.output_tokens == 2000
    assert reply.usage.input_tokens_details.cached_tokens == 600
    chat = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    _, records, holds, gap = books(app, user_id)
    assert [r.price for r in records] == [COST, COST] and holds == [] and gap == 0
    assert reply.model_extra["credits_consumed"] == float(COST)
    assert chat.model_extra["credits_consumed"] == float(COST)
    with sdk.responses.stream(model=model, input="hi") as stream:
        final = stream.get_final_response()
    _, records, _, _ = books(app, user_id)
    assert len(records) == 3 and records[-1].price == COST and not records[-1].partial
    assert final.usage.output_tokens == 2000
