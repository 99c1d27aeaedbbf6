"""The official openai SDK's `client.images.generate` through the gateway to the Stability AI
and Replicate fakes: both response formats, the stored URL serving a PNG, per-image credits,
and every failure a clean OpenAI-shape error that costs nothing."""

import base64
from decimal import Decimal

import openai
import pytest
import requests

from tests.api.cross_family.test_credits import books
from tests.conftest import UPSTREAM_KEY_ENV, make_user
from tests.fake_replicate import FakeReplicate, PredictionScript
from tests.fake_stability import FakeStability, StabilityScript
from tests.pngs import png, size_of

FLUX = "black-forest-labs/flux-schnell"


@pytest.fixture(scope="module")
def stability():
    fake = FakeStability().start()
    yield fake
    fake.stop()


@pytest.fixture(scope="module")
def replicate():
    fake = FakeReplicate().start()
    yield fake
    fake.stop()


@pytest.fixture
def settings(stability, replicate, tmp_path):
    for fake in (stability, replicate):
        fake.scripts.clear()
        fake.received.clear()
    return {
        "PROVIDERS": [
            {"name": "stability", "type": "stability", "base_url": f"{stability.url}/v2beta",
             "api_key_env": UPSTREAM_KEY_ENV, "models": ["stable-image-core", "sd3.5-large"],
             "aliases": {"any-image": "stable-image-core"}},
            # the preset's models and short names, on the fake
            {"name": "replicate", "preset": "replicate", "base_url": f"{replicate.url}/v1",
             "api_key_env": UPSTREAM_KEY_ENV, "poll_interval": 0.01},
            {"name": "replicate-slow", "type": "replicate", "base_url": f"{replicate.url}/v1",
             "api_key_env": UPSTREAM_KEY_ENV, "image_models": ["slow-flux"],
             "aliases": {"slow-flux": FLUX, "any-image": FLUX}, "prediction_timeout": 0.3,
             "poll_interval": 0.01},
        ],
        "IMAGE_FETCH_ALLOW_PRIVATE": True,  # the fake's output files are on loopback
        "IMAGE_STORE_PATH": str(tmp_path / "images"),
        "RATELIMIT_ENABLED": False,
    }


@pytest.fixture
def user(app):
    return make_user(app, credits=Decimal(100))


def sdk(gateway, key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)


MODELS = ["stable-image-core", "flux-schnell"]


@pytest.mark.parametrize("model", MODELS)
def test_generate_in_both_formats(app, gateway, user, model):
    user_id, key = user
    client = sdk(gateway, key)
    for response_format in ("url", "b64_json"):
        reply = client.images.generate(model=model, prompt="a red fox", size="1792x1024",
                                       response_format=response_format)
        [image] = reply.data
        if response_format == "url":
            assert image.url.startswith(f"{gateway}/v1/images/files/")
            served = requests.get(image.url, timeout=10)
            assert served.status_code == 200 and served.headers["content-type"] == "image/png"
            data = served.content
        else:
            assert image.url is None
            data = base64.b64decode(image.b64_json)
        assert size_of(data) == (128, 72)  # 16:9, the nearest ratio to 1792x1024
        assert reply.model_extra["credits_consumed"] == 10
    bal, records, holds, gap = books(app, user_id)
    assert bal == 80 and holds == [] and gap == 0
    assert [(r.model, r.images, r.price) for r in records] == [(model, 1, Decimal(10))] * 2


@pytest.mark.parametrize("model", MODELS)
def test_two_hd_images_cost_30(app, gateway, user, stability, replicate, model):
    user_id, key = user
    reply = sdk(gateway, key).images.generate(model=model, prompt="a red fox", n=2,
                                              quality="hd", response_format="b64_json")
    assert len(reply.data) == 2 and reply.data[0].b64_json != reply.data[1].b64_json
    assert reply.model_extra["credits_consumed"] == 30
    if model == "flux-schnell":  # one prediction making both
        [created] = replicate.created()
        assert created.json["input"]["num_outputs"] == 2
    else:  # one Stability call per image
        assert len(stability.received) == 2
    bal, [record], holds, gap = books(app, user_id)
    assert bal == 70 and record.images == 2 and holds == [] and gap == 0


def test_a_stability_call_that_fails_is_not_charged(app, gateway, user, stability):
    user_id, key = user
    stability.push(StabilityScript(), StabilityScript(status=500))
    reply = sdk(gateway, key).images.generate(model="stable-image-core", prompt="a red fox",
                                              n=2, response_format="b64_json")
    assert len(reply.data) == 1 and reply.model_extra["credits_consumed"] == 10
    bal, [record], holds, gap = books(app, user_id)
    assert bal == 90 and record.images == 1 and holds == [] and gap == 0


def assert_nothing_charged(app, user_id):
    bal, records, holds, gap = books(app, user_id)
    assert bal == 100 and holds == [] and gap == 0
    assert sum(r.price for r in records) == 0


