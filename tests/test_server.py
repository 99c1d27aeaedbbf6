"""The real server: gunicorn + gevent worker, driven over HTTP by the official SDK."""

import time

import openai
import pytest
import requests

from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, every_provider_type
from tests.fake_upstream import Script
from tests.live_server import GunicornServer


@pytest.fixture
def server(upstream, tmp_path, monkeypatch):
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    # gpt-test (OpenAI type), claude-test and gemini-test: one fake speaks all three formats
    srv = GunicornServer(tmp_path, providers=every_provider_type(upstream))
    srv.key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


def test_sdk_against_gunicorn(server):
    sdk = openai.OpenAI(base_url=f"{server.url}/api/v1/ai", api_key=server.key, max_retries=0)
    reply = sdk.chat.completions.create(model="gpt-test",
                                        messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].message.content == "echo: hi"
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         messages=[{"role": "user", "content": "a b c"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: a b c"
    logs = server.logs()
    assert "MonkeyPatchWarning" not in logs
    assert server.key not in logs and UPSTREAM_KEY not in logs


def test_first_byte_is_not_buffered(server, upstream):
    """The client sees the first chunk while the upstream is still holding back the rest."""
    import threading
    hold = threading.Event()
    upstream.push(Script(content="first then the rest", hold=hold))
    with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=10,
                       headers={"Authorization": f"Bearer {server.key}"},
                       json={"model": "gpt-test", "stream": True,
                             "messages": [{"role": "user", "content": "x"}]}) as resp:
        lines = resp.iter_lines()
        first = next(line for line in lines if line)
        assert b'"role": "assistant"' in first and not hold.is_set()
        hold.set()
        rest = [line for line in lines if line]
    assert rest[-1] == b"data: [DONE]"


def test_client_disconnect_closes_upstream_promptly(server, upstream):
    """The upstream goes silent for 8 s after the first chunk; the client leaves meanwhile.
    The gateway must close its upstream connection within about a second, not at the next chunk."""
    upstream.push(Script(content="slow answer", silence_after_first=8))
    resp = requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=10,
                         headers={"Authorization": f"Bearer {server.key}"},
                         json={"model": "gpt-test", "stream": True,
                               "messages": [{"role": "user", "content": "x"}]})
    next(line for line in resp.iter_lines() if line)
    time.sleep(0.3)  # let the gateway settle into waiting on the silent upstream
    left_at = time.monotonic()
    resp.close()
    record = upstream.received[-1]
    deadline = left_at + 3
    while record.stream_closed_by_peer_at is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert record.stream_closed_by_peer_at is not None, "upstream connection left open"
    assert record.stream_closed_by_peer_at - left_at < 1.5
    # the worker is free again
    ok = requests.post(f"{server.url}/v1/chat/completions", timeout=5,
                       headers={"Authorization": f"Bearer {server.key}"},
                       json={"model": "gpt-test", "messages": [{"role": "user", "content": "y"}]})
    assert ok.json()["choices"][0]["message"]["content"] == "echo: y"


def test_client_leaving_mid_stream_is_charged_for_what_it_got(server, upstream):
    upstream.push(Script(content="alpha beta gamma delta", silence_after_first=8, silence_at=2,
                         usage=None))
    resp = requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=10,
                         headers={"Authorization": f"Bearer {server.key}"},
                         json={"model": "gpt-test", "stream": True,
                               "messages": [{"role": "user", "content": "x"}]})
    got = b""
    for chunk in resp.iter_content(None):
        got += chunk
        if b"beta" in got:
            break
    resp.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        shown = server.flask("credits", "show", "alice")
        if "partial" in shown:
            break
        time.sleep(0.2)
    record = shown.strip().splitlines()[-1].split("\t")
    assert record[-1] == "estimated,partial", shown
    assert record[4] == "out 3"  # "alpha beta" relayed: 10 characters, 4 to a token


def test_sigterm_drains_streams_and_writes_every_charge(server, upstream):
    """A graceful stop lets open streams finish and flushes their settlements."""
    import threading
    upstream.push(*[Script(content="one two three four", chunk_gap=0.3) for _ in range(3)])
    bodies = []

    def stream():
        with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=20,
                           headers={"Authorization": f"Bearer {server.key}"},
                           json={"model": "gpt-test", "stream": True,
                                 "messages": [{"role": "user", "content": "x"}]}) as resp:
            bodies.append(resp.content)

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    while len(upstream.received) < 3:
        time.sleep(0.05)
    server.stop()
    for t in threads:
        t.join(20)
    assert len(bodies) == 3 and all(b.endswith(b"data: [DONE]\n\n") for b in bodies)
    shown = server.flask("credits", "show", "alice")
    assert len([line for line in shown.splitlines() if "gpt-test" in line]) == 3, shown


