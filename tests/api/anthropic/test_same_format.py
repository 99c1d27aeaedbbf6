"""An Anthropic client and an Anthropic provider: requests go as sent, never through the IR."""

import pytest
import requests

from tests.conftest import every_provider_type


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream)}


def test_count_tokens_sends_the_clients_own_request(gateway, api_key, upstream):
    body = {"model": "claude-test", "provider": "fake-claude",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "a b", "cache_control": {"type": "ephemeral"}}]}],
            "thinking": {"type": "enabled", "budget_tokens": 1024}}
    resp = requests.post(f"{gateway}/v1/messages/count_tokens", json=body,
                         headers={"x-api-key": api_key, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 200 and "x-tollgate-token-count" not in resp.headers
    assert upstream.last.path == "/v1/messages/count_tokens"
    assert upstream.last.json == {k: v for k, v in body.items() if k != "provider"}
