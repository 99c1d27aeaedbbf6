"""Requests as clients and public docs really send them: Gemini `contents` with system turns,
paths with `//`, a 401 that names the caller's own key header, and unknown routes answered in
the caller's family."""

import pytest
import requests
from google import genai
from google.genai import errors as genai_errors

from tests.conftest import every_provider_type
from tests.fake_upstream import Script

MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}
GIVEN, SYSTEM, DEVELOPER = "Given instruction.", "Answer in French.", "Be brief."


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream), "RATELIMIT_ENABLED": False}


def system_sent(provider, body) -> tuple[list[str], list[str]]:
    """(system texts, roles of the conversation turns) as the provider received them."""
    if provider == "gemini":
        return ([p["text"] for p in body["systemInstruction"]["parts"]],
                [c.get("role", "user") for c in body["contents"]])
    if provider == "anthropic":
        system = body["system"]
        texts = [system] if isinstance(system, str) else [b["text"] for b in system]
        return "\n\n".join(texts).split("\n\n"), [m["role"] for m in body["messages"]]
    messages = body["messages"]
    texts = [m["content"] for m in messages if m["role"] in ("system", "developer")]
    return ("\n\n".join(texts).split("\n\n"),
            [m["role"] for m in messages if m["role"] not in ("system", "developer")])


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_gemini_system_turns_become_the_system_instruction(gateway, api_key, upstream, provider,
                                                           stream):
    method = "streamGenerateContent?alt=sse" if stream else "generateContent"
    body = {"systemInstruction": {"parts": [{"text": GIVEN}]},
            "contents": [{"role": "system", "parts": [{"text": SYSTEM}]},
                         {"role": "user", "parts": [{"text": "Bonjour"}]},
                         {"role": "developer", "parts": [{"text": DEVELOPER}]}]}
    resp = requests.post(f"{gateway}/v1beta/models/{MODELS[provider]}:{method}", json=body,
                         headers={"x-goog-api-key": api_key}, timeout=15)
    assert resp.status_code == 200, resp.text
    assert "Bonjour" in resp.text  # the fake echoes the user's turn
    texts, roles = system_sent(provider, upstream.last.json)
    assert texts == [GIVEN, SYSTEM, DEVELOPER]  # after the given one, in their order
    assert roles == ["user"]


def test_gemini_system_turns_without_a_given_instruction_and_in_count_tokens(
        gateway, api_key, upstream):
    body = {"contents": [{"role": "system", "parts": [{"text": SYSTEM}]},
                         {"role": "user", "parts": [{"text": "Bonjour"}]}]}
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:generateContent", json=body,
                         headers={"x-goog-api-key": api_key}, timeout=15)
    assert resp.status_code == 200
    assert upstream.last.json["systemInstruction"] == {"parts": [{"text": SYSTEM}]}
    for count in (body, {"generateContentRequest": body}):
        resp = requests.post(f"{gateway}/v1beta/models/gemini-test:countTokens", json=count,
                             headers={"x-goog-api-key": api_key}, timeout=15)
        assert resp.status_code == 200, resp.text
        sent = upstream.last.json.get("generateContentRequest", upstream.last.json)
        assert [c.get("role", "user") for c in sent["contents"]] == ["user"]


def test_only_system_turns_is_still_a_clear_400(gateway, api_key, upstream):
    body = {"contents": [{"role": "system", "parts": [{"text": SYSTEM}]}]}
    resp = requests.post(f"{gateway}/v1beta/models/gemini-test:generateContent", json=body,
                         headers={"x-goog-api-key": api_key}, timeout=15)
    assert resp.status_code == 400 and "contents" in resp.json()["error"]["message"]
    assert upstream.received == []


def test_gemini_sdk_with_a_system_turn(gateway, api_key, upstream):
    from google.genai import types
    sdk = genai.Client(api_key=api_key, http_options={"base_url": gateway})
    upstream.push(Script(content="Bonjour !"))
    reply = sdk.models.generate_content(model="claude-test", contents=[
        types.Content(role="system", parts=[types.Part(text=SYSTEM)]),
        types.Content(role="user", parts=[types.Part(text="Hello")])])
    assert reply.text == "Bonjour !"
    assert upstream.last.json["system"] in (SYSTEM, [{"type": "text", "text": SYSTEM}])


@pytest.mark.parametrize("path, headers, named", [
    ("/v1/chat/completions", {"Authorization": "Bearer tg-wrong-key-000000"},
     "Authorization: Bearer"),
    ("/v1/messages", {"x-api-key": "tg-wrong-key-000000", "anthropic-version": "2023-06-01"},
     "x-api-key"),
    ("/v1beta/models/gemini-test:generateContent", {"x-goog-api-key": "tg-wrong-key-000000"},
     "x-goog-api-key"),
    ("/v1/models", {"x-api-key": "tg-wrong-key-000000", "anthropic-version": "2023-06-01"},
     "x-api-key"),
    ("/v1/models", {"x-goog-api-key": "tg-wrong-key-000000"}, "x-goog-api-key"),
])
def test_401_names_the_header_the_callers_sdk_uses(client, path, headers, named):
    resp = (client.get if path == "/v1/models" else client.post)(path, json={}, headers=headers)
    assert resp.status_code == 401
    assert f"'{named}" in resp.get_json()["error"]["message"]


@pytest.mark.parametrize("path, headers, shape", [
    ("/v1/cachedContents", {"x-goog-api-key": "k"}, "gemini"),
    ("/upload/v1beta/files", {}, "gemini"),
    ("/v1beta/nothing", {}, "gemini"),
    ("/v1/nothing", {"anthropic-version": "2023-06-01"}, "anthropic"),
    ("/v1/nothing", {"Authorization": "Bearer k"}, "openai"),
])
def test_unknown_routes_answer_in_the_callers_family(client, path, headers, shape):
    resp = client.post(path, headers=headers)
    assert resp.status_code == 404
    error = resp.get_json()
    if shape == "gemini":
        assert error["error"]["status"] == "NOT_FOUND" and error["error"]["code"] == 404
    elif shape == "anthropic":
        assert error["type"] == "error" and error["error"]["type"] == "not_found_error"
    else:
        assert error["error"]["type"] == "invalid_request_error"


def test_gemini_sdk_on_an_unknown_route_reads_the_error(gateway, api_key):
    sdk = genai.Client(api_key=api_key, http_options={"base_url": gateway, "api_version": "v1"})
    with pytest.raises(genai_errors.ClientError) as err:
        sdk.caches.get(name="cachedContents/abc")
    assert err.value.code == 404 and err.value.status == "NOT_FOUND" and err.value.message


@pytest.mark.parametrize("path", ["//v1/chat/completions", "/v1//chat/completions",
                                  "/api//v1/ai//chat/completions"])
def test_double_slashes_are_served_not_redirected(gateway, api_key, path):
    resp = requests.post(gateway + path, allow_redirects=False, timeout=15,
                         headers={"Authorization": f"Bearer {api_key}"},
                         json={"model": "gpt-test",
                               "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200 and resp.json()["choices"][0]["message"]["content"] == "echo: hi"


def test_double_slashes_on_unknown_paths_are_json(gateway):
    resp = requests.get(gateway + "//nothing//here", allow_redirects=False, timeout=15)
    assert resp.status_code == 404 and resp.headers["content-type"] == "application/json"
    assert resp.json()["error"]["message"]
