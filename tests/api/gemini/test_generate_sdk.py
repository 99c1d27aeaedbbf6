"""The official google-genai SDK against /v1beta, with fake upstreams of every wire format."""

import json

import pytest
import requests
from google import genai
from google.genai import errors, types

from tests import fake_gemini
from tests.conftest import UPSTREAM_KEY, every_provider_type
from tests.fake_upstream import Script


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


def client_for(base_url, key):
    return genai.Client(api_key=key, http_options=types.HttpOptions(
        base_url=base_url, retry_options=types.HttpRetryOptions(attempts=1)))


@pytest.fixture
def sdk(gateway, api_key):
    return client_for(gateway, api_key)


CONFIG = types.GenerateContentConfig(system_instruction="Be brief.", temperature=0.5,
                                     max_output_tokens=64, stop_sequences=["END"])


def test_v1beta_and_its_api_prefix(gateway, api_key, upstream):
    """The issue's paths: an SDK pinned to v1beta, at /v1beta and /api/v1beta."""
    for base in (gateway, f"{gateway}/api"):
        sdk = genai.Client(api_key=api_key, http_options=types.HttpOptions(
            base_url=base, api_version="v1beta"))
        assert sdk.models.generate_content(model="gpt-test", contents="hi").text == "echo: hi"
        chunks = sdk.models.generate_content_stream(model="claude-test", contents="a b")
        assert "".join(c.text or "" for c in chunks) == "echo: a b"
        assert [m.name for m in sdk.models.list()][0] == "models/claude-test"
        assert sdk.models.count_tokens(model="gemini-test", contents="a").total_tokens > 0
    paths = [r.path for r in upstream.received]
    assert paths.count("/v1beta/models/gemini-test:countTokens") == 2


def test_passthrough_to_gemini(sdk, upstream, api_key):
    reply = sdk.models.generate_content(model="gemini-test", contents="hello there",
                                        config=CONFIG)
    assert reply.text == "echo: hello there"
    sent = upstream.last
    assert sent.path == "/v1beta/models/gemini-test:generateContent"
    assert sent.headers["X-Goog-Api-Key"] == UPSTREAM_KEY and "key" not in sent.query
    assert api_key not in json.dumps([sent.headers, sent.query])
    assert sent.json["systemInstruction"]["parts"] == [{"text": "Be brief."}]
    assert "model" not in sent.json and "stream" not in sent.json


def test_to_openai_provider(sdk, upstream):
    upstream.push(Script(usage={"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15,
                                "prompt_tokens_details": {"cached_tokens": 4}}))
    reply = sdk.models.generate_content(model="gpt-test", contents="hello there", config=CONFIG)
    assert reply.text == "echo: hello there"
    assert reply.candidates[0].finish_reason == types.FinishReason.STOP
    assert reply.usage_metadata.prompt_token_count == 12
    assert reply.usage_metadata.cached_content_token_count == 4
    assert reply.usage_metadata.candidates_token_count == 3
    sent = upstream.last.json
    assert sent["messages"] == [{"role": "system", "content": "Be brief."},
                                {"role": "user", "content": [{"type": "text",
                                                              "text": "hello there"}]}]
    assert (sent["temperature"], sent["max_completion_tokens"], sent["stop"]) == (0.5, 64, ["END"])


def test_to_anthropic_provider(sdk, upstream):
    reply = sdk.models.generate_content(model="claude-test", contents="hello there",
                                        config=CONFIG)
    assert reply.text == "echo: hello there"
    sent = upstream.last
    assert sent.path == "/v1/messages"
    assert sent.json["system"] == "Be brief." and sent.json["max_tokens"] == 64
    assert sent.json["messages"] == [{"role": "user", "content": [{"type": "text",
                                                                    "text": "hello there"}]}]


def test_anthropic_gets_the_default_max_tokens(sdk, upstream):
    sdk.models.generate_content(model="claude-test", contents="x")
    assert upstream.last.json["max_tokens"] == 4096


@pytest.mark.parametrize("model", ["gemini-test", "gpt-test", "claude-test"])
def test_streaming(sdk, upstream, model):
    chunks = list(sdk.models.generate_content_stream(model=model, contents="one two three"))
    assert "".join(c.text or "" for c in chunks) == "echo: one two three"
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == 4
    if model == "gemini-test":
        assert upstream.last.query == {"alt": "sse"}


@pytest.mark.parametrize("model", ["gemini-test", "gpt-test"])
def test_stream_without_alt_is_a_json_array(gateway, api_key, upstream, model):
    resp = requests.post(f"{gateway}/v1beta/models/{model}:streamGenerateContent",
                         headers={"x-goog-api-key": api_key},
                         json={"contents": [{"parts": [{"text": "a b"}]}]})
    assert resp.headers["content-type"].startswith("application/json")
    chunks = resp.json()
    assert "".join(p.get("text", "") for c in chunks
                   for p in c["candidates"][0]["content"]["parts"]) == "echo: a b"
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    if model == "gemini-test":
        assert upstream.last.query == {"alt": "sse"}  # upstreams are always asked for SSE


