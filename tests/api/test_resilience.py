"""Staying up when upstreams misbehave: backup base URLs, key pools, circuit breakers, the retry
budget, and the headers that name what served a request. Faults come from real sockets: a
listener that resets every connection (and counts them), fake upstreams that hang, answer 5xx,
429 with Retry-After or 401."""

import json
import logging
import time

import pytest

from tests.conftest import provider_entry
from tests.fake_faults import Refuser
from tests.fake_upstream import FakeUpstream, Script

BODY = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
KEYS = {"TOLLGATE_TEST_KEY_A": "sk-CANARY-pool-key-a-000000", "TOLLGATE_TEST_KEY_B":
        "sk-CANARY-pool-key-b-111111"}


@pytest.fixture
def refuser():
    fake = Refuser()
    yield fake
    fake.stop()


@pytest.fixture
def backup():
    fake = FakeUpstream().start()
    yield fake
    fake.stop()


@pytest.fixture
def post(client, api_key):
    def send(body=BODY, path="/v1/chat/completions", **headers):
        return client.post(path, json=body, headers={"Authorization": f"Bearer {api_key}",
                                                     **headers})
    return send


def urls(*fakes):
    return [f"{f.url}/v1" for f in fakes]


def entry(upstream, *fakes, **extra):
    """The fake provider with base_urls on the given fakes (or the upstream alone)."""
    e = provider_entry(upstream, **extra)
    e.pop("base_url")
    e["base_urls"] = urls(*(fakes or (upstream,)))
    return e


def text_of(resp):
    return resp.json["choices"][0]["message"]["content"]


# ---- backup base URLs -----------------------------------------------------------------------
@pytest.fixture
def settings(request, upstream, backup, refuser, monkeypatch):
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    make = getattr(request, "param", None) or (lambda up, b, r: {})
    return {"UPSTREAM_URL_COOLDOWN": 30.0, **make(upstream, backup, refuser)}


def refused_primary(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser, up)]}


@pytest.mark.parametrize("settings", [refused_primary], indirect=True)
@pytest.mark.parametrize("stream", [False, True])
def test_refused_primary_url_fails_over_to_backup(post, upstream, refuser, stream):
    resp = post({**BODY, "stream": stream})
    assert resp.status_code == 200, resp.get_data()
    assert resp.headers["x-tollgate-provider"] == "fake"
    assert resp.headers["x-tollgate-attempts"] == "2"
    assert refuser.connections == 1
    assert upstream.last.path == "/v1/chat/completions"  # the same path on the backup
    # cooling: the next request goes to the backup first, the failed URL is left alone
    again = post({**BODY, "stream": stream})
    assert again.status_code == 200 and again.headers["x-tollgate-attempts"] == "1"
    assert refuser.connections == 1


def hanging_primary(up, backup, refuser):
    return {"PROVIDERS": [entry(up, backup, up)], "UPSTREAM_READ_TIMEOUT": 0.5}


@pytest.mark.parametrize("settings", [hanging_primary], indirect=True)
def test_hanging_primary_costs_one_read_timeout(post, upstream, backup):
    backup.push(Script(delay=5))
    started = time.monotonic()
    resp = post()
    assert resp.status_code == 200 and text_of(resp) == "echo: hi"
    assert time.monotonic() - started < 3
    assert len(backup.received) == 1 and len(upstream.received) == 1


def failing_primary(up, backup, refuser):
    return {"PROVIDERS": [entry(up, backup, up)]}


@pytest.mark.parametrize("settings", [failing_primary], indirect=True)
@pytest.mark.parametrize("status", [500, 502, 503])
def test_5xx_primary_fails_over_to_backup(post, upstream, backup, status):
    backup.push(Script(status=status))
    resp = post()
    assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "2"
    assert [len(backup.received), len(upstream.received)] == [1, 1]


def two_providers(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser, backup, name="first"),
                          entry(up, name="second")]}


@pytest.mark.parametrize("settings", [two_providers], indirect=True)
def test_next_url_of_a_provider_comes_before_the_next_provider(post, upstream, backup, refuser):
    backup.push(Script(status=503))
    resp = post()
    assert resp.status_code == 200
    assert resp.headers["x-tollgate-provider"] == "second"
    assert resp.headers["x-tollgate-attempts"] == "3"
    assert refuser.connections == 1 and len(backup.received) == 1


