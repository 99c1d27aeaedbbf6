"""Gemini image models on the chat paths: the google-genai SDK through the Gemini endpoint
(passthrough, streaming and not) and a Chat Completions client (images in `message.images` /
`delta.images` as data: URLs), each billed per image returned; image tokens are not charged as
output tokens, and a streamed answer costs what the whole one does."""

import base64
from decimal import Decimal

import openai
import pytest
from google import genai
from google.genai import types

from tests.api.images.conftest import GEMINI_IMAGE, charged, image_providers
from tests.fake_images import png_for

PROMPT = "a cat in a hat"
# the fake's "Here it is.": 2 tokens at 1 credit per 1000 (its 1290 image tokens are charged
# per image, not as tokens); nothing for input, so a record is text tokens + per-image price
TEXT_TOKENS = Decimal("0.002")
PRICES = {GEMINI_IMAGE: {"input": 0, "output": 1, "minimum": 0}}


@pytest.fixture
def settings(upstream, tmp_path):
    return {"PROVIDERS": image_providers(upstream), "PRICING": {"models": PRICES},
            "IMAGE_STORE_PATH": str(tmp_path / "images")}


@pytest.fixture
def genai_sdk(gateway, user):
    return genai.Client(api_key=user[1], http_options=types.HttpOptions(
        base_url=gateway, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)))


def config(size=None):
    return types.GenerateContentConfig(
        response_modalities=["TEXT", "IMAGE"],
        image_config=types.ImageConfig(aspect_ratio="16:9", image_size=size))


def images_of(responses) -> list[bytes]:
    return [p.inline_data.data for r in responses for c in r.candidates or []
            for p in (c.content.parts if c.content else None) or [] if p.inline_data]


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
def test_google_genai_generates_an_image_billed_per_image(app, genai_sdk, user, upstream,
                                                         stream):
    if stream:
        replies = list(genai_sdk.models.generate_content_stream(
            model=GEMINI_IMAGE, contents=PROMPT, config=config()))
    else:
        replies = [genai_sdk.models.generate_content(model=GEMINI_IMAGE, contents=PROMPT,
                                                     config=config())]
    assert images_of(replies) == [png_for(PROMPT + "0")]
    sent = upstream.last
    method = "streamGenerateContent" if stream else "generateContent"
    assert sent.path == f"/v1beta/models/{GEMINI_IMAGE}:{method}"
    assert sent.json["generationConfig"] == {"responseModalities": ["TEXT", "IMAGE"],
                                             "imageConfig": {"aspectRatio": "16:9"},
                                             "maxOutputTokens": 4096}
    _, records, holds, gap = charged(app, user[0])
    assert records == [(Decimal(TEXT_TOKENS + 10), 1)] and holds == [] and gap == 0


@pytest.mark.parametrize("client", ["gemini", "chat"])
def test_an_image_answer_without_usage_is_still_charged_per_image(app, genai_sdk, user,
                                                                   upstream, gateway, client):
    """No usageMetadata (a compatible upstream that leaves it out): the images are charged all
    the same, whole answers as streams are, and the tokens are estimated."""
    from tests.fake_upstream import Script
    upstream.push(Script(usage=None))
    if client == "gemini":
        genai_sdk.models.generate_content(model=GEMINI_IMAGE, contents=PROMPT, config=config())
    else:
        openai.OpenAI(base_url=f"{gateway}/v1", api_key=user[1], max_retries=0) \
            .chat.completions.create(model=GEMINI_IMAGE,
                                     messages=[{"role": "user", "content": PROMPT}])
    _, [(price, images)], holds, gap = charged(app, user[0])
    assert images == 1 and price >= 10 and holds == [] and gap == 0


def test_a_4k_image_is_priced_hd(app, genai_sdk, user):
    genai_sdk.models.generate_content(model=GEMINI_IMAGE, contents=PROMPT, config=config("4K"))
    assert charged(app, user[0])[1] == [(Decimal(TEXT_TOKENS + 15), 1)]


@pytest.fixture
def openai_sdk(gateway, user):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=user[1], max_retries=0)


def data_url_bytes(entry: dict) -> bytes:
    assert entry["type"] == "image_url"
    head, _, data = entry["image_url"]["url"].partition(",")
    assert head == "data:image/png;base64"
    return base64.b64decode(data)


def test_chat_completions_get_message_images(app, openai_sdk, user):
    reply = openai_sdk.chat.completions.create(
        model=GEMINI_IMAGE, messages=[{"role": "user", "content": PROMPT}])
    message = reply.choices[0].message
    assert message.content == "Here it is."
    [entry] = message.model_extra["images"]
    assert data_url_bytes(entry) == png_for(PROMPT + "0")
    assert reply.model_extra["credits_consumed"] == float(TEXT_TOKENS + 10)
    assert charged(app, user[0])[1] == [(Decimal(TEXT_TOKENS + 10), 1)]


def test_chat_completions_stream_delta_images(app, openai_sdk, user):
    chunks = list(openai_sdk.chat.completions.create(
        model=GEMINI_IMAGE, messages=[{"role": "user", "content": PROMPT}], stream=True,
        stream_options={"include_usage": True}))
    images = [e for c in chunks for ch in c.choices
              for e in (ch.delta.model_extra or {}).get("images") or []]
    assert [data_url_bytes(e) for e in images] == [png_for(PROMPT + "0")]
    assert chunks[-1].model_extra["credits_consumed"] == float(TEXT_TOKENS + 10)
    assert charged(app, user[0])[1] == [(Decimal(TEXT_TOKENS + 10), 1)]
