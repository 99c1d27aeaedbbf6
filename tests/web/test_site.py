"""The public pages: the landing page's links, docs filled in with this server's base URLs,
pricing from the config."""

import pytest

from tests.conftest import provider_entry


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": [provider_entry(upstream, models=("gpt-test", "gpt-cheap"))],
            "PRICING": {"models": {"gpt-cheap": {"input": 0.25, "output": 0.5, "minimum": 0.01,
                                                 "max_output_tokens": 2048}}},
            "PLANS": {"free": {"requests_per_hour": 123, "models": ["gpt-cheap"]}}}


def test_landing_links(client):
    page = client.get("/").get_data(as_text=True)
    for href in ('href="/playground"', 'href="/docs"', 'href="/pricing"', 'href="/signup"',
                 'href="/login"'):
        assert href in page


def test_docs_use_this_servers_base_urls(client):
    page = client.get("/docs", base_url="https://ai.example.com").get_data(as_text=True)
    for snippet in ('base_url="https://ai.example.com/v1"', 'baseURL: "https://ai.example.com/v1"',
                    'anthropic.Anthropic(base_url="https://ai.example.com"',
                    'HttpOptions(base_url="https://ai.example.com")',
                    "curl https://ai.example.com/v1/chat/completions",
                    "POST https://ai.example.com/v1/chat/completions",
                    "x-api-key: KEY", "x-goog-api-key: KEY", "Authorization: Bearer KEY"):
        assert snippet.replace('"', "&#34;") in page or snippet in page, snippet


def test_pricing_lists_models_and_plans(client):
    page = client.get("/pricing").get_data(as_text=True)
    row = page[page.index("<code>gpt-cheap</code>"):].split("</tr>")[0]
    assert "0.25" in row and "0.50" in row and "0.01" in row and "2,048" in row
    assert "<code>gpt-test</code>" in page
    plans = page.split("<h2>Plans</h2>")[1]
    assert "123" in plans and "gpt-cheap" in plans


def test_unknown_pages_are_pages_for_browsers_and_json_for_apis(client):
    browser = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    page = client.get("/consle", headers=browser)
    assert page.status_code == 404 and page.mimetype == "text/html"
    assert "There is no page at /consle" in page.get_data(as_text=True)
    assert "Content-Security-Policy" in page.headers
    for path in ("/consle", "/v1/nope"):
        reply = client.get(path, headers={} if path == "/consle" else browser)
        assert reply.status_code == 404 and reply.get_json()["error"]["message"]
