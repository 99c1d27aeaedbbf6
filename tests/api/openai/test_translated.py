"""The openai SDK reaching Claude-type and Gemini-type models through translation."""

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from tests.conftest import UPSTREAM_KEY, every_provider_type, provider_entry
from tests.fake_upstream import Script


@pytest.fixture
def settings(upstream):
    backup = provider_entry(upstream, "backup-claude", ("gpt-test", "claude-test"),
                            type="anthropic")
    return {"PROVIDERS": [*every_provider_type(upstream), backup]}


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


@pytest.mark.parametrize("model, path", [("claude-test", "/v1/messages"),
                                         ("gemini-test",
                                          "/v1beta/models/gemini-test:generateContent")])
def test_chat_completion(sdk, upstream, model, path):
    reply = sdk.chat.completions.create(
        model=model, max_tokens=30, temperature=0.2,
        messages=[{"role": "developer", "content": "Be brief."},
                  {"role": "user", "content": "hello there"}])
    assert reply.object == "chat.completion" and reply.model == model
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.completion_tokens == 3 and reply.usage.total_tokens > 3
    assert upstream.last.path == path
    assert UPSTREAM_KEY in upstream.last.headers.values()


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
@pytest.mark.parametrize("include_usage", [False, True])
def test_streaming(sdk, upstream, model, include_usage):
    options = {"stream_options": {"include_usage": True}} if include_usage else {}
    chunks = list(sdk.chat.completions.create(
        model=model, stream=True, messages=[{"role": "user", "content": "one two three"}],
        **options))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    assert len({c.id for c in chunks}) == 1
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
    else:
        assert all(c.choices for c in chunks)


@pytest.mark.parametrize("model, reason, expected", [
    ("claude-test", "length", "length"), ("gemini-test", "length", "length"),
    ("gemini-test", "content_filter", "content_filter")])
def test_finish_reasons(sdk, upstream, model, reason, expected):
    upstream.push(Script(content="cut", finish_reason=reason))
    reply = sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert reply.choices[0].finish_reason == expected


def test_upstream_errors_in_openai_shape(sdk, upstream):
    upstream.push(Script(status=400, body={"type": "error", "error": {
        "type": "invalid_request_error", "message": "messages: roles must alternate"}}))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="claude-test",
                                    messages=[{"role": "user", "content": "x"}])
    assert "roles must alternate" in info.value.body["message"]
    upstream.push(Script(status=404))
    with pytest.raises(openai.NotFoundError):
        sdk.chat.completions.create(model="gemini-test",
                                    messages=[{"role": "user", "content": "x"}])
    upstream.push(Script(status=401))
    with pytest.raises(openai.APIStatusError) as info:
        sdk.chat.completions.create(model="gemini-test",
                                    messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 502  # the gateway's credentials, not the client's
    assert UPSTREAM_KEY not in str(info.value.body)


def test_failover_crosses_wire_formats(sdk, upstream):
    """gpt-test is served by an OpenAI provider, then by a Claude one: a 503 from the first
    sends the same request, translated, to the second."""
    upstream.push(Script(status=503))
    reply = sdk.chat.completions.create(model="gpt-test",
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    assert [r.path for r in upstream.received] == ["/v1/chat/completions", "/v1/messages"]


@pytest.mark.parametrize("model", ["claude-test", "gemini-test"])
def test_broken_translated_stream_raises_in_sdk(sdk, upstream, model):
    upstream.push(Script(content="many words in this answer", drop_after=3))
    stream = sdk.chat.completions.create(model=model, stream=True,
                                         messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError):
        list(stream)


@pytest.mark.parametrize("model", ["gpt-test", "gemini-test", "claude-test"])
def test_broken_stream_raises_in_anthropic_sdk(gateway, api_key, upstream, model):
    upstream.push(Script(content="many words in this answer", drop_after=4))
    sdk = anthropic.Anthropic(base_url=gateway, api_key=api_key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as info:
        with sdk.messages.stream(model=model, max_tokens=10,
                                 messages=[{"role": "user", "content": "x"}]) as stream:
            list(stream)
    assert info.value.body["error"]["type"] in ("api_error", "overloaded_error")


@pytest.mark.parametrize("model", ["gpt-test", "claude-test", "gemini-test"])
def test_broken_stream_raises_in_genai_sdk(gateway, api_key, upstream, model):
    upstream.push(Script(content="many words in this answer", drop_after=3))
    sdk = genai.Client(api_key=api_key, http_options=types.HttpOptions(base_url=gateway))
    with pytest.raises(genai_errors.APIError):
        list(sdk.models.generate_content_stream(model=model, contents="x"))


def test_mid_stream_upstream_error_is_redacted_and_reexpressed(sdk, upstream):
    """An Anthropic error event that echoes the gateway's key reaches the OpenAI client as an
    OpenAI in-stream error, without the key."""
    raw = ('event: message_start\ndata: {"type": "message_start", "message": {"id": "m", '
           '"usage": {"input_tokens": 3}}}\n\nevent: error\ndata: {"type": "error", "error": '
           f'{{"type": "overloaded_error", "message": "Overloaded for key {UPSTREAM_KEY}"}}}}\n\n')
    upstream.push(Script(raw_stream=raw.encode()))
    stream = sdk.chat.completions.create(model="claude-test", stream=True,
                                         messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError) as info:
        list(stream)
    assert "Overloaded for key" in str(info.value.message)
    assert UPSTREAM_KEY not in str(info.value.message) and UPSTREAM_KEY not in str(info.value.body)
