"""The Stability AI adapter against the fake Stable Image API on loopback (real HTTP, no app):
the multipart request, both answer shapes, n images as n calls, moderation and errors."""

import pytest

from errors import GatewayError, UpstreamError, UpstreamUnavailable
from providers.aspect import nearest_aspect_ratio
from providers.http import pooled_session
from providers.images import ImageRefused, ImageRequest
from providers.media import ImageFetcher
from providers.registry import Upstream
from providers.stability import ASPECT_RATIOS, StabilityProvider
from tests.canaries import UPSTREAM_KEY
from tests.fake_stability import FakeStability, StabilityScript
from tests.pngs import size_of

FETCHER = ImageFetcher(max_bytes=1 << 20, timeout=5.0, allow_private=True)


@pytest.fixture(scope="module")
def fake():
    server = FakeStability().start()
    yield server
    server.stop()


@pytest.fixture
def stability(fake):
    fake.scripts.clear()
    fake.received.clear()
    up = Upstream(name="stab", type="stability", base_url=f"{fake.url}/v2beta",
                  api_key=UPSTREAM_KEY, models={"core": "stable-image-core"})
    return StabilityProvider(up, pooled_session(4), timeout=(1.0, 5.0))


def request(model="stable-image-core", n=1, size="1024x1024", prompt="a red fox", **extra):
    return ImageRequest(model=model, prompt=prompt, n=n, size=size, quality="standard",
                        style=extra.pop("style", None), user=None, **extra)


def test_one_image_is_one_multipart_request(fake, stability):
    [image] = stability.generate_images(request(), fetcher=FETCHER)
    assert image.mime == "image/png" and size_of(image.data) == (8, 8)
    sent = fake.last
    assert sent.path == "/v2beta/stable-image/generate/core"
    assert sent.content_type.startswith("multipart/form-data")
    assert sent.form == {"prompt": "a red fox", "output_format": "png", "aspect_ratio": "1:1"}
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    assert sent.headers["Accept"] == "image/*"


@pytest.mark.parametrize("model, path, extra", [
    ("stable-image-ultra", "ultra", {}),
    ("ultra", "ultra", {}),
    ("sd3.5-large-turbo", "sd3", {"model": "sd3.5-large-turbo"}),
])
def test_the_model_picks_the_endpoint(fake, stability, model, path, extra):
    stability.generate_images(request(model), fetcher=FETCHER)
    assert fake.last.path == f"/v2beta/stable-image/generate/{path}"
    assert {k: fake.last.form[k] for k in extra} == extra


@pytest.mark.parametrize("size, ratio", [
    ("1024x1024", "1:1"), ("256x256", "1:1"), ("1792x1024", "16:9"), ("1024x1792", "9:16"),
    ("1536x1024", "3:2"), ("1024x1536", "2:3"), ("2560x1024", "21:9"), ("1280x1024", "5:4"),
])
def test_sizes_map_to_the_nearest_aspect_ratio(size, ratio):
    assert nearest_aspect_ratio(size, ASPECT_RATIOS) == ratio


def test_the_aspect_ratio_shapes_the_image(fake, stability):
    [image] = stability.generate_images(request(size="1792x1024"), fetcher=FETCHER)
    assert fake.last.form["aspect_ratio"] == "16:9" and size_of(image.data) == (128, 72)


def test_n_images_are_n_calls(fake, stability):
    images = stability.generate_images(request(n=3), fetcher=FETCHER)
    assert len(images) == 3 and len(fake.received) == 3
    assert len({i.data for i in images}) == 3  # three generations, not one copied


def test_a_style_preset_goes_to_core_but_openai_styles_do_not(fake, stability):
    stability.generate_images(request(style="anime"), fetcher=FETCHER)
    assert fake.last.form["style_preset"] == "anime"
    stability.generate_images(request(style="vivid"), fetcher=FETCHER)
    assert "style_preset" not in fake.last.form


def test_the_json_answer_is_read_too(fake, stability):
    fake.push(StabilityScript(answer_json=True))
    [image] = stability.generate_images(request(size="1024x1792"), fetcher=FETCHER)
    assert image.mime == "image/png" and size_of(image.data) == (72, 128)


def test_calls_that_fail_are_left_out(fake, stability):
    fake.push(StabilityScript(), StabilityScript(status=500))
    images = stability.generate_images(request(n=2), fetcher=FETCHER)
    assert len(images) == 1 and len(fake.received) == 2


def test_when_every_call_fails_the_first_failure_is_the_answer(fake, stability):
    fake.push(StabilityScript(status=500), StabilityScript(status=500))
    with pytest.raises(UpstreamUnavailable) as info:
        stability.generate_images(request(n=2), fetcher=FETCHER)
    assert info.value.fault == "status_5xx"  # the routing plan may try another provider


@pytest.mark.parametrize("script", [None, StabilityScript(finish_reason="CONTENT_FILTERED")],
                         ids=["403 content_moderation", "finish reason CONTENT_FILTERED"])
def test_content_moderation_is_the_requests_fault(fake, stability, script):
    if script:
        fake.push(script)
    prompt = "something forbidden" if script is None else "a red fox"
    with pytest.raises(ImageRefused) as info:
        stability.generate_images(request(prompt=prompt), fetcher=FETCHER)
    err = info.value
    assert (err.status, err.code, err.fault) == (400, "content_policy_violation", None)
    assert "provider stab refused the request" in err.message


def test_stabilitys_error_shape_is_passed_on(fake, stability):
    with pytest.raises(UpstreamError) as info:
        stability.generate_images(request(prompt="x" * 10001), fetcher=FETCHER)
    err = info.value
    assert err.status == 400 and err.code == "bad_request"
    assert err.message == "prompt: must be at most 10000 characters"


@pytest.mark.parametrize("status, body, code, fault", [
    (401, {"id": "1", "name": "unauthorized", "errors": ["bad key"]}, "upstream_auth_failed",
     "auth"),
    (402, {"id": "1", "name": "payment_required", "errors": ["lacks sufficient credits"]},
     "upstream_quota_exhausted", "quota"),
    (429, {"id": "1", "name": "rate_limit_exceeded", "errors": ["slow down"]},
     "upstream_rate_limited", "rate_limited"),
])
def test_account_faults_are_the_keys(fake, stability, status, body, code, fault):
    fake.push(StabilityScript(status=status, body=body))
    with pytest.raises(GatewayError) as info:
        stability.generate_images(request(), fetcher=FETCHER)
    assert (info.value.code, info.value.fault) == (code, fault)


def test_an_error_quoting_the_key_does_not_pass_it_on(fake, stability):
    fake.push(StabilityScript(status=400, body={"id": "1", "name": "bad_request",
                                                "errors": [f"key {UPSTREAM_KEY} is odd"]}))
    with pytest.raises(UpstreamError) as info:
        stability.generate_images(request(), fetcher=FETCHER)
    assert UPSTREAM_KEY not in info.value.message and "[redacted]" in info.value.message
