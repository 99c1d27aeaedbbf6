"""The Responses API on the real server (gunicorn + gevent): the SDK across providers, and a
client that leaves a stream is charged for what was produced while the upstream is let go."""

import time

import openai
import pytest
import requests

from tests.api.responses.conftest import providers
from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV
from tests.fake_upstream import Script
from tests.live_server import GunicornServer


@pytest.fixture
def server(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    srv = GunicornServer(tmp_path, providers=providers(upstream))
    srv.key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


def test_responses_under_gunicorn(server, upstream):
    sdk = openai.OpenAI(base_url=f"{server.url}/api/v1/ai", api_key=server.key, max_retries=0)
    first = sdk.responses.create(model="claude-test", input="a b c")
    assert first.output_text == "echo: a b c"
    with sdk.responses.stream(model="gpt-test", input="d e",
                              previous_response_id=first.id) as stream:
        final = stream.get_final_response()
    assert final.output_text == "echo: d e"
    assert [i["role"] for i in upstream.last.json["input"]] == ["user", "assistant", "user"]
    with sdk.responses.stream(model="gemini-test", input="f",
                              previous_response_id=final.id) as stream:
        assert stream.get_final_response().output_text == "echo: f"
    assert sdk.responses.retrieve(final.id).output_text == "echo: d e"
    for model in ("gpt-test", "claude-test"):  # passthrough, translated
        leave_a_stream(server, upstream, model)
    logs = server.logs()
    assert server.key not in logs and UPSTREAM_KEY not in logs


def leave_a_stream(server, upstream, model):
    """The upstream goes silent after a few words; the client leaves meanwhile. The upstream is
    let go within a second or so, and the words relayed are charged, marked partial."""
    upstream.push(Script(content="slow answer with many words", silence_after_first=8,
                         silence_at=6, usage=None))
    resp = requests.post(f"{server.url}/v1/responses", stream=True, timeout=10,
                         headers={"Authorization": f"Bearer {server.key}"},
                         json={"model": model, "input": "x", "stream": True})
    next(line for line in resp.iter_lines() if b"output_text.delta" in line)  # words arrived
    time.sleep(0.3)
    left_at = time.monotonic()
    resp.close()
    record = upstream.received[-1]
    while record.stream_closed_by_peer_at is None and time.monotonic() < left_at + 3:
        time.sleep(0.02)
    assert record.stream_closed_by_peer_at is not None
    assert record.stream_closed_by_peer_at - left_at < 1.5
    deadline = time.monotonic() + 20
    while True:  # newest charge first
        shown = server.flask("credits", "show", "alice")
        newest = next(line for line in shown.splitlines()[1:])
        if "partial" in newest or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert model in newest and "partial" in newest, shown