def test_key_in_query_and_api_prefix(gateway, api_key, upstream):
    resp = requests.post(f"{gateway}/api/v1beta/models/gpt-test:generateContent?key={api_key}",
                         json={"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                               "generation_config": {"max_output_tokens": 9}})
    assert resp.status_code == 200
    assert resp.json()["candidates"][0]["content"]["parts"] == [{"text": "echo: hi"}]
    assert upstream.last.json["max_completion_tokens"] == 9  # snake_case accepted too


def test_models_list_and_get(sdk):
    names = [m.name for m in sdk.models.list()]
    assert names == ["models/claude-test", "models/gemini-test", "models/gpt-test"]
    model = sdk.models.get(model="claude-test")
    assert model.name == "models/claude-test"
    assert "generateContent" in model.supported_actions
    with pytest.raises(errors.ClientError) as info:
        sdk.models.get(model="nope")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"


def test_count_tokens(sdk, upstream):
    native = sdk.models.count_tokens(model="gemini-test", contents="a b c")
    assert upstream.last.path == "/v1beta/models/gemini-test:countTokens"
    expected = fake_gemini.count(upstream.last.json)["totalTokens"]
    assert native.total_tokens == expected
    calls = len(upstream.received)
    estimate = sdk.models.count_tokens(model="gpt-test", contents="y" * 400)
    assert len(upstream.received) == calls
    assert 100 <= estimate.total_tokens <= 120


def test_errors_in_gemini_shape(gateway, sdk, upstream):
    bad = client_for(gateway, "tg-wrong")
    with pytest.raises(errors.ClientError) as info:
        bad.models.generate_content(model="gpt-test", contents="x")
    assert info.value.code == 401 and info.value.status == "UNAUTHENTICATED"
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="nope", contents="x")
    assert info.value.code == 404 and info.value.status == "NOT_FOUND"
    upstream.push(Script(status=400, body={"type": "error", "error": {
        "type": "invalid_request_error", "message": "prompt is too long"}}))
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="claude-test", contents="x")
    assert info.value.status == "INVALID_ARGUMENT" and "prompt is too long" in info.value.message
    upstream.push(Script(status=429))
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="gpt-test", contents="x")
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"


def test_upstream_bad_key_is_not_the_clients_fault(sdk, upstream):
    upstream.push(Script(status=400, body={"error": {
        "code": 400, "message": "API key not valid.", "status": "INVALID_ARGUMENT",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                     "reason": "API_KEY_INVALID"}]}}))
    with pytest.raises(errors.ServerError) as info:
        sdk.models.generate_content(model="gemini-test", contents="x")
    assert info.value.code == 502


@pytest.mark.parametrize("body, field", [
    ({}, "contents"),
    ({"contents": []}, "contents"),
    ({"contents": [{"role": "assistant", "parts": [{"text": "x"}]}]}, "contents[0].role"),
    ({"contents": [{"parts": []}]}, "contents[0].parts"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"temperature": "hot"}},
     "generationConfig.temperature"),
    ({"contents": [{"parts": [{"text": "x"}]}], "generationConfig": {"candidateCount": 0}},
     "generationConfig.candidateCount"),
])
def test_malformed_bodies(gateway, api_key, upstream, body, field):
    resp = requests.post(f"{gateway}/v1beta/models/gpt-test:generateContent", json=body,
                         headers={"x-goog-api-key": api_key})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and error["code"] == 400
    assert field in error["message"]
    assert upstream.received == []


def test_broken_json_unknown_method_and_route(gateway, api_key):
    headers = {"x-goog-api-key": api_key, "content-type": "application/json"}
    resp = requests.post(f"{gateway}/v1beta/models/gpt-test:generateContent", data=b"[1,",
                         headers=headers)
    assert resp.status_code == 400 and resp.json()["error"]["status"] == "INVALID_ARGUMENT"
    resp = requests.post(f"{gateway}/v1beta/models/gpt-test:predict", json={},
                         headers=headers)
    assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"
    resp = requests.get(f"{gateway}/v1beta/cachedContents", headers=headers)
    assert resp.status_code == 404 and resp.json()["error"]["status"] == "NOT_FOUND"


def test_candidate_count_above_one_is_refused_when_translated(sdk, upstream):
    with pytest.raises(errors.ClientError) as info:
        sdk.models.generate_content(model="claude-test", contents="x",
                                    config=types.GenerateContentConfig(candidate_count=2))
    assert info.value.code == 400 and "n > 1" in info.value.message
    assert upstream.received == []


@pytest.mark.parametrize("model", ["gpt-test", "claude-test"])
@pytest.mark.parametrize("stream", [False, True])
def test_tool_names_other_providers_refuse_are_mapped_and_back(sdk, upstream, model, stream):
    """Gemini allows '.' and ':' in function names; OpenAI and Anthropic do not."""
    from translation.content import safe_tool_name

    name = "weather.get:now"
    upstream.push(Script(tool_calls=[(safe_tool_name(name), {"city": "Oslo"})]))
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[types.FunctionDeclaration(
            name=name, parameters_json_schema={"type": "object"})])],
        tool_config=types.ToolConfig(function_calling_config=types.FunctionCallingConfig(
            mode="ANY", allowed_function_names=[name])),
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True))
    if stream:
        chunks = list(sdk.models.generate_content_stream(model=model, contents="x",
                                                         config=config))
        calls = [c for chunk in chunks for c in chunk.function_calls or []]
    else:
        calls = sdk.models.generate_content(model=model, contents="x",
                                            config=config).function_calls
    assert [(c.name, c.args) for c in calls] == [(name, {"city": "Oslo"})]
    sent = json.dumps(upstream.last.json)
    assert name not in sent and safe_tool_name(name) in sent