@pytest.mark.parametrize("model, prompt, script, status, code, words", [
    ("stable-image-core", "something forbidden", None, 400, "content_policy_violation",
     "flagged by our content moderation system"),
    ("stable-image-core", "a red fox", StabilityScript(status=500), 502,
     "upstream_unavailable", "failed with HTTP 500"),
    ("flux-schnell", "a red fox", PredictionScript(mode="fail", polls=1, error="CUDA error"),
     502, "upstream_prediction_failed", "prediction failed: CUDA error"),
    ("flux-schnell", "a red fox", PredictionScript(mode="fail", error="NSFW content detected"),
     400, "content_policy_violation", "NSFW content detected"),
    ("flux-schnell", "a red fox", PredictionScript(file_type="text/html"), 502,
     "upstream_unavailable", "could not be downloaded"),
], ids=["moderation", "stability-500", "failed", "nsfw", "not-image"])
def test_failures_are_clean_errors_that_cost_nothing(app, gateway, user, stability, replicate,
                                                     model, prompt, script, status, code,
                                                     words):
    user_id, key = user
    if script is not None:
        (stability if model.startswith("stable") else replicate).push(script)
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway, key).images.generate(model=model, prompt=prompt)
    err = info.value
    assert err.status_code == status and err.code == code and words in err.message
    assert "Traceback" not in err.response.text
    assert_nothing_charged(app, user_id)


def test_a_prediction_that_never_finishes_is_cut_at_the_timeout(app, gateway, user,
                                                                replicate):
    user_id, key = user
    replicate.push(PredictionScript(mode="never"))
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway, key).images.generate(model="slow-flux", prompt="a red fox")
    err = info.value
    assert err.status_code == 504 and err.code == "upstream_timeout"
    assert "did not finish within 0.3 seconds" in err.message
    [prediction_id] = replicate.cancels()
    assert replicate.predictions[prediction_id].status == "canceled"
    assert len(replicate.created()) == 1  # not started again elsewhere
    assert_nothing_charged(app, user_id)


def test_a_balance_short_of_the_hold_sends_nothing(app, gateway, stability):
    user_id, key = make_user(app, "short", credits=Decimal(25))
    with pytest.raises(openai.APIStatusError) as info:
        sdk(gateway, key).images.generate(model="stable-image-core", prompt="a red fox", n=2,
                                          quality="hd")
    assert info.value.status_code == 402 and not stability.received
    bal, records, holds, gap = books(app, user_id)
    assert bal == 25 and holds == [] and gap == 0


def test_sizes_and_prompts_the_ratio_models_take(app, gateway, user, stability, replicate):
    """Native sizes of a ratio are accepted and sent as that ratio; Stability takes prompts
    longer than OpenAI's 4000 characters; a size no model declares is a 400 with `param`."""
    _, key = user
    client = sdk(gateway, key)
    client.images.generate(model="sd3.5-large", prompt="p" * 6000, size="1536x640",
                           response_format="b64_json")
    assert stability.last.form["aspect_ratio"] == "21:9"
    assert stability.last.form["model"] == "sd3.5-large"
    client.images.generate(model="flux-schnell", prompt="a red fox", size="832x1216",
                           response_format="b64_json")
    assert replicate.created()[-1].json["input"]["aspect_ratio"] == "2:3"
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="flux-schnell", prompt="a red fox", size="1000x1000")
    assert info.value.param == "size" and len(replicate.created()) == 1


def test_listed_as_image_models_that_neither_chat_nor_edit(app, gateway, user, stability):
    _, key = user
    client = sdk(gateway, key)
    listed = {m.id: m.model_extra.get("output_modalities") for m in client.models.list()}
    assert "image" in listed["stable-image-core"] and "image" in listed["flux-schnell"]
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(model="stable-image-core",
                                       messages=[{"role": "user", "content": "hi"}])
    assert info.value.param == "model" and "image model" in info.value.message
    with pytest.raises(openai.BadRequestError) as info:
        client.images.edit(model="flux-schnell", prompt="add a hat",
                           image=("fox.png", png(8, 8), "image/png"))
    assert info.value.param == "model" and "cannot edit" in info.value.message
    assert not stability.received


def test_a_failing_provider_fails_over_but_a_refusal_does_not(app, gateway, user, stability,
                                                              replicate):
    """`any-image` is served by Stability first, then Replicate."""
    user_id, key = user
    client = sdk(gateway, key)
    with pytest.raises(openai.BadRequestError) as info:
        client.images.generate(model="any-image", prompt="something forbidden")
    assert info.value.code == "content_policy_violation" and not replicate.received
    stability.push(StabilityScript(status=503))
    raw = client.images.with_raw_response.generate(model="any-image", prompt="a red fox",
                                                   response_format="b64_json")
    assert raw.headers["x-tollgate-provider"] == "replicate-slow"
    assert raw.headers["x-tollgate-attempts"] == "2"
    assert raw.parse().model_extra["credits_consumed"] == 10
    assert len(replicate.created()) == 1 and len(stability.received) == 2
    bal, [record], holds, gap = books(app, user_id)
    assert bal == 90 and record.provider == "replicate-slow" and holds == [] and gap == 0
