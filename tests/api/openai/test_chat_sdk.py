"""The official openai SDK against the gateway, over real HTTP, with a fake upstream behind it."""

import openai
import pytest

from tests.conftest import UPSTREAM_KEY


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


def test_chat_completion(sdk, upstream, api_key):
    reply = sdk.chat.completions.create(model="gpt-test",
                                        messages=[{"role": "user", "content": "hello there"}])
    assert reply.choices[0].message.content == "echo: hello there"
    assert reply.usage.completion_tokens == 3
    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert api_key not in str(sent.headers)


def test_streaming(sdk, upstream):
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         messages=[{"role": "user", "content": "one two three"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "echo: one two three"
    assert all(c.choices for c in chunks), "usage chunk forwarded though the client did not ask"
    assert upstream.last.json["stream_options"] == {"include_usage": True}


def test_streaming_with_usage_requested(sdk, upstream):
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         stream_options={"include_usage": True},
                                         messages=[{"role": "user", "content": "a b"}])
    chunks = list(stream)
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens == 3


@pytest.mark.parametrize("base", ["/v1", "/api/v1", "/api/v1/ai"])
def test_every_base_path(gateway, api_key, base):
    sdk = openai.OpenAI(base_url=gateway + base, api_key=api_key, max_retries=0)
    reply = sdk.chat.completions.create(model="gpt-test",
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    assert [m.id for m in sdk.models.list()] == ["gpt-test"]
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         messages=[{"role": "user", "content": "hi"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: hi"


def test_models_list_and_retrieve(sdk):
    models = sdk.models.list()
    assert models.object == "list"
    assert [(m.id, m.object, m.owned_by) for m in models] == [("gpt-test", "model", "fake")]
    assert sdk.models.retrieve("gpt-test").id == "gpt-test"
    with pytest.raises(openai.NotFoundError):
        sdk.models.retrieve("nope")


def test_bad_key_is_401(gateway):
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key="tg-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as info:
        sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "invalid_api_key"
    assert info.value.body["type"] == "authentication_error"


def test_unknown_model_is_404(sdk):
    with pytest.raises(openai.NotFoundError) as info:
        sdk.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    assert info.value.body["code"] == "model_not_found"


def test_validation_error_names_param(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt-test", temperature=3,
                                    messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "temperature"
    assert info.value.body["type"] == "invalid_request_error"


def test_upstream_error_passed_on(sdk, upstream):
    from tests.fake_upstream import Script
    upstream.push(Script(status=400, body={"error": {"message": "context too long",
                                                     "type": "invalid_request_error",
                                                     "code": "context_length_exceeded"}}))
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gpt-test", messages=[{"role": "user", "content": "x"}])
    assert "context too long" in info.value.body["message"]
    assert info.value.body["code"] == "context_length_exceeded"


def test_broken_stream_raises_in_sdk(sdk, upstream):
    from tests.fake_upstream import Script
    upstream.push(Script(content="many words in this answer", drop_after=3))
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError):
        list(stream)
