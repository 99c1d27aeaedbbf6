"""The official anthropic SDK against /v1/messages, with fake upstreams of every wire format."""

import json

import anthropic
import pytest
import requests

from tests import fake_anthropic
from tests.conftest import UPSTREAM_KEY, every_provider_type
from tests.fake_upstream import Script


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


@pytest.fixture
def sdk(gateway, api_key):
    return anthropic.Anthropic(base_url=gateway, api_key=api_key, max_retries=0)


def ask(sdk, model, text="hello there", **extra):
    return sdk.messages.create(model=model, max_tokens=100,
                               messages=[{"role": "user", "content": text}], **extra)


def test_passthrough_to_anthropic(sdk, upstream, api_key):
    reply = ask(sdk, "claude-test", system="Be brief.")
    assert reply.content[0].text == "echo: hello there"
    assert reply.stop_reason == "end_turn"
    sent = upstream.last
    assert sent.path == "/v1/messages"
    assert sent.headers["X-Api-Key"] == UPSTREAM_KEY
    assert sent.headers["Anthropic-Version"] == "2023-06-01"
    assert api_key not in str(sent.headers)
    assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 100


def test_to_openai_provider(sdk, upstream):
    upstream.push(Script(usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                                "prompt_tokens_details": {"cached_tokens": 4}}))
    reply = ask(sdk, "gpt-test", system=[{"type": "text", "text": "Be brief."}],
                stop_sequences=["END"], extra_body={"temperature": 0.5})
    assert reply.content[0].text == "echo: hello there"
    assert reply.model == "gpt-test" and reply.stop_reason == "end_turn"
    sent = upstream.last.json
    assert upstream.last.path == "/v1/chat/completions"
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text",
                                                              "text": "hello there"}]}]
    assert sent["max_completion_tokens"] == 100 and sent["temperature"] == 0.5
    assert sent["stop"] == ["END"]
    # OpenAI's prompt_tokens include cached tokens, Anthropic's input_tokens do not
    usage = reply.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (8, 4, 3)


