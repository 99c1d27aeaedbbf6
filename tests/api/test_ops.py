"""Operations endpoints in-process: /healthz, /readyz naming what is down, /metrics behind its
token, never behind an API key or a rate limit."""

import os

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import make_url

from tests.fake_faults import TcpProxy
from tests.live_server import free_port

TOKEN = "metrics-token-for-tests"


@pytest.fixture
def settings():
    return {"METRICS_TOKEN": TOKEN, "READY_TIMEOUT": 0.5}


def test_healthz_and_readyz(client, upstream):
    assert client.get("/healthz").json == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    assert ready.json["checks"] == {"database": "ok"}
    assert "x-request-id" in ready.headers
    assert upstream.received == []


def test_metrics_needs_its_token(client):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    resp = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert resp.status_code == 200 and resp.content_type.startswith("text/plain")
    names = {f.name for f in text_string_to_metric_families(resp.get_data(as_text=True))}
    assert {"tollgate_requests", "tollgate_holds_open", "tollgate_open_streams"} <= names


def test_metrics_count_requests(client, api_key):
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi there"}]}
    for stream in (False, True, False):
        resp = client.post("/v1/chat/completions", json={**body, "stream": stream},
                           headers={"Authorization": f"Bearer {api_key}"})
        resp.get_data()
        resp.close()
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True)
    served = [s for f in text_string_to_metric_families(text) for s in f.samples
              if s.name == "tollgate_requests_total" and s.labels["status"] == "200"
              and s.labels["family"] == "openai"]
    assert sum(s.value for s in served) == 3
    assert served[0].labels["provider"] == "fake" and served[0].labels["model"] == "gpt-test"


def test_requests_refused_before_a_view_are_counted_in_their_family(client):
    for path in ("/v1/responses", "/v1/images/generations"):
        assert client.post(path, json={}).status_code == 401
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True)
    refused = {s.labels["family"] for f in text_string_to_metric_families(text)
               for s in f.samples
               if s.name == "tollgate_requests_total" and s.labels["status"] == "401"}
    assert refused == {"responses", "openai"}


@pytest.mark.parametrize("settings", [{"METRICS_TOKEN": ""}])
def test_metrics_off_without_a_token(client):
    assert client.get("/metrics").status_code == 404


@pytest.mark.parametrize("settings", [{
    "RATELIMIT_STORAGE_URI": f"redis://127.0.0.1:{free_port()}/0", "READY_TIMEOUT": 0.5}])
def test_readyz_names_redis_when_it_is_down(client):
    resp = client.get("/readyz")
    assert resp.status_code == 503
    assert resp.json["failing"] == ["redis"] and resp.json["checks"]["database"] == "ok"
    assert "redis://" not in resp.get_data(as_text=True)


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="needs PostgreSQL")
def test_readyz_names_the_database_when_postgresql_is_unreachable(postgres_url, upstream,
                                                                  tmp_path, monkeypatch):
    from app import create_app

    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    monkeypatch.setenv("GATEWAY_CONFIG", str(tmp_path / "absent.toml"))
    app = create_app({"SQLALCHEMY_DATABASE_URI": url.set(host="127.0.0.1", port=proxy.port)
                      .render_as_string(hide_password=False), "READY_TIMEOUT": 1.0,
                      "CREATE_TABLES": False,
                      "PROVIDERS": []})
    try:
        client = app.test_client()
        assert client.get("/readyz").status_code == 200
        proxy.cut()
        resp = client.get("/readyz")
        assert resp.status_code == 503, resp.json
        assert resp.json["failing"] == ["database"]
        assert resp.headers["Retry-After"]
        assert client.get("/healthz").status_code == 200  # alive all the same
    finally:
        proxy.cut()
        app.extensions["billing"].shutdown()
        with app.app_context():
            from extensions import db
            db.engine.dispose()


@pytest.mark.parametrize("settings", [{"METRICS_TOKEN": TOKEN, "BREAKER_FAILURES": 1}])
def test_breaker_state_is_exported(client, api_key, upstream):
    from tests.fake_upstream import Script

    upstream.push(Script(status=503))
    body = {"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}]}
    assert client.post("/v1/chat/completions", json=body,
                       headers={"Authorization": f"Bearer {api_key}"}).status_code == 503
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(
        as_text=True)
    states = {s.labels["url"]: s.value for f in text_string_to_metric_families(text)
              for s in f.samples if s.name == "tollgate_breaker_state"}
    assert states == {f"{upstream.url}/v1": 2.0}
    failures = [s for f in text_string_to_metric_families(text) for s in f.samples
                if s.name == "tollgate_upstream_failures_total"]
    assert [(s.labels["kind"], s.value) for s in failures] == [("status_5xx", 1.0)]
