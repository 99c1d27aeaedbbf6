"""The official openai SDK's images.generate and images.edit through the gateway, to the
OpenAI-type and Gemini-type fakes: what each provider was sent, the images coming back inline
or from the gateway's own URL, and the per-image charge."""

from decimal import Decimal

import pytest
import requests

from tests.api.images.conftest import GEMINI_IMAGE, charged, decoded
from tests.conftest import UPSTREAM_KEY
from tests.fake_images import png, png_for
from tests.fake_upstream import Script

PROMPT = "a lighthouse at dusk"


def test_dall_e_3_url_is_served_by_the_gateway(app, gateway, sdk, user, upstream):
    reply = sdk.images.generate(model="dall-e-3", prompt=PROMPT, size="1792x1024",
                                style="vivid")
    [item] = reply.data
    assert item.url.startswith(f"{gateway}/v1/images/files/img_") and item.url.endswith(".png")
    assert item.revised_prompt == f"A detailed picture of {PROMPT}"
    assert reply.model_extra["credits_consumed"] == 10
    sent = upstream.last
    assert sent.path == "/v1/images/generations"
    assert sent.json == {"model": "dall-e-3", "prompt": PROMPT, "n": 1, "size": "1792x1024",
                         "response_format": "b64_json", "quality": "standard", "style": "vivid"}
    assert sent.headers["Authorization"] == f"Bearer {UPSTREAM_KEY}"
    image = requests.get(item.url, timeout=5)  # no key needed: the URL is the capability
    assert image.status_code == 200 and image.headers["Content-Type"] == "image/png"
    assert image.content == png_for(PROMPT) and "max-age" in image.headers["Cache-Control"]
    assert charged(app, user[0]) == (Decimal(90), [(Decimal(10), 1)], [], 0)
    usage = requests.get(f"{gateway}/v1/credits?include_usage=true", timeout=5,
                         headers={"Authorization": f"Bearer {sdk.api_key}"}).json()
    [record] = usage["data"]["usage"]["list"]
    assert (record["model"], record["images"], record["price"]) == ("dall-e-3", 1, 10)


def test_gemini_b64_json(app, sdk, user, upstream):
    reply = sdk.images.generate(model=GEMINI_IMAGE, prompt=PROMPT, size="1024x1792",
                                response_format="b64_json")
    assert decoded(reply.data[0]) == png_for(PROMPT + "0")
    sent = upstream.last
    assert sent.path == f"/v1beta/models/{GEMINI_IMAGE}:generateContent"
    assert sent.json == {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}],
                         "generationConfig": {"responseModalities": ["IMAGE"],
                                              "imageConfig": {"aspectRatio": "9:16"}}}
    assert sent.headers["X-Goog-Api-Key"] == UPSTREAM_KEY
    assert charged(app, user[0])[1] == [(Decimal(10), 1)]


def test_gemini_url_and_alias(gateway, sdk, upstream):
    reply = sdk.images.generate(model="nano-banana", prompt=PROMPT)
    assert requests.get(reply.data[0].url, timeout=5).content == png_for(PROMPT + "0")
    assert upstream.last.path == f"/v1beta/models/{GEMINI_IMAGE}:generateContent"


@pytest.mark.parametrize("model", ["gpt-image-1", GEMINI_IMAGE])
def test_two_hd_images_cost_30(app, sdk, user, upstream, model):
    reply = sdk.images.generate(model=model, prompt=PROMPT, n=2, quality="hd",
                                response_format="b64_json", size="1024x1024")
    assert len(reply.data) == 2 and all(decoded(d).startswith(b"\x89PNG") for d in reply.data)
    assert reply.model_extra["credits_consumed"] == 30
    if model == GEMINI_IMAGE:  # one call per image, hd as 4K
        calls = upstream.received[-2:]
        assert [c.json["generationConfig"]["imageConfig"] for c in calls] == [
            {"aspectRatio": "1:1", "imageSize": "4K"}] * 2
    else:
        assert upstream.last.json["quality"] == "high" and upstream.last.json["n"] == 2
    assert charged(app, user[0]) == (Decimal(70), [(Decimal(30), 2)], [], 0)


