"""A Responses-only upstream (provider type "responses") reached by Chat, Anthropic and Gemini
clients; upstream faults, cut streams and stop reasons as a Responses client sees them."""

import json
from decimal import Decimal

import anthropic
import openai
import pytest

from tests.api.cross_family.test_credits import settled_books
from tests.api.responses.conftest import MODELS, sent
from tests.api.sdk_clients import CLIENTS, QUESTION
from tests.conftest import UPSTREAM_KEY, make_user
from tests.fake_upstream import Script


@pytest.fixture
def backend():
    """Translation does not depend on the database: SQLite only (the stored-responses
    tests run on every backend)."""
    return "sqlite"


CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("client_format", list(CLIENTS))
def test_other_clients_reach_a_responses_only_upstream(gateway, api_key, upstream,
                                                       client_format, stream):
    client = CLIENTS[client_format](gateway, api_key)
    upstream.push(Script(tool_calls=CALLS), Script(content="Paris 18C, Rome 21C", reasoning=True))
    calls = client.ask("resp-test", stream)
    assert [(name, args) for _, name, args in calls] == CALLS
    assert upstream.last.path == "/v1/responses"
    assert upstream.last.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    first = sent("resp-test", upstream.last.json)
    assert first["system"] == "Answer briefly." and first["user_texts"] == [QUESTION]
    assert first["tools"] == ["get_weather"] and upstream.last.json["store"] is False
    assert upstream.last.json.get("stream", False) is stream

    assert client.answer("resp-test", stream, ["18C", "21C"]) == "Paris 18C, Rome 21C"
    second = sent("resp-test", upstream.last.json)
    assert [(name, args) for _, name, args in second["calls"]] == CALLS
    by_id = {call_id: args["city"] for call_id, _, args in second["calls"]}
    assert {by_id[c]: text for c, text in second["results"]} == {"Paris": "18C", "Rome": "21C"}


def test_chat_client_usage_and_length_stop(gateway, api_key, upstream):
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)
    upstream.push(Script(content="cut short", finish_reason="length",
                         usage={"input_tokens": 10, "output_tokens": 2, "cached": 4}))
    reply = sdk.chat.completions.create(model="resp-test", max_tokens=2,
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason == "length"
    assert reply.choices[0].message.content == "cut short"
    assert reply.usage.prompt_tokens == 10 and reply.usage.completion_tokens == 2
    assert reply.usage.prompt_tokens_details.cached_tokens == 4
    assert upstream.last.json["max_output_tokens"] == 2


def test_upstream_failure_in_stream_reaches_an_anthropic_client(gateway, api_key, upstream):
    claude = anthropic.Anthropic(base_url=gateway, api_key=api_key, max_retries=0)
    upstream.push(Script(content="partial answer", finish_reason="failed"))
    with pytest.raises(anthropic.APIStatusError, match="failed mid"):
        with claude.messages.stream(model="resp-test", max_tokens=20,
                                    messages=[{"role": "user", "content": "x"}]) as stream:
            stream.get_final_message()


@pytest.mark.parametrize("model", list(MODELS))
def test_length_stop_is_incomplete(sdk, upstream, model):
    upstream.push(Script(content="a b c", finish_reason="length"),
                  Script(content="a b c", finish_reason="length"))
    reply = sdk.responses.create(model=model, input="long story", max_output_tokens=3)
    assert reply.status == "incomplete"
    assert reply.incomplete_details.reason == "max_output_tokens"
    events = list(sdk.responses.create(model=model, input="long story", stream=True,
                                       max_output_tokens=3))
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.incomplete_details.reason == "max_output_tokens"


@pytest.mark.parametrize("model", list(MODELS))
def test_cut_stream_ends_failed_and_the_sdk_raises(app, sdk, upstream, model):
    user_id, key = make_user(app, "cut", credits=Decimal(100))
    upstream.push(Script(content="one two three four five six seven eight", usage=None,
                         drop_after=5))
    seen = []
    with pytest.raises(openai.APIError, match="mid-stream|unexpectedly"):
        for event in sdk.with_options(api_key=key).responses.create(
                model=model, input="count", stream=True):
            seen.append(event)
    assert seen[0].type == "response.created" and seen[-1].type == "response.failed"
    assert seen[-1].response.error.code == "server_error"
    numbers = [e.sequence_number for e in seen]
    assert numbers == sorted(set(numbers))
    _, [record], holds, gap = settled_books(app, user_id)
    assert record.partial and holds == [] and gap == 0 and record.output_tokens > 0
    # counted from what was relayed: no upstream's interim usage (Anthropic's message_start
    # says output_tokens 1) covers it, so the count is ours
    assert record.estimated


@pytest.mark.parametrize("model", ["gpt-test", "chat-test", "claude-test"])
@pytest.mark.parametrize("status, error", [(400, openai.BadRequestError),
                                           (429, openai.RateLimitError),
                                           (500, openai.APIStatusError)])
def test_upstream_errors_in_the_openai_envelope(sdk, upstream, model, status, error):
    upstream.push(Script(status=status))
    with pytest.raises(error) as caught:
        sdk.responses.create(model=model, input="hi")
    body = caught.value.response.json()
    assert set(body["error"]) >= {"message", "type", "param", "code"}
    assert UPSTREAM_KEY not in caught.value.response.text


def test_builtin_tools_pass_through_to_openai(sdk, upstream):
    sdk.responses.create(model="gpt-test", input="news?", tools=[{"type": "web_search"}],
                         reasoning={"effort": "low"}, include=["reasoning.encrypted_content"])
    body = upstream.last.json
    assert body["tools"] == [{"type": "web_search"}] and body["reasoning"] == {"effort": "low"}
    assert body["include"] == ["reasoning.encrypted_content"]


def test_passthrough_stream_is_relayed_untouched(gateway, api_key, upstream):
    import requests

    upstream.push(Script(content="x y", reasoning=True))
    with requests.post(f"{gateway}/v1/responses", stream=True, timeout=10,
                       headers={"Authorization": f"Bearer {api_key}"},
                       json={"model": "gpt-test", "input": "hi", "stream": True}) as resp:
        received = resp.content
    assert received == bytes(upstream.sent_streams[-1])
    assert b"response.reasoning_summary_text.delta" in received
    kinds = [json.loads(line[6:])["type"] for line in received.splitlines()
             if line.startswith(b"data: ")]
    assert kinds[-1] == "response.completed"
