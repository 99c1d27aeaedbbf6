"""Images through translation: base64 to every provider, URLs passed on where the provider
fetches them itself, and fetched (safely) for Gemini, which needs the bytes inline."""

import base64

import anthropic
import openai
import pytest

from tests.conftest import every_provider_type

PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGA"
                       "hKmMIQAAAABJRU5ErkJggg==")
B64 = base64.b64encode(PNG).decode()


@pytest.fixture
def settings(upstream, request):
    extra = getattr(request, "param", {"IMAGE_FETCH_ALLOW_PRIVATE": True})
    return {"PROVIDERS": every_provider_type(upstream), **extra}


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


def image_message(url):
    return [{"role": "user", "content": [{"type": "text", "text": "What is this?"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


def test_base64_image_to_every_provider(sdk, upstream):
    url = f"data:image/png;base64,{B64}"
    for model in ("gpt-test", "claude-test", "gemini-test"):
        sdk.chat.completions.create(model=model, messages=image_message(url))
    openai_sent, claude_sent, gemini_sent = (r.json for r in upstream.received)
    assert openai_sent["messages"][0]["content"][1]["image_url"]["url"] == url
    assert claude_sent["messages"][0]["content"][1] == {
        "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": B64}}
    assert gemini_sent["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": B64}}


def test_url_image_is_fetched_for_gemini_and_passed_on_to_claude(sdk, upstream):
    upstream.files["/img/dot.png"] = ("image/png", PNG)
    url = f"{upstream.url}/img/dot.png"
    sdk.chat.completions.create(model="claude-test", messages=image_message(url))
    assert upstream.last.json["messages"][0]["content"][1]["source"] == {"type": "url", "url": url}
    sdk.chat.completions.create(model="gemini-test", messages=image_message(url))
    fetch, sent = upstream.received[-2:]
    assert (fetch.method, fetch.path) == ("GET", "/img/dot.png")
    assert "X-Goog-Api-Key" not in fetch.headers and "Authorization" not in fetch.headers
    assert sent.json["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": B64}}


def test_anthropic_url_source_to_gemini(gateway, api_key, upstream):
    upstream.files["/img/dot.png"] = ("image/png", PNG)
    sdk = anthropic.Anthropic(base_url=gateway, api_key=api_key, max_retries=0)
    sdk.messages.create(model="gemini-test", max_tokens=10, messages=[{"role": "user", "content": [
        {"type": "image", "source": {"type": "url", "url": f"{upstream.url}/img/dot.png"}},
        {"type": "text", "text": "?"}]}])
    assert upstream.last.json["contents"][0]["parts"][0]["inlineData"]["data"] == B64


@pytest.mark.parametrize("path, files, why", [
    ("/img/big.png", {"/img/big.png": ("image/png", PNG * 100)}, "larger than"),
    ("/img/page.html", {"/img/page.html": ("text/html", b"<html>")}, "not a supported image"),
    ("/img/missing.png", {}, "HTTP 404"),
])
def test_unusable_image_urls_are_a_400(sdk, upstream, path, files, why, app):
    app.extensions["relay"].fetcher.max_bytes = 1000
    upstream.files.update(files)
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gemini-test",
                                    messages=image_message(f"{upstream.url}{path}"))
    assert why in info.value.body["message"]
    assert all(r.method == "GET" for r in upstream.received)  # the model was never called


@pytest.mark.parametrize("settings", [{}], indirect=True)
@pytest.mark.parametrize("url", ["http://127.0.0.1:9/a.png", "http://[::1]/a.png",
                                 "http://10.1.2.3/a.png", "http://169.254.169.254/latest",
                                 "file:///etc/passwd", "ftp://example.com/a.png"])
def test_private_and_odd_urls_are_refused(sdk, upstream, url):
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gemini-test", messages=image_message(url))
    message = info.value.body["message"]
    assert "cannot be used" in message or "must be an http(s) or data: URL" in message
    assert upstream.received == []


def test_every_redirect_hop_is_checked(sdk, upstream):
    upstream.files["/img/dot.png"] = ("image/png", PNG)
    upstream.files["/img/hop"] = ("redirect", "/img/dot.png")
    upstream.files["/img/away"] = ("redirect", "file:///etc/passwd")
    sdk.chat.completions.create(model="gemini-test",
                                messages=image_message(f"{upstream.url}/img/hop"))
    assert upstream.last.json["contents"][0]["parts"][1]["inlineData"]["data"] == B64
    with pytest.raises(openai.BadRequestError) as info:
        sdk.chat.completions.create(model="gemini-test",
                                    messages=image_message(f"{upstream.url}/img/away"))
    assert "only http and https" in info.value.body["message"]


def test_connection_to_a_private_peer_is_refused_whatever_the_name_said(upstream):
    """DNS rebinding: a name can resolve to a public address when checked and to a local one
    when connecting. The fetcher's connections check the peer they actually reached, before
    sending a byte of the request."""
    import requests

    from providers.media import PublicOnlyAdapter, _caused_by_private
    upstream.files["/img/dot.png"] = ("image/png", PNG)
    session = requests.Session()
    session.mount("http://", PublicOnlyAdapter())
    with pytest.raises(requests.ConnectionError) as info:
        session.get(f"{upstream.url}/img/dot.png", timeout=5)
    assert _caused_by_private(info.value)
    assert upstream.received == []
    assert requests.get(f"{upstream.url}/img/dot.png", timeout=5).content == PNG  # reachable