def test_translated_streams_under_gunicorn(server, upstream):
    """The Anthropic SDK streaming from a Gemini-type model, and google-genai from a Claude-type
    one, through the real server; a client that leaves a translated stream frees the upstream."""
    import anthropic
    from google import genai
    from google.genai import types

    claude = anthropic.Anthropic(base_url=server.url, api_key=server.key, max_retries=0)
    with claude.messages.stream(model="gemini-test", max_tokens=20,
                                messages=[{"role": "user", "content": "a b c"}]) as stream:
        assert stream.get_final_message().content[0].text == "echo: a b c"
    gemini = genai.Client(api_key=server.key, http_options=types.HttpOptions(base_url=server.url))
    chunks = gemini.models.generate_content_stream(model="claude-test", contents="d e")
    assert "".join(c.text or "" for c in chunks) == "echo: d e"
    upstream.push(Script(content="slow answer", silence_after_first=8))
    resp = requests.post(f"{server.url}/v1/messages", stream=True, timeout=10,
                         headers={"x-api-key": server.key},
                         json={"model": "gpt-test", "max_tokens": 5, "stream": True,
                               "messages": [{"role": "user", "content": "x"}]})
    next(line for line in resp.iter_lines() if line)
    time.sleep(0.3)
    left_at = time.monotonic()
    resp.close()
    record = upstream.received[-1]
    while record.stream_closed_by_peer_at is None and time.monotonic() < left_at + 3:
        time.sleep(0.02)
    assert record.stream_closed_by_peer_at is not None
    assert record.stream_closed_by_peer_at - left_at < 1.5
    logs = server.logs()
    assert server.key not in logs and UPSTREAM_KEY not in logs


def test_embeddings_split_for_gemini_run_in_parallel(upstream, tmp_path, monkeypatch):
    """Under gevent, the calls after the first of a split request overlap (at most 4 at once),
    and the vectors still come back in the inputs' order."""
    from tests.fake_embeddings import vector

    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    providers = [{**every_provider_type(upstream)[2], "embedding_models": ["gemini-embedding-001"]}]
    srv = GunicornServer(tmp_path, providers=providers)
    key = srv.create_key()
    srv.start()
    try:
        upstream.push(*[Script(delay=0.3) for _ in range(6)])
        texts = [f"input {i}" for i in range(550)]
        sdk = openai.OpenAI(base_url=f"{srv.url}/v1", api_key=key, max_retries=0)
        reply = sdk.embeddings.create(model="gemini-embedding-001", input=texts)
        assert [d.embedding for d in reply.data] == [vector(t) for t in texts]
        calls = [r for r in upstream.received if r.path.endswith(":batchEmbedContents")]
        assert [len(c.json["requests"]) for c in calls] == [100, 100, 100, 100, 100, 50]
        assert 2 <= upstream.most_in_flight <= 4
    finally:
        srv.stop()


@pytest.fixture
def impatient_server(upstream, tmp_path, monkeypatch):
    """The real server with a 1 s upstream read timeout."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    srv = GunicornServer(tmp_path, providers=every_provider_type(upstream),
                         env={"GATEWAY_UPSTREAM_READ_TIMEOUT": "1"})
    srv.key = srv.create_key()
    srv.start()
    yield srv
    srv.stop()


def _stream(server, model="gpt-test"):
    started = time.monotonic()
    with requests.post(f"{server.url}/v1/chat/completions", stream=True, timeout=20,
                       headers={"Authorization": f"Bearer {server.key}"},
                       json={"model": model, "stream": True,
                             "messages": [{"role": "user", "content": "x"}]}) as resp:
        assert resp.status_code == 200
        return resp.content, time.monotonic() - started


def test_a_stream_whose_upstream_goes_silent_ends_with_a_timeout_error(impatient_server,
                                                                        upstream):
    """Silent for 8 s after its second chunk, past the 1 s read timeout: the client gets what
    came, then an error event, about a second after the silence began; and it is charged."""
    upstream.push(Script(content="alpha beta gamma delta", silence_after_first=8, silence_at=2,
                         usage=None))
    body, took = _stream(impatient_server)
    assert b'"content": "alpha"' in body and b'"content": " beta"' in body
    assert b'"content": " gamma"' not in body
    assert body.endswith(b'"code": "upstream_timeout"}}\n\ndata: [DONE]\n\n'), body[-300:]
    assert 0.9 < took < 4, took
    deadline = time.monotonic() + 10
    while "partial" not in (shown := impatient_server.flask("credits", "show", "alice")):
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)


def test_a_stream_longer_than_the_read_timeout_with_shorter_gaps_completes(impatient_server,
                                                                           upstream):
    """Gaps of 0.4 s, 3 s in all, against a 1 s read timeout: the timeout is per silence, not
    per stream; and a stream after it on the same upstream connection has its timeout too."""
    upstream.push(Script(content="one two three four five six seven", chunk_gap=0.4))
    body, took = _stream(impatient_server)
    assert body.endswith(b"data: [DONE]\n\n") and b"error" not in body
    assert b'"content": " seven"' in body and took > 2.5
    upstream.push(Script(content="alpha beta gamma", silence_after_first=8, silence_at=1,
                         usage=None))
    body, took = _stream(impatient_server)
    assert b'"code": "upstream_timeout"' in body and took < 4, (body[-300:], took)
