"""What the images endpoints refuse (400 with `param`, 402, a provider's failure or refusal),
with the balance unchanged; failover; the stored images' URLs, their sweep and the model list."""

import base64
import io
from datetime import timedelta
from decimal import Decimal

import openai
import pytest
import requests
from sqlalchemy import update

from extensions import db
from models import StoredImage
from tests.api.images.conftest import GEMINI_IMAGE, charged, image_providers
from tests.conftest import make_user, provider_entry
from tests.fake_upstream import Script

PROMPT = "a red bicycle"


BAD = [  # (fields over a valid request, the param the 400 names)
    ({"model": "dall-e-3", "size": "256x256"}, "size"),  # dall-e-2 sizes only
    ({"model": "dall-e-2", "size": "big"}, "size"),
    ({"model": "dall-e-2", "n": 5}, "n"),
    ({"model": "dall-e-2", "n": 0}, "n"),
    ({"model": "dall-e-2", "n": "2"}, "n"),
    ({"model": "dall-e-2", "quality": "ultra"}, "quality"),
    ({"model": "dall-e-2", "response_format": "gif"}, "response_format"),
    ({"model": "dall-e-3", "prompt": "x" * 4001}, "prompt"),
    ({"model": "dall-e-2", "prompt": "x" * 1001}, "prompt"),  # dall-e-2's own limit
    ({"model": "dall-e-2", "prompt": ""}, "prompt"),
    ({"model": "dall-e-2", "prompt": None}, "prompt"),
    ({"prompt": PROMPT}, "model"),
    ({"model": "gpt-test"}, "model"),  # a chat model makes no images
    ({"model": "gpt-image-1", "stream": True}, "stream"),
]


def test_bad_requests_are_400_with_param_and_free(app, client, user, upstream):
    """One app for every case (a table, not a parametrisation: each app costs a schema)."""
    assert app.test_cli_runner().invoke(args=["users", "plan", "alice", "pro"]).exit_code == 0
    for body, param in BAD:
        sent = {k: v for k, v in {"prompt": PROMPT, **body}.items() if v is not None}
        resp = client.post("/v1/images/generations", json=sent,
                           headers={"Authorization": f"Bearer {user[1]}"})
        assert (resp.status_code, resp.json["error"]["param"]) == (400, param), (body, resp.json)
    assert upstream.received == []
    assert charged(app, user[0]) == (Decimal(100), [], [], 0)


def test_an_openai_image_model_cannot_chat(client, user, upstream):
    resp = client.post("/v1/chat/completions", json={"model": "dall-e-3", "messages": [
        {"role": "user", "content": "hi"}]}, headers={"Authorization": f"Bearer {user[1]}"})
    assert resp.status_code == 400 and resp.json["error"]["param"] == "model"
    assert "image model" in resp.json["error"]["message"] and upstream.received == []


def test_gpt_image_takes_a_longer_prompt(client, user):
    resp = client.post("/v1/images/generations", json={"model": "gpt-image-1",
                                                        "prompt": "x" * 5000},
                       headers={"Authorization": f"Bearer {user[1]}"})
    assert resp.status_code == 200


def test_an_edit_needs_an_image(sdk, client, user):
    resp = client.post("/v1/images/edits", data={"model": "dall-e-2", "prompt": PROMPT,
                                                 "image": (io.BytesIO(b"not an image"), "x.png")},
                       headers={"Authorization": f"Bearer {user[1]}"})
    assert resp.status_code == 400 and resp.json["error"]["param"] == "image"
    resp = client.post("/v1/images/edits", data={"model": "dall-e-2", "prompt": PROMPT},
                       headers={"Authorization": f"Bearer {user[1]}"})
    assert resp.status_code == 400 and resp.json["error"]["param"] == "image"


def test_an_edit_past_the_upload_cap_is_413(app, client, user, upstream):
    app.config["IMAGE_MAX_UPLOAD_BYTES"] = 1000
    resp = client.post("/v1/images/edits", data={"model": "dall-e-2", "prompt": PROMPT,
                                                 "image": (io.BytesIO(b"\x89PNG" * 500), "a.png")},
                       headers={"Authorization": f"Bearer {user[1]}"})
    assert resp.status_code == 413 and resp.json["error"]["type"] == "invalid_request_error"
    assert upstream.received == []


