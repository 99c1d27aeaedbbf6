"""Against the real server (gunicorn, gevent worker): the calls of one images request run in
parallel (n Stability calls, n Replicate predictions), the polling sleep of a prediction that
never finishes does not block the worker, and a stored image is served with image/png."""

import threading

import pytest
import requests

from tests.canaries import UPSTREAM_KEY
from tests.conftest import UPSTREAM_KEY_ENV
from tests.fake_replicate import FakeReplicate, PredictionScript
from tests.fake_stability import FakeStability
from tests.live_server import GunicornServer
from tests.pngs import size_of


@pytest.fixture(scope="module")
def fakes():
    stability, replicate = FakeStability().start(), FakeReplicate().start()
    yield stability, replicate
    stability.stop()
    replicate.stop()


@pytest.fixture(scope="module")
def server(fakes, tmp_path_factory):
    stability, replicate = fakes
    tmp = tmp_path_factory.mktemp("images-live")
    providers = [
        {"name": "stability", "preset": "stability", "base_url": f"{stability.url}/v2beta",
         "api_key_env": UPSTREAM_KEY_ENV},
        {"name": "replicate", "preset": "replicate", "base_url": f"{replicate.url}/v1",
         "api_key_env": UPSTREAM_KEY_ENV, "poll_interval": 0.01, "prediction_timeout": 1.0},
    ]
    env = {UPSTREAM_KEY_ENV: UPSTREAM_KEY, "GATEWAY_RATELIMIT_ENABLED": "false",
           "GATEWAY_IMAGE_FETCH_ALLOW_PRIVATE": "true",
           "GATEWAY_IMAGE_STORE_PATH": f'"{tmp / "images"}"'}
    srv = GunicornServer(tmp, providers=providers, env=env)
    srv.key = srv.create_key().splitlines()[-1].strip()
    srv.start()
    yield srv
    srv.stop()


def generate(server, **body):
    return requests.post(f"{server.url}/v1/images/generations", json=body, timeout=30,
                         headers={"Authorization": f"Bearer {server.key}"})


@pytest.mark.parametrize("model, fake_index", [("stable-image-ultra", 0), ("flux-1.1-pro", 1)])
def test_the_calls_of_one_request_run_at_once(server, fakes, model, fake_index):
    fake = fakes[fake_index]
    fake.barrier = threading.Barrier(3, timeout=10)  # broken unless all three arrive together
    try:
        reply = generate(server, model=model, prompt="a red fox", n=3)
    finally:
        fake.barrier = None
    assert reply.status_code == 200, reply.text
    urls = [entry["url"] for entry in reply.json()["data"]]
    assert len(urls) == 3 and reply.json()["credits_consumed"] == 30
    served = requests.get(urls[0], timeout=10)
    assert served.headers["content-type"] == "image/png" and size_of(served.content) == (8, 8)


def test_a_prediction_that_never_finishes_is_cut_under_gevent(server, fakes):
    replicate = fakes[1]
    replicate.push(PredictionScript(mode="never"))
    reply = generate(server, model="flux-schnell", prompt="a red fox")
    assert reply.status_code == 504
    assert reply.json()["error"]["code"] == "upstream_timeout"
    assert replicate.cancels()
