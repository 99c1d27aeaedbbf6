"""A stream that ends before the upstream's final usage is charged for the output it relayed,
in all nine cells (three client formats x three provider types): when the upstream breaks
there, and when the client leaves there (under gunicorn, whose worker notices a hang-up)."""

import time

import pytest
import requests
from sqlalchemy import create_engine, func, select

from extensions import db
from models import UsageRecord
from services.billing import ledger_gap
from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, every_provider_type, make_user
from tests.fake_upstream import FakeUpstream, Script
from tests.live_server import GunicornServer

WORDS = 60
CONTENT = " ".join(["wxyz"] * WORDS)  # 60 words the upstream counts as 60 tokens
MODELS = {"openai": "gpt-test", "anthropic": "claude-test", "gemini": "gemini-test"}
# Index of the stream event that carries each provider type's final usage, in the fake's
# sequence for CONTENT: OpenAI's usage chunk (after role, words, finish), Anthropic's
# message_delta (after message_start, ping, block start, words, block stop), Gemini's last chunk.
FINAL_USAGE_AT = {"openai": WORDS + 2, "anthropic": WORDS + 4, "gemini": WORDS}


def call(client_format, model):
    """(path, body, headers) of a streaming request in a client format."""
    if client_format == "openai":
        return "/v1/chat/completions", {"model": model, "stream": True, "messages": [
            {"role": "user", "content": "count"}]}, {}
    if client_format == "anthropic":
        return "/v1/messages", {"model": model, "stream": True, "max_tokens": 500, "messages": [
            {"role": "user", "content": "count"}]}, {"anthropic-version": "2023-06-01"}
    return (f"/v1beta/models/{model}:streamGenerateContent?alt=sse",
            {"contents": [{"role": "user", "parts": [{"text": "count"}]}]}, {})


def check_record(record):
    assert record.partial, "a cut stream is marked partial"
    # what was relayed is paid for: 60 tokens, within our estimate's tolerance
    assert WORDS * 0.9 <= record.output_tokens <= WORDS * 1.5, record.output_tokens
    assert record.estimated == (record.output_tokens != WORDS)


CELLS = [(c, p) for c in MODELS for p in MODELS]
IDS = [f"{c}-client-{p}-provider" for c, p in CELLS]


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": every_provider_type(upstream), "RATELIMIT_ENABLED": False}


@pytest.mark.parametrize("client_format, provider", CELLS, ids=IDS)
def test_upstream_breaks_before_final_usage(app, gateway, upstream, client_format, provider):
    user_id, key = make_user(app)
    upstream.push(Script(content=CONTENT, interim_usage=True,
                         drop_after=FINAL_USAGE_AT[provider]))
    path, body, headers = call(client_format, MODELS[provider])
    resp = requests.post(gateway + path, json=body, timeout=15,
                         headers={"Authorization": f"Bearer {key}", **headers})
    assert resp.content.count(b"wxyz") == WORDS  # the client got every word
    assert app.extensions["billing"].flush()
    with app.app_context():
        [record] = db.session.scalars(select(UsageRecord)).all()
        check_record(record)
        assert ledger_gap(db.session, user_id) == 0


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One gunicorn server (gevent worker) for the module, with its own fake upstream."""
    upstream = FakeUpstream().start()
    tmp = tmp_path_factory.mktemp("cut-streams")
    srv = GunicornServer(tmp, providers=every_provider_type(upstream),
                         env={UPSTREAM_KEY_ENV: UPSTREAM_KEY, "GATEWAY_RATELIMIT_ENABLED": "false"})
    srv.key = srv.create_key()
    srv.start()
    srv.upstream = upstream
    srv.engine = create_engine(srv.env["DATABASE_URL"])
    yield srv
    srv.stop()
    srv.engine.dispose()
    upstream.stop()


def record_count(srv) -> int:
    with srv.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(UsageRecord.__table__)).scalar()


@pytest.mark.parametrize("client_format, provider", CELLS, ids=IDS)
def test_client_leaves_before_final_usage(live, client_format, provider):
    before = record_count(live)
    # all the words, then silence where the final usage would come
    live.upstream.push(Script(content=CONTENT, interim_usage=True, silence_after_first=8,
                              silence_at=FINAL_USAGE_AT[provider] - 1))
    path, body, headers = call(client_format, MODELS[provider])
    resp = requests.post(live.url + path, json=body, timeout=15, stream=True,
                         headers={"Authorization": f"Bearer {live.key}", **headers})
    got = b""
    for chunk in resp.iter_content(None):
        got += chunk
        if got.count(b"wxyz") == WORDS:
            break
    resp.close()
    deadline = time.monotonic() + 10
    while record_count(live) == before and time.monotonic() < deadline:
        time.sleep(0.05)
    with live.engine.connect() as conn:
        record = conn.execute(select(UsageRecord.__table__)
                              .order_by(UsageRecord.id.desc()).limit(1)).one()
    assert record_count(live) == before + 1
    check_record(record)


def test_abandoned_stream_is_accounted_for(live):
    """The client gives up before the first byte and the SDK retries: two upstream calls, both
    on the books. The abandoned one is charged as cut short: its whole answer came in one piece
    once the upstream started (after the client left), so what one read brought, the upstream's
    own count included, is on its record; had less come, our count of its prompt."""
    import openai
    before, calls_before = record_count(live), len(live.upstream.received)
    live.upstream.push(Script(delay=1.5), Script())
    sdk = openai.OpenAI(base_url=f"{live.url}/v1", api_key=live.key, max_retries=1,
                        timeout=openai.Timeout(0.7, connect=5))
    stream = sdk.chat.completions.create(model="gpt-test", stream=True,
                                         messages=[{"role": "user", "content": "a b c"}])
    assert "".join(c.choices[0].delta.content or "" for c in stream) == "echo: a b c"
    calls = len(live.upstream.received) - calls_before
    assert calls == 2
    deadline = time.monotonic() + 10
    while record_count(live) < before + calls and time.monotonic() < deadline:
        time.sleep(0.05)
    with live.engine.connect() as conn:
        records = conn.execute(select(UsageRecord.__table__).where(UsageRecord.id > 0)
                               .order_by(UsageRecord.id.desc()).limit(calls)).all()
    assert record_count(live) == before + calls, "an upstream call was left off the books"
    abandoned = [r for r in records if r.partial]
    assert len(abandoned) == 1 and abandoned[0].input_tokens > 0
    assert abandoned[0].price > 0