def test_402_when_the_balance_cannot_cover_n_images(app, gateway, upstream):
    user_id, key = make_user(app, "poor", credits=Decimal(25))
    sdk = openai.OpenAI(base_url=f"{gateway}/v1", api_key=key, max_retries=0)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(model="dall-e-2", prompt=PROMPT, n=3)
    assert caught.value.status_code == 402 and "30" in caught.value.message
    assert upstream.received == []
    assert charged(app, user_id) == (Decimal(25), [], [], 0)


@pytest.mark.parametrize("model", ["dall-e-3", GEMINI_IMAGE])
def test_provider_failure_is_a_clean_openai_error_and_free(app, sdk, user, upstream, model):
    upstream.push(*[Script(status=500)] * 4)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(model=model, prompt=PROMPT)
    assert caught.value.status_code == 502
    assert caught.value.body["type"] == "upstream_error" or caught.value.body["code"]
    assert "Traceback" not in caught.value.message
    assert charged(app, user[0]) == (Decimal(100), [], [], 0)


def test_a_store_that_cannot_write_is_a_clean_503_and_the_images_are_charged(app, sdk, user,
                                                                             tmp_path):
    store = tmp_path / "images"
    store.mkdir(exist_ok=True)
    store.rmdir()
    store.write_text("a file where the folder should be")  # every write in it fails
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(model="dall-e-2", prompt=PROMPT, n=2)
    assert caught.value.status_code == 503
    assert caught.value.code == "image_store_unavailable"
    assert "20" in caught.value.message and "b64_json" in caught.value.message
    # the provider made them: charged once, as every image returned is
    assert charged(app, user[0]) == (Decimal(80), [(Decimal(20), 2)], [], 0)
    # b64_json needs no store
    assert len(sdk.images.generate(model="dall-e-2", prompt=PROMPT,
                                   response_format="b64_json").data) == 1


def test_an_upstream_image_that_is_no_raster_image_is_not_served_nor_charged(app, sdk, user,
                                                                            upstream):
    """An SVG (script on the gateway's own address) claimed as an image is left out: the
    gateway serves only what its bytes show to be PNG, JPEG, WebP or GIF."""
    svg = b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>'
    upstream.push(Script(body={"created": 1, "data": [
        {"b64_json": base64.b64encode(svg).decode()}]}))
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.generate(model="dall-e-2", prompt=PROMPT)
    assert caught.value.status_code == 502
    assert charged(app, user[0]) == (Decimal(100), [], [], 0)


def test_stored_images_are_served_sandboxed(sdk, gateway):
    url = sdk.images.generate(model="dall-e-2", prompt=PROMPT).data[0].url
    served = requests.get(url, timeout=10)
    assert served.headers["Content-Type"] == "image/png"
    assert served.headers["Content-Security-Policy"] == "default-src 'none'; sandbox"


def test_content_refusals_are_400_not_retried_and_free(app, sdk, user, upstream):
    upstream.push(Script(status=400, body={"error": {
        "message": "Your request was rejected as a result of our safety system.",
        "type": "invalid_request_error", "param": None, "code": "content_policy_violation"}}))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model="dall-e-3", prompt=PROMPT)
    assert caught.value.code == "content_policy_violation"
    upstream.push(Script(finish_reason="content_filter"))
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.images.generate(model=GEMINI_IMAGE, prompt=PROMPT)
    assert "IMAGE_SAFETY" in caught.value.message
    assert len(upstream.received) == 2
    assert charged(app, user[0]) == (Decimal(100), [], [], 0)


@pytest.fixture
def settings(upstream, tmp_path):
    backup = provider_entry(upstream, "backup", models=(), image_models=["dall-e-3"],
                            priority=1)
    return {"PROVIDERS": [*image_providers(upstream), backup], "IMAGE_FETCH_ALLOW_PRIVATE": True,
            "IMAGE_STORE_PATH": str(tmp_path / "images")}


