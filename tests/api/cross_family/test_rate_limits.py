"""Per-key rate limits through the real app and flask-limiter, on memory and Redis storage."""

import time

import openai
import pytest
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy import event

from extensions import db, limiter
from tests.conftest import STORAGES, limit_storage, make_user, provider_entry

CHAT = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
PLANS = {
    "free": {"requests_per_hour": 200, "requests_per_minute": {"chat": 3, "images": 2}},
    "hourly": {"requests_per_hour": 4, "requests_per_minute": {"chat": 10, "images": 10}},
    "open": {},
}


@pytest.fixture(params=STORAGES)
def settings(request, upstream, tmp_path):
    return {"PLANS": PLANS, "AUTH_FAILURE_LIMIT": "3/minute", **limit_storage(request.param),
            "PROVIDERS": [provider_entry(upstream, image_models=["dall-e-2"])],
            "IMAGE_STORE_PATH": str(tmp_path / "images")}


def chat(client, key, **extra):
    return client.post("/v1/chat/completions", json={**CHAT, **extra},
                       headers={"Authorization": f"Bearer {key}"})


def rate_headers(resp) -> tuple[int, int, int]:
    return (int(resp.headers["X-RateLimit-Limit-Requests"]),
            int(resp.headers["X-RateLimit-Remaining-Requests"]),
            int(resp.headers["X-RateLimit-Reset-Requests"]))


def put_on_plan(app, name, plan):
    result = app.test_cli_runner().invoke(args=["users", "plan", name, plan])
    assert result.exit_code == 0, result.output


def test_per_minute_limit_then_429_not_forwarded(client, api_key, upstream):
    started = time.time()
    for remaining in (2, 1, 0):
        resp = chat(client, api_key)
        assert resp.status_code == 200
        limit, left, reset = rate_headers(resp)
        assert (limit, left) == (3, remaining)
        assert started + 59 <= reset <= time.time() + 61
    refused = chat(client, api_key)
    assert refused.status_code == 429
    assert refused.json["error"]["type"] == "rate_limit_error"
    assert refused.json["error"]["code"] == "rate_limit_exceeded"
    assert rate_headers(refused)[:2] == (3, 0)
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert len(upstream.received) == 3, "a refused request reached the upstream"


def test_limits_are_per_key(app, client):
    _, first = make_user(app, "first")
    _, second = make_user(app, "second")
    assert [chat(client, first).status_code for _ in range(4)] == [200, 200, 200, 429]
    assert chat(client, second).status_code == 200


def test_hourly_limit_stops_a_client_under_the_minute_limit(app, client, upstream):
    _, key = make_user(app, "hourly-user")
    put_on_plan(app, "hourly-user", "hourly")
    seen = []
    for _ in range(4):
        resp = chat(client, key)
        assert resp.status_code == 200
        seen.append(rate_headers(resp)[:2])
    assert seen == [(4, 3), (4, 2), (4, 1), (4, 0)], "the hourly limit is the tightest"
    refused = chat(client, key)
    assert refused.status_code == 429 and refused.json["error"]["type"] == "rate_limit_error"
    limit, remaining, reset = rate_headers(refused)
    assert (limit, remaining) == (4, 0) and reset >= time.time() + 3500
    assert int(refused.headers["Retry-After"]) > 3500
    assert len(upstream.received) == 4


def test_unlimited_plan_has_no_limit_headers(app, client):
    _, key = make_user(app, "open-user")
    put_on_plan(app, "open-user", "open")
    for _ in range(5):
        resp = chat(client, key)
        assert resp.status_code == 200
        assert "X-RateLimit-Limit-Requests" not in resp.headers


def test_models_list_reports_without_counting(client, api_key):
    chat(client, api_key)
    for _ in range(3):
        resp = client.get("/v1/models", headers={"Authorization": f"Bearer {api_key}"})
        assert resp.status_code == 200
        assert rate_headers(resp)[:2] == (3, 2)


IMAGE = {"model": "dall-e-2", "prompt": "a kite", "response_format": "b64_json"}


def test_families_are_counted_apart_and_share_the_hourly_limit(app, client):
    """Chat and images have their own per-minute limits; both count towards the hourly one."""
    _, key = make_user(app, "mixed")
    auth = {"Authorization": f"Bearer {key}"}
    images = [client.post("/v1/images/generations", headers=auth, json=IMAGE)
              for _ in range(3)]
    assert [r.status_code for r in images] == [200, 200, 429]
    assert rate_headers(images[0])[:2] == (2, 1)
    assert images[2].json["error"]["type"] == "rate_limit_error"
    assert [chat(client, key).status_code for _ in range(4)] == [200, 200, 200, 429]

    _, hourly_key = make_user(app, "mixed-hourly")
    put_on_plan(app, "mixed-hourly", "hourly")
    auth = {"Authorization": f"Bearer {hourly_key}"}
    codes = [client.post("/v1/images/generations", headers=auth, json=IMAGE).status_code
             for _ in range(2)]
    codes += [chat(client, hourly_key).status_code for _ in range(3)]
    assert codes == [200, 200, 200, 200, 429], "images and chat share the hourly limit of 4"


def test_failed_authentication_is_limited_per_address(client, api_key, upstream):
    bad = {"Authorization": "Bearer tg-not-a-real-key-0000000000"}
    for _ in range(3):
        assert client.get("/v1/models", headers=bad).status_code == 401
    refused = client.get("/v1/models", headers=bad)
    assert refused.status_code == 429
    assert refused.json["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["Retry-After"]) >= 1
    # the address is refused before any key is looked at: a right guess would not get in now
    assert chat(client, api_key).status_code == 429
    assert not upstream.received
    # another address is not affected
    other = client.post("/v1/chat/completions", json=CHAT,
                        headers={"Authorization": f"Bearer {api_key}"},
                        environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert other.status_code == 200


def test_missing_keys_do_not_count_as_guesses(client, api_key):
    for _ in range(5):
        assert client.get("/v1/models").status_code == 401
    assert chat(client, api_key).status_code == 200


def test_sdk_sees_rate_limit_error(gateway, api_key):
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)
    for _ in range(3):
        sdk.chat.completions.create(**CHAT)
    with pytest.raises(openai.RateLimitError) as info:
        sdk.chat.completions.create(**CHAT)
    assert info.value.status_code == 429
    assert info.value.body["type"] == "rate_limit_error"
    assert int(info.value.response.headers["retry-after"]) >= 1


def test_a_forged_forwarded_for_does_not_escape_the_failed_auth_limit(client):
    """With no trusted proxy configured, X-Forwarded-For is the client's word and is ignored."""
    codes = [client.get("/v1/models", headers={"Authorization": "Bearer tg-wrong-guess-000000",
                                               "X-Forwarded-For": f"10.9.9.{n}"}).status_code
             for n in range(4)]
    assert codes == [401, 401, 401, 429]


def test_plan_and_key_come_from_the_cache_not_the_database(app, client, api_key):
    statements = []

    def record(conn, cursor, statement, *rest):
        statements.append(statement)

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        assert [chat(client, api_key).status_code for _ in range(3)] == [200, 200, 200]
    finally:
        event.remove(engine, "before_cursor_execute", record)
    lookups = [s for s in statements if "api_keys" in s or "users" in s]
    assert len(lookups) == 1, lookups  # the first lookup; then the cache answers


def test_counts_use_a_moving_window(app):
    """No fixed windows: those let a client double its burst across a window boundary."""
    assert isinstance(limiter.limiter, MovingWindowRateLimiter)