# ---- key pools ------------------------------------------------------------------------------
def key_pool(up, backup, refuser):
    return {"PROVIDERS": [entry(up, api_key_envs=list(KEYS))]}


def keys_seen(fake):
    by_value = {f"Bearer {v}": k for k, v in KEYS.items()}
    return [by_value[r.headers["Authorization"]] for r in fake.received]


@pytest.mark.parametrize("settings", [key_pool], indirect=True)
def test_keys_take_turns(post, upstream):
    for _ in range(4):
        assert post().status_code == 200
    assert sorted(keys_seen(upstream)) == sorted(list(KEYS) * 2)


@pytest.mark.parametrize("settings", [key_pool], indirect=True)
def test_a_rate_limited_key_rests_for_retry_after(post, upstream):
    upstream.push(Script(status=429, headers={"Retry-After": "30"}))
    resp = post()
    assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "2"
    first, second = keys_seen(upstream)
    assert first != second
    for _ in range(3):
        assert post().status_code == 200
    assert keys_seen(upstream)[2:] == [second] * 3  # the limited key is left alone


@pytest.mark.parametrize("settings", [key_pool], indirect=True)
@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_leaves_rotation_named_by_its_variable(post, upstream, caplog, status):
    caplog.set_level(logging.INFO)
    upstream.push(Script(status=status, body={"error": {
        "message": "Incorrect API key provided", "type": "invalid_request_error"}}))
    resp = post()
    assert resp.status_code == 200, resp.get_data()
    bad, good = keys_seen(upstream)
    for _ in range(3):
        assert post().status_code == 200
    assert keys_seen(upstream)[2:] == [good] * 3
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert f"key {bad} was refused" in logged
    assert not any(v in logged for v in KEYS.values())


def single_key(up, backup, refuser):
    return {"PROVIDERS": [entry(up)]}


@pytest.mark.parametrize("settings", [single_key], indirect=True)
def test_resting_only_key_answers_503_without_calling(post, upstream):
    upstream.push(Script(status=429, headers={"Retry-After": "20"}))
    assert post().status_code == 429
    resp = post()
    assert resp.status_code == 503, resp.json
    assert resp.json["error"]["type"] == "service_unavailable_error"
    assert 18 <= int(resp.headers["Retry-After"]) <= 20
    assert resp.headers["x-tollgate-attempts"] == "0"
    assert len(upstream.received) == 1


# ---- circuit breaker ------------------------------------------------------------------------
def breaker(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser, up)], "BREAKER_FAILURES": 2,
            "BREAKER_OPEN_SECONDS": 0.6, "UPSTREAM_URL_COOLDOWN": 0.0}


@pytest.mark.parametrize("settings", [breaker], indirect=True)
def test_open_breaker_makes_no_connection_attempt(post, app, refuser):
    assert post().headers["x-tollgate-attempts"] == "2"
    assert post().headers["x-tollgate-attempts"] == "2"
    assert refuser.connections == 2  # two consecutive failures: open
    for _ in range(5):
        resp = post()
        assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "1"
    assert refuser.connections == 2
    time.sleep(0.7)  # open period over: one trial, which fails and opens it again
    assert post().headers["x-tollgate-attempts"] == "2"
    assert post().headers["x-tollgate-attempts"] == "1"
    assert refuser.connections == 3


def breaker_on_fake(up, backup, refuser):
    return {"PROVIDERS": [entry(up, backup, up)], "BREAKER_FAILURES": 2,
            "BREAKER_OPEN_SECONDS": 0.5, "UPSTREAM_URL_COOLDOWN": 0.0}


@pytest.mark.parametrize("settings", [breaker_on_fake], indirect=True)
def test_half_open_trial_closes_the_breaker(post, upstream, backup):
    backup.push(Script(status=500), Script(status=500))
    post(), post()
    assert len(backup.received) == 2
    post()
    assert len(backup.received) == 2  # open
    time.sleep(0.6)
    resp = post()  # the trial: the primary is back
    assert resp.headers["x-tollgate-attempts"] == "1" and len(backup.received) == 3
    for _ in range(3):
        post()
    assert len(backup.received) == 6  # closed again: the primary serves


def dead_only(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser)], "BREAKER_FAILURES": 1,
            "BREAKER_OPEN_SECONDS": 30.0, "UPSTREAM_URL_COOLDOWN": 0.0}