def test_a_failing_provider_fails_over_and_is_charged_once(app, sdk, user, upstream):
    upstream.push(Script(status=503))
    raw = sdk.images.with_raw_response.generate(model="dall-e-3", prompt=PROMPT)
    assert raw.headers["x-tollgate-provider"] == "backup"
    assert raw.headers["x-tollgate-attempts"] == "2"
    assert raw.headers["X-RateLimit-Limit-Requests"]  # the images family's limit
    assert charged(app, user[0]) == (Decimal(90), [(Decimal(10), 1)], [], 0)
    with app.app_context():
        assert db.session.query(StoredImage).count() == 1


def test_expired_images_are_swept_and_nothing_is_listable(app, gateway, sdk, user):
    url = sdk.images.generate(model="dall-e-2", prompt=PROMPT).data[0].url
    assert requests.get(url, timeout=5).status_code == 200
    base = f"{gateway}/v1/images/files"
    for other in (base, base + "/", base + "/img_" + "A" * 32 + ".png", base + "/..%2f"):
        resp = requests.get(other, timeout=5)
        assert resp.status_code == 404 and url.rsplit("/", 1)[1] not in resp.text
    with app.app_context():  # 31 days old
        db.session.execute(update(StoredImage).values(
            created_at=StoredImage.created_at - timedelta(days=31)))
        db.session.commit()
    assert requests.get(url, timeout=5).status_code == 404  # expired: gone before the sweep
    out = app.test_cli_runner().invoke(args=["images", "sweep"])
    assert "deleted 1 stored images" in out.output
    assert requests.get(url, timeout=5).status_code == 404
    store = app.extensions["image_store"]
    assert store.blobs.get(url.rsplit("/", 1)[1].split(".")[0]) is None
    with app.app_context():
        assert db.session.query(StoredImage).count() == 0


def test_models_list_marks_image_models(sdk):
    models = {m.id: m for m in sdk.models.list()}
    assert models["dall-e-3"].model_extra["output_modalities"] == ["image"]
    assert models[GEMINI_IMAGE].model_extra["output_modalities"] == ["image", "text"]
    assert "output_modalities" not in models["gpt-test"].model_extra


def test_concurrent_requests_keep_the_books(app, gateway, upstream):
    """Eight requests at once on a balance for four images, two refused by the provider: each
    success charged once, refusals and 402s free, no hold left, the ledger balanced."""
    from concurrent.futures import ThreadPoolExecutor

    user_id, key = make_user(app, "busy", credits=Decimal(45))
    assert app.test_cli_runner().invoke(args=["users", "plan", "busy", "pro"]).exit_code == 0
    refusal = {"error": {"message": "rejected by the safety system", "param": None,
                         "type": "invalid_request_error", "code": "content_policy_violation"}}
    upstream.push(Script(status=400, body=refusal), Script(status=400, body=refusal))

    def one(_):
        return requests.post(f"{gateway}/v1/images/generations", timeout=20,
                             headers={"Authorization": f"Bearer {key}"},
                             json={"model": "dall-e-2", "prompt": PROMPT,
                                   "response_format": "b64_json"}).status_code

    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(one, range(8)))
    assert set(codes) <= {200, 400, 402} and codes.count(200) <= 4
    bal, records, holds, gap = charged(app, user_id)
    assert len(records) == codes.count(200) and bal == 45 - 10 * codes.count(200)
    assert holds == [] and gap == 0


def test_the_pricing_page_shows_per_image_prices(client):
    page = client.get("/pricing").get_data(as_text=True)
    images = page.split("<h3>Image models</h3>")[1]
    assert "<code>dall-e-3</code>" in images and "<code>gpt-test</code>" not in images
    assert "10" in images and "15" in images


def test_flask_providers_marks_image_models(app):
    out = app.test_cli_runner().invoke(args=["providers"]).output
    assert "    dall-e-3 (image)" in out
    assert "    nano-banana -> gemini-2.5-flash-image (image)" in out
    assert "    gpt-test\n" in out
