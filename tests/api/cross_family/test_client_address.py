"""Behind a trusted reverse proxy, failed authentications count per forwarded client address."""

import pytest

from tests.conftest import STORAGES, limit_storage

BAD_KEY = {"Authorization": "Bearer tg-wrong-guess-000000"}


@pytest.fixture(params=STORAGES)
def settings(request):
    return {"TRUSTED_PROXY_HOPS": 1, "AUTH_FAILURE_LIMIT": "2/minute",
            **limit_storage(request.param)}


def models(client, forwarded_for, **headers):
    return client.get("/v1/models", headers={"X-Forwarded-For": forwarded_for, **headers})


def test_each_forwarded_client_has_its_own_count(client, api_key):
    assert [models(client, "203.0.113.7", **BAD_KEY).status_code for _ in range(3)] == [
        401, 401, 429]
    assert models(client, "203.0.113.7", Authorization=f"Bearer {api_key}").status_code == 429
    assert models(client, "198.51.100.2", Authorization=f"Bearer {api_key}").status_code == 200
