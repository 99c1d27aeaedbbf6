"""The same upstream usage gives the same canonical Usage, whatever format the client speaks:
for whole answers (Reply.usage) and for streams (tap.usage handed to on_close), which is what
billing charges from."""

import pytest

from services.relay import passes_through
from tests.conftest import every_provider_type
from tests.fake_upstream import Script
from translation.ir import Usage

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
EXPECTED = {"openai": Usage(input=18, cache_read=12, output=7),
            "anthropic": Usage(input=15, cache_read=12, cache_write=3, output=7),
            "gemini": Usage(input=18, cache_read=12, output=7)}


def body_for(client_format, model, stream):
    if client_format == "openai":
        return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]}
    if client_format == "anthropic":
        return {"model": model, "stream": stream, "max_tokens": 20,
                "messages": [{"role": "user", "content": "x"}]}
    return {"model": model, "stream": stream, "alt": "sse",
            "contents": [{"role": "user", "parts": [{"text": "x"}]}]}


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("provider", list(MODELS))
def test_same_upstream_usage_same_canonical_usage(app, upstream, provider, stream):
    relay = app.extensions["relay"]
    seen = {}
    for client_format in MODELS:
        upstream.push(Script(usage=UPSTREAM_USAGE[provider]))
        body = body_for(client_format, MODELS[provider], stream)
        route = relay.registry.routes(body["model"])[0]
        serve = relay._passthrough if passes_through(client_format, body, route) \
            else relay._translated
        closed = []

        def on_close(tap, outcome, closed=closed):
            closed.append((tap.usage, outcome))

        reply = serve(client_format, body, route, stream=stream, client_socket=None,
                      on_close=on_close)
        if stream:
            b"".join(reply.body)
            assert [outcome for _, outcome in closed] == ["complete"]
            seen[client_format] = closed[0][0]
        else:
            seen[client_format] = reply.usage
    assert seen == dict.fromkeys(MODELS, EXPECTED[provider])