@pytest.mark.parametrize("settings", [dead_only], indirect=True)
@pytest.mark.parametrize("family", ["openai", "anthropic", "gemini"])
def test_nobody_healthy_is_503_with_retry_after_in_the_callers_format(post, refuser, family):
    path, body = {
        "openai": ("/v1/chat/completions", BODY),
        "anthropic": ("/v1/messages", {**BODY, "max_tokens": 10}),
        "gemini": ("/v1beta/models/gpt-test:generateContent",
                   {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}),
    }[family]
    assert post(body, path).status_code == 502  # the failure that opens the breaker
    resp = post(body, path)
    assert resp.status_code == 503
    assert 28 <= int(resp.headers["Retry-After"]) <= 30
    err = resp.json["error"]
    if family == "openai":
        assert err["type"] == "service_unavailable_error"
    elif family == "anthropic":
        assert resp.json["type"] == "error" and err["type"] in ("overloaded_error", "api_error")
    else:
        assert err["code"] == 503 and err["status"] == "UNAVAILABLE"
    assert refuser.connections == 1


# ---- the retry budget and streams -----------------------------------------------------------
EXTRA_DEAD = []


def three_dead(up, backup, refuser):
    EXTRA_DEAD[:] = [Refuser(), Refuser()]
    return {"PROVIDERS": [entry(up, refuser, *EXTRA_DEAD, up)], "UPSTREAM_RETRY_ATTEMPTS": 2}


@pytest.mark.parametrize("settings", [three_dead], indirect=True)
def test_attempts_stop_at_the_budget(post, upstream, refuser):
    try:
        resp = post()
        assert resp.status_code == 502 and resp.headers["x-tollgate-attempts"] == "2"
        tried = [refuser.connections] + [r.connections for r in EXTRA_DEAD]
        assert tried == [1, 1, 0] and upstream.received == []
    finally:
        for extra in EXTRA_DEAD:
            extra.stop()


@pytest.mark.parametrize("settings", [failing_primary], indirect=True)
def test_no_retry_once_a_stream_started(app, post, upstream, backup):
    backup.push(Script(content="a b c d e f", drop_after=3))
    resp = post({**BODY, "stream": True})
    assert resp.status_code == 200
    events = [e for e in resp.get_data().split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    assert json.loads(events[-2][len(b"data: "):])["error"]["type"] == \
        "service_unavailable_error"
    assert len(backup.received) == 1 and upstream.received == []
    assert app.extensions["billing"].flush()
    from extensions import db
    from models import UsageRecord
    with app.app_context():
        record = db.session.query(UsageRecord).one()
        assert record.partial and record.provider == "fake"


# ---- what served it -------------------------------------------------------------------------
def test_usage_record_and_credits_api_name_the_provider(app, post, client, api_key):
    assert post().headers["x-tollgate-provider"] == "fake"
    assert app.extensions["billing"].flush()
    listing = client.get("/v1/credits?include_usage=true",
                         headers={"Authorization": f"Bearer {api_key}"}).json
    assert listing["data"]["usage"]["list"][0]["provider"] == "fake"


def test_request_id_is_echoed_forwarded_and_quoted(post, upstream):
    resp = post(**{"x-request-id": "client-id-123"})
    assert resp.headers["x-request-id"] == "client-id-123"
    assert upstream.last.headers["X-Request-Id"] == "client-id-123"
    fresh = post(**{"x-request-id": "bad id\twith tab"})
    assert fresh.headers["x-request-id"].startswith("req_")
    assert upstream.last.headers["X-Request-Id"] == fresh.headers["x-request-id"]
    error = post({"model": "nope", "messages": []}, **{"x-request-id": "err-1"})
    assert error.status_code == 400 and "(request id: err-1)" in error.json["error"]["message"]


def sdk_failover(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser, backup, name="first", api_key_envs=list(KEYS)),
                          entry(up, name="second")]}


