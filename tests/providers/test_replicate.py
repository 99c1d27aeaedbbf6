"""The Replicate adapter against the fake Replicate API on loopback (real HTTP, no app):
predictions created with Prefer: wait, polled, cut at the timeout and cancelled, failed or
cancelled ones as clean errors, output files downloaded by the image fetcher's rules."""

import dataclasses

import pytest

from errors import GatewayError, UpstreamError, UpstreamUnavailable
from providers.http import pooled_session
from providers.images import ImageRefused, ImageRequest
from providers.media import ImageFetcher
from providers.registry import Upstream
from providers.replicate import PredictionTimeout, ReplicateProvider
from tests.canaries import UPSTREAM_KEY
from tests.fake_replicate import SDXL_VERSION, FakeReplicate, PredictionScript
from tests.pngs import size_of

FETCHER = ImageFetcher(max_bytes=1 << 20, timeout=5.0, allow_private=True)
FLUX = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def fake():
    server = FakeReplicate().start()
    yield server
    server.stop()


@pytest.fixture
def replicate(fake):
    fake.scripts.clear()
    fake.received.clear()
    fake.links_base = None
    up = Upstream(name="rep", type="replicate", base_url=f"{fake.url}/v1",
                  api_key=UPSTREAM_KEY, models={"flux-schnell": FLUX},
                  prediction_timeout=5.0, poll_interval=0.01)
    return ReplicateProvider(up, pooled_session(4), timeout=(1.0, 5.0))


def with_settings(provider, **settings):
    up = dataclasses.replace(provider.upstream, **settings)
    return ReplicateProvider(up, provider.session, timeout=provider.timeout)


def request(model=FLUX, n=1, size="1024x1024", prompt="a red fox"):
    return ImageRequest(model=model, prompt=prompt, n=n, size=size, quality="standard",
                        style=None, user=None)


def test_a_quick_prediction_answers_within_its_wait(fake, replicate):
    images = replicate.generate_images(request(n=2, size="1792x1024"), fetcher=FETCHER)
    assert [i.mime for i in images] == ["image/png"] * 2
    assert size_of(images[0].data) == (128, 72) and images[0].data != images[1].data
    [created] = fake.created()
    assert created.path == f"/v1/models/{FLUX}/predictions"
    assert created.json == {"input": {"prompt": "a red fox", "aspect_ratio": "16:9",
                                      "num_outputs": 2, "output_format": "png"}}
    assert 1 <= int(created.headers["Prefer"].removeprefix("wait=")) <= 5  # the time left
    assert created.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    downloads = [r for r in fake.received if r.path.startswith("/files/")]
    assert len(downloads) == 2 and "Authorization" not in downloads[0].headers  # no key there


def test_a_running_prediction_is_polled_until_it_ends(fake, replicate):
    fake.push(PredictionScript(polls=3))
    [image] = replicate.generate_images(request(), fetcher=FETCHER)
    assert size_of(image.data) == (8, 8)
    polls = [r for r in fake.received if r.method == "GET" and "/predictions/" in r.path]
    assert len(polls) == 4 and polls[0].headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"


def test_models_without_num_outputs_get_one_prediction_per_image(fake, replicate):
    images = replicate.generate_images(request("black-forest-labs/flux-1.1-pro", n=2,
                                               size="1024x1792"), fetcher=FETCHER)
    assert len(images) == 2 and len(fake.created()) == 2  # each answered one URL, not a list
    assert all(c.json["input"] == {"prompt": "a red fox", "aspect_ratio": "9:16",
                                   "output_format": "png"} for c in fake.created())


def test_a_versioned_model_is_created_by_version_with_pixel_sizes(fake, replicate):
    images = replicate.generate_images(request(f"stability-ai/sdxl:{SDXL_VERSION}", n=2,
                                               size="1792x1024"), fetcher=FETCHER)
    [created] = fake.created()
    assert created.path == "/v1/predictions"
    assert created.json == {"version": SDXL_VERSION, "input": {
        "prompt": "a red fox", "width": 1792, "height": 1024, "num_outputs": 2}}
    assert [size_of(i.data) for i in images] == [(112, 64)] * 2


def test_a_never_finishing_prediction_is_cut_and_cancelled(fake, replicate):
    fake.push(PredictionScript(mode="never"))
    slow = with_settings(replicate, prediction_timeout=0.3)
    with pytest.raises(PredictionTimeout) as info:
        slow.generate_images(request(), fetcher=FETCHER)
    err = info.value
    assert (err.status, err.code, err.fault) == (504, "upstream_timeout", None)
    assert "did not finish within 0.3 seconds" in err.message
    [prediction_id] = fake.cancels()
    assert fake.predictions[prediction_id].status == "canceled"
    assert fake.created()[0].headers["Prefer"] == "wait=1"  # never longer than the time left


