"""RATELIMIT_ENABLED = false: no request limits, no failed-auth limit, no headers."""

import pytest

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "x"}]}


@pytest.fixture
def settings():
    return {"RATELIMIT_ENABLED": False, "AUTH_FAILURE_LIMIT": "1/minute"}


def test_nothing_is_limited(client, api_key):
    wrong, right = {"Authorization": "Bearer tg-wrong"}, {"Authorization": f"Bearer {api_key}"}
    assert [client.get("/v1/models", headers=wrong).status_code for _ in range(3)] == [401] * 3
    for _ in range(12):  # the default free plan allows 10 per minute
        resp = client.post("/v1/chat/completions", json=CHAT, headers=right)
        assert resp.status_code == 200 and "X-RateLimit-Limit-Requests" not in resp.headers
    models = client.get("/v1/models", headers=right)
    assert models.status_code == 200 and "X-RateLimit-Limit-Requests" not in models.headers