def test_dall_e_3_makes_one_image_a_call(app, sdk, user, upstream):
    reply = sdk.images.generate(model="dall-e-3", prompt=PROMPT, n=2, response_format="b64_json")
    assert len(reply.data) == 2
    assert [r.json["n"] for r in upstream.received] == [1, 1]
    assert charged(app, user[0])[1] == [(Decimal(20), 2)]


def test_newer_quality_words_map_onto_the_two_prices(app, sdk, user, upstream):
    sdk.images.generate(model="gpt-image-1", prompt=PROMPT, quality="high")
    sdk.images.generate(model="gpt-image-1", prompt=PROMPT, quality="low")
    assert sorted(r for r, _ in charged(app, user[0])[1]) == [Decimal(10), Decimal(15)]


def test_every_quality_word_of_the_sdk_is_taken(app, sdk, user):
    """The SDK's own Literal of quality words: none is refused."""
    import typing

    from openai.types import image_generate_params
    hints = typing.get_type_hints(image_generate_params.ImageGenerateParamsBase)
    words = typing.get_args(typing.get_args(hints["quality"])[0])
    from services.images import QUALITIES
    assert set(words) <= set(QUALITIES)
    for word in ("xhigh", "max"):  # the newest (the free plan makes 5 images a minute)
        assert sdk.images.generate(model="gpt-image-1", prompt=PROMPT, quality=word).data
    assert sorted(r for r, _ in charged(app, user[0])[1]) == [Decimal(15), Decimal(15)]


def test_provider_url_answers_are_downloaded_and_served_from_the_gateway(gateway, sdk,
                                                                       upstream):
    upstream.push(Script(image_urls=True))
    reply = sdk.images.generate(model="dall-e-2", prompt=PROMPT, size="512x512")
    assert reply.data[0].url.startswith(gateway) and upstream.url not in reply.data[0].url
    assert requests.get(reply.data[0].url, timeout=5).content == png_for(PROMPT)
    assert upstream.last.method == "GET" and upstream.last.path.startswith("/files/")


def test_fewer_images_than_asked_cost_less(app, sdk, user, upstream):
    upstream.push(Script(image_count=1))
    reply = sdk.images.generate(model="dall-e-2", prompt=PROMPT, n=3,
                                response_format="b64_json")
    assert len(reply.data) == 1 and reply.model_extra["credits_consumed"] == 10
    assert charged(app, user[0]) == (Decimal(90), [(Decimal(10), 1)], [], 0)


SOURCE, OTHER, MASK = png(8, 8, (1, 2, 3)), png(8, 8, (4, 5, 6)), png(8, 8, (0, 0, 0))


def test_edit_with_several_images_to_gpt_image(app, sdk, user, upstream):
    reply = sdk.images.edit(model="gpt-image-1", prompt="make it night",
                            image=[("a.png", SOURCE, "image/png"), ("b.png", OTHER, "image/png")],
                            response_format="b64_json")
    assert decoded(reply.data[0]) == png_for("make it night" + f"{len(SOURCE)}{len(OTHER)}")
    sent = upstream.last
    assert sent.path == "/v1/images/edits"
    assert [(f[0], f[2]) for f in sent.files["image[]"]] == [("a.png", SOURCE), ("b.png", OTHER)]
    assert sent.form == {"model": "gpt-image-1", "prompt": "make it night", "n": "1",
                         "size": "1024x1024", "quality": "medium"}
    assert charged(app, user[0])[1] == [(Decimal(10), 1)]


def test_edit_with_a_mask_to_dall_e_2(sdk, upstream):
    reply = sdk.images.edit(model="dall-e-2", prompt="add a moon", image=SOURCE, mask=MASK,
                            size="256x256")
    assert reply.data[0].url
    sent = upstream.last
    assert [f[2] for f in sent.files["image"]] == [SOURCE]
    assert [f[2] for f in sent.files["mask"]] == [MASK]
    assert sent.form["response_format"] == "b64_json" and sent.form["size"] == "256x256"


def test_edit_with_gemini_sends_the_image_with_the_instruction(sdk, upstream):
    reply = sdk.images.edit(model=GEMINI_IMAGE, prompt="make it night", image=SOURCE,
                            response_format="b64_json")
    assert decoded(reply.data[0]) == png_for("make it night1")
    parts = upstream.last.json["contents"][0]["parts"]
    assert parts[0] == {"text": "make it night"}
    assert parts[1]["inlineData"]["mimeType"] == "image/png"