def test_a_look_that_outlasts_the_timeout_is_the_timeout_too(fake, replicate):
    fake.push(PredictionScript(mode="never", poll_delay=1.5))
    slow = with_settings(replicate, prediction_timeout=0.2)
    with pytest.raises(PredictionTimeout):  # the GET's own timeout hit first, past the deadline
        slow.generate_images(request(), fetcher=FETCHER)
    assert len(fake.cancels()) == 1


@pytest.mark.parametrize("script, kind, words", [
    (PredictionScript(mode="fail", polls=1, error="CUDA out of memory"), UpstreamError,
     "prediction failed: CUDA out of memory"),
    (PredictionScript(mode="cancel", polls=1), UpstreamError, "prediction was cancelled"),
    (PredictionScript(mode="fail", error="NSFW content detected. Try running it again."),
     ImageRefused, "refused the request: NSFW content detected"),
])
def test_failed_and_cancelled_predictions_are_clean_errors(fake, replicate, script, kind,
                                                           words):
    fake.push(script)
    with pytest.raises(kind) as info:
        replicate.generate_images(request(), fetcher=FETCHER)
    assert words in info.value.message and info.value.fault is None  # no failover
    assert info.value.status == (400 if kind is ImageRefused else 502)
    assert not fake.cancels()


def test_fewer_outputs_are_fewer_images(fake, replicate):
    fake.push(PredictionScript(outputs=1))
    assert len(replicate.generate_images(request(n=3), fetcher=FETCHER)) == 1


def test_data_url_outputs_are_decoded(fake, replicate):
    fake.push(PredictionScript(data_urls=True))
    [image] = replicate.generate_images(request(), fetcher=FETCHER)
    assert image.mime == "image/png" and size_of(image.data) == (8, 8)


@pytest.mark.parametrize("script, words", [
    (PredictionScript(file_type="text/html"), "not a supported image type (text/html)"),
    (PredictionScript(file_status=404), "returned HTTP 404"),
])
def test_outputs_that_are_not_images_are_the_upstreams_fault(fake, replicate, script, words):
    fake.push(script)
    with pytest.raises(UpstreamUnavailable) as info:
        replicate.generate_images(request(), fetcher=FETCHER)
    assert info.value.fault == "protocol" and words in info.value.message


def test_outputs_on_private_addresses_are_not_fetched(fake, replicate):
    strict = ImageFetcher(max_bytes=1 << 20, timeout=5.0)
    with pytest.raises(UpstreamUnavailable) as info:
        replicate.generate_images(request(), fetcher=strict)
    assert "private or local address" in info.value.message
    assert not [r for r in fake.received if r.path.startswith("/files/")]


def test_the_key_goes_only_to_the_providers_own_urls(fake, replicate):
    fake.links_base = "http://127.0.0.2:9/v1"  # where the prediction's own links point
    fake.push(PredictionScript(polls=1))
    [image] = replicate.generate_images(request(), fetcher=FETCHER)
    polls = [r for r in fake.received if r.method == "GET" and "/predictions/" in r.path]
    assert len(polls) == 2 and image.data


@pytest.mark.parametrize("script, code, fault", [
    (PredictionScript(status=429, body={"title": "Request was throttled.", "status": 429,
                                        "detail": "Expected available in 1 second."}),
     "upstream_rate_limited", "rate_limited"),
    (PredictionScript(status=402, body={"title": "Insufficient credit", "status": 402,
                                        "detail": "You have insufficient credit"}),
     "upstream_quota_exhausted", "quota"),
    (PredictionScript(status=500), "upstream_unavailable", "status_5xx"),
])
def test_creation_faults_let_the_plan_move_on(fake, replicate, script, code, fault):
    fake.push(script)
    with pytest.raises(GatewayError) as info:
        replicate.generate_images(request(), fetcher=FETCHER)
    assert (info.value.code, info.value.fault) == (code, fault)


def test_replicates_problem_details_are_passed_on(fake, replicate):
    with pytest.raises(UpstreamError) as info:
        replicate.generate_images(request("acme/no-such-model"), fetcher=FETCHER)
    assert info.value.status == 404
    assert info.value.message == "The requested resource could not be found."


def test_a_bad_model_name_is_refused_before_sending(fake, replicate):
    with pytest.raises(UpstreamError):
        replicate.generate_images(request("../../admin"), fetcher=FETCHER)
    assert not fake.received


def test_a_failure_quoting_the_key_does_not_pass_it_on(fake, replicate):
    fake.push(PredictionScript(mode="fail", error=f"bad token {UPSTREAM_KEY} for this model"))
    with pytest.raises(UpstreamError) as info:
        replicate.generate_images(request(), fetcher=FETCHER)
    assert UPSTREAM_KEY not in info.value.message and "[redacted]" in info.value.message