@pytest.mark.parametrize("settings", [sdk_failover], indirect=True)
def test_sdks_see_success_through_every_kind_of_fault(gateway, api_key, upstream, backup,
                                                      refuser):
    """Refused URL, then 429 and 401 on the backup URL's two keys, then the next provider: the
    official SDKs (no retries of their own) get their answer and never see a fault."""
    import anthropic
    import openai

    backup.push(Script(status=429, headers={"Retry-After": "60"}),
                Script(status=401, body={"error": {"message": "bad key"}}))
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt-test", messages=[{"role": "user", "content": "hi"}])
    assert raw.parse().choices[0].message.content == "echo: hi"
    assert raw.headers["x-tollgate-provider"] == "second"
    assert raw.headers["x-tollgate-attempts"] == "4"
    assert refuser.connections == 1 and len(backup.received) == 2
    claude = anthropic.Anthropic(base_url=gateway, api_key=api_key, max_retries=0)
    with claude.messages.stream(model="gpt-test", max_tokens=50,
                                messages=[{"role": "user", "content": "hi"}]) as stream:
        assert stream.get_final_text() == "echo: hi"
    assert refuser.connections == 1 and len(backup.received) == 2  # nothing healthy left there


@pytest.mark.parametrize("settings", [breaker_on_fake], indirect=True)
def test_a_trial_answered_with_a_client_error_still_closes_the_breaker(post, upstream, backup):
    backup.push(Script(status=500), Script(status=500))
    post(), post()
    time.sleep(0.6)
    backup.push(Script(status=400, body={"error": {"message": "bad field", "type": "x"}}))
    assert post().status_code == 400  # the trial: the URL is up, the request was wrong
    post()
    assert len(backup.received) == 4 and len(upstream.received) == 2


def breaker_on_streams(up, backup, refuser):
    return {"PROVIDERS": [entry(up, backup, up)], "BREAKER_FAILURES": 2,
            "BREAKER_OPEN_SECONDS": 30.0, "UPSTREAM_URL_COOLDOWN": 0.0, "METRICS_TOKEN": "t"}


@pytest.mark.parametrize("settings", [breaker_on_streams], indirect=True)
def test_streams_broken_mid_way_count_against_their_url(post, client, upstream, backup):
    backup.push(*[Script(content="a b c d e f", drop_after=3) for _ in range(2)])
    for _ in range(2):
        resp = post({**BODY, "stream": True})
        assert b'"error"' in resp.get_data()  # no retry once started
        resp.close()
    resp = post({**BODY, "stream": True})
    assert resp.status_code == 200 and resp.headers["x-tollgate-attempts"] == "1"
    assert b"[DONE]" in resp.get_data() and b'"error"' not in resp.get_data()
    assert len(backup.received) == 2 and len(upstream.received) == 1  # the primary is open
    text = client.get("/metrics", headers={"Authorization": "Bearer t"}).get_data(as_text=True)
    assert 'tollgate_upstream_failures_total{kind="stream",provider="fake"} 2.0' in text


# ---- embeddings take the same routing plan --------------------------------------------------
def embedding_urls_and_keys(up, backup, refuser):
    return {"PROVIDERS": [entry(up, refuser, up, api_key_envs=list(KEYS),
                                embedding_models=["text-embedding-3-small"])]}


@pytest.mark.parametrize("settings", [embedding_urls_and_keys], indirect=True)
def test_embeddings_fail_over_across_urls_and_keys(app, post, upstream, refuser):
    body = {"model": "text-embedding-3-small", "input": ["a", "b"]}
    upstream.push(Script(status=429, headers={"Retry-After": "30"}))
    resp = post(body, path="/v1/embeddings")
    assert resp.status_code == 200, resp.get_data()
    assert len(resp.json["data"]) == 2
    # the refused URL, then the backup with the first key (429), then with the second key
    assert resp.headers["x-tollgate-attempts"] == "3"
    assert resp.headers["x-tollgate-provider"] == "fake"
    assert refuser.connections == 1
    first, second = keys_seen(upstream)
    assert first != second
    assert upstream.last.path == "/v1/embeddings"
    # the refused URL cools and the limited key rests: the next request goes straight through
    again = post(body, path="/v1/embeddings")
    assert again.status_code == 200 and again.headers["x-tollgate-attempts"] == "1"
    assert refuser.connections == 1 and keys_seen(upstream)[2] == second
    assert app.extensions["billing"].flush()  # settlement is written off the response path
    with app.app_context():
        from models import UsageRecord
        rows = UsageRecord.query.filter_by(model="text-embedding-3-small").all()
    assert [r.provider for r in rows] == ["fake", "fake"]
