"""Providers for the images tests: an OpenAI-type fake with dall-e and gpt-image models and a
Gemini-type fake with an image model, each beside a chat model; url answers from the fake are
fetched from loopback, so private addresses are allowed here."""

import base64
from decimal import Decimal

import openai
import pytest

from tests.api.cross_family.test_credits import settled_books
from tests.conftest import make_user, provider_entry

GEMINI_IMAGE = "gemini-2.5-flash-image"
OPENAI_IMAGES = ["dall-e-2", "dall-e-3", "gpt-image-1"]


def image_providers(upstream) -> list[dict]:
    return [provider_entry(upstream, models=("gpt-test",), image_models=OPENAI_IMAGES),
            provider_entry(upstream, "fake-gemini", ("gemini-test",), type="gemini",
                           image_models=[GEMINI_IMAGE], aliases={"nano-banana": GEMINI_IMAGE})]


@pytest.fixture
def settings(upstream, tmp_path):
    return {"PROVIDERS": image_providers(upstream), "IMAGE_FETCH_ALLOW_PRIVATE": True,
            "IMAGE_STORE_PATH": str(tmp_path / "images")}


@pytest.fixture
def user(app):
    return make_user(app, credits=Decimal(100))


@pytest.fixture
def sdk(gateway, user):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=user[1], max_retries=0)


def decoded(item) -> bytes:
    return base64.b64decode(item.b64_json)


def charged(app, user_id):
    """(balance, [(price, images)] of the records, open holds, ledger gap), once no hold is
    open (a stream is settled when the server has closed it, just after the client's last read)."""
    bal, records, holds, gap = settled_books(app, user_id)
    return bal, [(r.price, r.images) for r in records], holds, gap
