"""The playground on a pool of one connection without overflow: the user's session lookup hands
its connection back before the credit hold needs one, so a request never waits on itself."""

import pytest

from tests.conftest import provider_entry
from tests.web.helpers import csrf_token, signup


@pytest.fixture
def settings(upstream):
    return {"SIGNUP_CREDITS": 10, "PROVIDERS": [provider_entry(upstream)],
            "DATABASE_POOL_SIZE": 1,
            "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 1800, "pool_timeout": 3}}


def test_a_chat_needs_one_connection_at_a_time(app, client, database_url):
    if not database_url.startswith("postgresql"):
        pytest.skip("the pool size applies to PostgreSQL")
    signup(client)
    token = csrf_token(client, "/playground")
    for _ in range(2):
        reply = client.post("/playground/api/chat", headers={"X-CSRFToken": token},
                            json={"model": "gpt-test", "max_tokens": 50,
                                  "messages": [{"role": "user", "content": "hello there"}]})
        assert reply.status_code == 200, reply.get_data(as_text=True)[:300]
        assert reply.get_data(as_text=True).rstrip().endswith("data: [DONE]")
    assert app.extensions["billing"].flush(timeout=10)