def test_to_gemini_provider(sdk, upstream):
    reply = ask(sdk, "gemini-test", system="Be brief.", extra_body={"top_k": 5})
    assert reply.content[0].text == "echo: hello there"
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-test:generateContent"
    assert sent.headers["X-Goog-Api-Key"] == UPSTREAM_KEY
    assert sent.json["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "hello there"}]}]
    assert sent.json["generationConfig"] == {"maxOutputTokens": 100, "topK": 5}


@pytest.mark.parametrize("model", ["claude-test", "gpt-test", "gemini-test"])
def test_streaming_event_sequence(sdk, upstream, model):
    with sdk.messages.stream(model=model, max_tokens=50,
                             messages=[{"role": "user", "content": "one two three"}]) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_message()
    assert final.content[0].text == "echo: one two three"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    for needed in ("content_block_start", "content_block_delta", "content_block_stop",
                   "message_delta"):
        assert needed in kinds


def test_stream_usage_from_openai_arrives_in_message_delta(sdk, upstream):
    """OpenAI sends usage after its finish chunk; message_delta must still carry it."""
    upstream.push(Script(content="hi", usage={"prompt_tokens": 50, "completion_tokens": 7,
                                              "total_tokens": 57,
                                              "prompt_tokens_details": {"cached_tokens": 20}}))
    with sdk.messages.stream(model="gpt-test", max_tokens=50,
                             messages=[{"role": "user", "content": "x"}]) as stream:
        final = stream.get_final_message()
    assert final.usage.input_tokens == 30
    assert final.usage.cache_read_input_tokens == 20
    assert final.usage.output_tokens == 7
    assert upstream.last.json["stream_options"] == {"include_usage": True}


def test_bearer_key_and_api_prefix(gateway, api_key, upstream):
    sdk = anthropic.Anthropic(base_url=f"{gateway}/api", auth_token=api_key, api_key=None,
                              max_retries=0)
    assert ask(sdk, "gpt-test", "hi").content[0].text == "echo: hi"


def test_count_tokens_native_and_estimated(sdk, upstream):
    native = sdk.messages.count_tokens(model="claude-test",
                                       messages=[{"role": "user", "content": "a b c"}])
    assert upstream.last.path == "/v1/messages/count_tokens"
    assert native.input_tokens == fake_anthropic.count(upstream.last.json)["input_tokens"]
    via_gemini = sdk.messages.count_tokens(model="gemini-test", system="sys",
                                           messages=[{"role": "user", "content": "a b c"}])
    assert upstream.last.path == "/v1beta/models/gemini-test:countTokens"
    inner = upstream.last.json["generateContentRequest"]
    assert inner["systemInstruction"] == {"parts": [{"text": "sys"}]}
    assert via_gemini.input_tokens > 0
    calls = len(upstream.received)
    estimate = sdk.messages.count_tokens(model="gpt-test",
                                         messages=[{"role": "user", "content": "x" * 400}])
    assert len(upstream.received) == calls  # OpenAI cannot count: estimated locally
    assert 100 <= estimate.input_tokens <= 120


def test_errors_in_anthropic_shape(gateway, sdk, upstream):
    bad = anthropic.Anthropic(base_url=gateway, api_key="tg-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as info:
        ask(bad, "gpt-test")
    assert info.value.body["type"] == "error"
    assert info.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.NotFoundError) as info:
        ask(sdk, "no-such-model")
    assert info.value.body["error"]["type"] == "not_found_error"
    upstream.push(Script(status=400, body={"error": {"message": "prompt is too long",
                                                     "type": "invalid_request_error"}}))
    with pytest.raises(anthropic.BadRequestError) as info:
        ask(sdk, "gpt-test")
    assert "prompt is too long" in info.value.body["error"]["message"]
    upstream.push(Script(status=503))
    with pytest.raises(anthropic.InternalServerError) as info:
        ask(sdk, "gemini-test")
    assert info.value.body["error"]["type"] == "overloaded_error"
    assert UPSTREAM_KEY not in str(info.value.body)


@pytest.mark.parametrize("body, param", [
    ({"model": "gpt-test", "max_tokens": 10}, "messages"),
    ({"model": "gpt-test", "max_tokens": 10, "messages": [{"role": "system",
                                                          "content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
    ({"model": "gpt-test", "max_tokens": 10, "temperature": 1.5,
      "messages": [{"role": "user", "content": "x"}]}, "temperature"),
    ({"model": "gpt-test", "max_tokens": 10,
      "messages": [{"role": "user", "content": [{"text": "no type"}]}]}, "messages[0].content"),
])
def test_malformed_bodies(gateway, api_key, upstream, body, param):
    resp = requests.post(f"{gateway}/v1/messages", json=body, headers={"x-api-key": api_key})
    assert resp.status_code == 400
    error = resp.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert param in error["error"]["message"]
    assert upstream.received == []


def test_broken_json_and_unknown_route(gateway, api_key):
    resp = requests.post(f"{gateway}/v1/messages", data=b"{nope",
                         headers={"x-api-key": api_key, "content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    resp = requests.get(f"{gateway}/v1/messages", headers={"x-api-key": api_key})
    assert resp.status_code == 405 and resp.json()["type"] == "error"
    resp = requests.post(f"{gateway}/v1/messages/batches", headers={"x-api-key": api_key})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"


def test_n_greater_than_one_is_refused_by_name(gateway, api_key, upstream):
    """An OpenAI client asking a Claude model for n=2 gets a clear 400, not one answer."""
    import openai

    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="claude-test", n=2,
                                    messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "n"
    assert upstream.received == []


def test_models_list_in_anthropic_shape(sdk):
    models = sdk.models.list()
    assert [m.id for m in models] == ["claude-test", "gemini-test", "gpt-test"]
    assert all(m.type == "model" for m in models)
    assert sdk.models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(anthropic.NotFoundError) as info:
        sdk.models.retrieve("nope")
    assert info.value.body["type"] == "error"


def test_beta_header_reaches_anthropic_upstreams_only(sdk, upstream):
    beta = {"anthropic-beta": "context-1m-2025-08-07,interleaved-thinking-2025-05-14"}
    ask(sdk, "claude-test", extra_headers=beta)
    assert upstream.last.headers["Anthropic-Beta"] == beta["anthropic-beta"]
    assert set(upstream.last.json) == {"model", "max_tokens", "messages"}
    ask(sdk, "gpt-test", extra_headers=beta)
    assert "Anthropic-Beta" not in upstream.last.headers
    assert "anthropic" not in json.dumps(upstream.last.json)
