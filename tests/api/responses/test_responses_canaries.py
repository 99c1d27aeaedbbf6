"""A provider's key never reaches a Responses client, nor a client of a Responses-only
upstream: an upstream that quotes the key it was sent in an error (a whole error body, or
failure events mid-stream) is redacted on the passthrough path (bytes relayed) and translated.
The keys are canaries the session also looks for in every response, log line and row."""

import pytest
import requests

from tests.api.responses.conftest import providers
from tests.canaries import PLAIN_UPSTREAM_KEY, UPSTREAM_KEY
from tests.conftest import PLAIN_UPSTREAM_KEY_ENV, make_user, provider_entry
from tests.fake_upstream import Script
from translation.sse import EventSplitter, event_data

# served with a key no pattern matches: only knowing the key redacts it
PLAIN = {"gpt-plain": {"type": "openai", "responses": True}, "resp-plain": {"type": "responses"},
         "chat-plain": {"type": "openai-compatible"}}


@pytest.fixture
def settings(upstream):
    plain = [provider_entry(upstream, f"plain-{model}", (model,),
                            api_key_env=PLAIN_UPSTREAM_KEY_ENV, **extra)
             for model, extra in PLAIN.items()]
    return {"PROVIDERS": providers(upstream) + plain, "RATELIMIT_ENABLED": False}


def ask(gateway, key, client_format, model, stream):
    path, body = {
        "responses": ("/v1/responses", {"model": model, "input": "hi", "stream": stream}),
        "openai": ("/v1/chat/completions", {"model": model, "stream": stream,
                                            "messages": [{"role": "user", "content": "hi"}]}),
        "anthropic": ("/v1/messages", {"model": model, "stream": stream, "max_tokens": 50,
                                       "messages": [{"role": "user", "content": "hi"}]}),
    }[client_format]
    return requests.post(gateway + path, json=body, timeout=15,
                         headers={"Authorization": f"Bearer {key}"})


CASES = [("responses", m) for m in
         ("gpt-test", "resp-test", "chat-test", "claude-test", "gemini-test", *PLAIN)]
CASES += [(c, m) for c in ("openai", "anthropic") for m in ("resp-test", "resp-plain")]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(("client_format", "model"), CASES)
def test_quoted_provider_key_is_redacted(app, gateway, upstream, client_format, model, stream):
    _, key = make_user(app)
    secret = PLAIN_UPSTREAM_KEY if model in PLAIN else UPSTREAM_KEY
    upstream.push(Script(content="one two three four", quote_key=True))
    resp = ask(gateway, key, client_format, model, stream)
    assert secret in " ".join(upstream.last.headers.values())  # it did get the key it quotes
    text = resp.text
    assert secret not in text and key not in text
    assert "was rejected for this request" in text  # the error itself still reaches the client
    assert "[redacted]" in text
    if stream:
        assert resp.status_code == 200 and "one" in text  # content before the error, relayed
    else:
        assert resp.status_code == 400


def test_passthrough_content_events_stay_byte_for_byte(app, gateway, upstream):
    """Redaction touches failure events only: a content event that looks like a key is the
    model's output, and lifecycle events that name `error` (as null) are relayed exactly."""
    _, key = make_user(app)
    upstream.push(Script(content="sk-notakey-but-text-123456 error"))
    resp = ask(gateway, key, "responses", "gpt-test", True)
    sent = EventSplitter().feed(bytes(upstream.sent_streams[-1]))
    assert resp.content == b"".join(sent)
    assert b"sk-notakey-but-text-123456" in resp.content
    assert any(b'"error": null' in event_data(e) for e in sent)
