"""A provider's key never reaches a client: an upstream that quotes the key it was sent in an
error (a whole error body, or an error event mid-stream) is redacted in every client format,
on the passthrough path (same format, bytes relayed) and translated. The keys are canaries that
the session also looks for in every response, log line and row (tests/conftest.py)."""

import pytest
import requests

from tests.canaries import PLAIN_UPSTREAM_KEY, UPSTREAM_KEY
from tests.conftest import PLAIN_UPSTREAM_KEY_ENV, every_provider_type, make_user, provider_entry
from tests.fake_upstream import Script
from translation.sse import EventSplitter

PROVIDERS = ("openai", "anthropic", "gemini")
PATTERN_MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}
PLAIN_MODELS = {p: f"{p}-plain" for p in PROVIDERS}  # served with a key no pattern matches


@pytest.fixture
def settings(upstream):
    plain = [provider_entry(upstream, f"plain-{p}", (PLAIN_MODELS[p],), type=p,
                            api_key_env=PLAIN_UPSTREAM_KEY_ENV) for p in PROVIDERS]
    return {"PROVIDERS": every_provider_type(upstream) + plain, "RATELIMIT_ENABLED": False}


def request_for(client_format, model, stream):
    if client_format == "openai":
        return "/v1/chat/completions", {"model": model, "stream": stream, "messages": [
            {"role": "user", "content": "hi"}]}
    if client_format == "anthropic":
        return "/v1/messages", {"model": model, "stream": stream, "max_tokens": 50,
                                "messages": [{"role": "user", "content": "hi"}]}
    method = {True: "streamGenerateContent?alt=sse", False: "generateContent",
              "array": "streamGenerateContent"}[stream]  # without alt=sse: a JSON array
    return f"/v1beta/models/{model}:{method}", {"contents": [{"parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize("key_kind", ["pattern", "plain"])
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("client_format", PROVIDERS)
def test_quoted_provider_key_is_redacted(app, gateway, upstream, client_format, provider, stream,
                                         key_kind):
    _, key = make_user(app)
    model, secret = ((PATTERN_MODELS[provider], UPSTREAM_KEY) if key_kind == "pattern"
                     else (PLAIN_MODELS[provider], PLAIN_UPSTREAM_KEY))
    upstream.push(Script(content="one two three four", quote_key=True))
    path, body = request_for(client_format, model, stream)
    resp = requests.post(gateway + path, json=body, timeout=15,
                         headers={"Authorization": f"Bearer {key}"})
    received = upstream.last.headers
    assert secret in " ".join(received.values())  # the upstream did get the key it quotes
    text = resp.text
    assert secret not in text and key not in text
    assert "was rejected for this request" in text  # the error itself still reaches the client
    assert "[redacted]" in text
    if stream == "array":
        assert resp.status_code == 200 and text.startswith("[") and text.endswith("]")
    elif stream:
        assert resp.status_code == 200 and "one" in text  # content before the error, relayed
    else:
        assert resp.status_code == 400


def test_content_events_stay_byte_for_byte(app, gateway, upstream):
    """Redaction touches error events only: a passthrough content event that happens to look
    like a key is the model's output, relayed exactly."""
    _, key = make_user(app)
    upstream.push(Script(content="sk-notakey-but-text-123456"))
    resp = requests.post(gateway + "/v1/chat/completions", timeout=15,
                         headers={"Authorization": f"Bearer {key}"},
                         json={"model": "gpt-test", "stream": True,
                               "messages": [{"role": "user", "content": "hi"}]})
    sent = EventSplitter().feed(bytes(upstream.sent_streams[-1]))
    # all of it but the usage-only chunk, which this client did not ask for
    assert resp.content == b"".join(e for e in sent if b'"choices": []' not in e)
    assert b"sk-notakey-but-text-123456" in resp.content


@pytest.mark.parametrize("provider", PROVIDERS)
def test_quoted_key_in_a_gemini_json_array_stream(app, gateway, upstream, provider):
    """A Gemini client streaming without alt=sse gets a JSON array; its error element is
    redacted too, whichever provider served it."""
    test_quoted_provider_key_is_redacted(app, gateway, upstream, "gemini", provider, "array",
                                         "plain")
