"""The OpenAI images API (dall-e-2, dall-e-3, gpt-image-*), for OpenAI-type upstreams.

https://platform.openai.com/docs/api-reference/images: generations take JSON, edits take
multipart (one `image`, or several as `image[]`, and an optional `mask`). dall-e models are
asked for b64_json, so no provider URL has to be fetched; gpt-image models always answer in
base64 and refuse `response_format`. A URL answer (some compatible servers send only those) is
downloaded through the image fetcher's rules. dall-e-3 makes one image a call: n > 1 is
sent as n calls.
"""

import base64
import binascii
import json

from errors import UpstreamError, UpstreamUnavailable
from providers.http import read_json, send, send_form
from providers.images import GeneratedImage, ImageRefused, download, image_type, one_call_each

MIME = {"png": "image/png", "jpeg": "image/jpeg", "webp": "image/webp"}


def _is_gpt_image(model: str) -> bool:
    return model.startswith("gpt-image") or model.startswith("chatgpt-image")


def _fields(req) -> dict:
    """The request's fields as the model wants them (quality words differ by model family)."""
    out = {"model": req.model, "prompt": req.prompt, "n": req.n}
    if req.size:
        out["size"] = req.size
    if _is_gpt_image(req.model):
        out["quality"] = "high" if req.quality == "hd" else "medium"
    else:
        out["response_format"] = "b64_json"
        if req.model != "dall-e-2" and not req.images:  # dall-e-2 has one quality; edits none
            out["quality"] = req.quality
    if req.style and req.model == "dall-e-3":
        out["style"] = req.style
    if req.user:
        out["user"] = req.user
    return out


def _headers(provider) -> dict:
    return {"Authorization": f"Bearer {provider.upstream.api_key}"} if (
        provider.upstream.api_key) else {}


def generate(provider, req, fetcher) -> list[GeneratedImage]:
    """One call; dall-e-3 makes one image a call (it refuses n > 1), so it gets n calls."""
    fields = _fields(req)
    single = req.model == "dall-e-3" and req.n > 1
    if single:
        fields["n"] = 1
    body = json.dumps(fields, separators=(",", ":")).encode()

    def call():
        resp = _call(lambda: send(
            provider.session, f"{provider.upstream.base_url}/images/generations", body=body,
            headers={**_headers(provider), "Content-Type": "application/json"},
            timeout=provider.timeout, upstream=provider.upstream))
        return _images(provider, resp, fetcher)

    return one_call_each(call, req.n, provider.upstream) if single else call()


def edit(provider, req, fetcher) -> list[GeneratedImage]:
    fields = {k: str(v) for k, v in _fields(req).items()}
    name = "image[]" if len(req.images) > 1 else "image"
    files = [(name, (img.filename, img.data, img.mime)) for img in req.images]
    if req.mask is not None:
        files.append(("mask", (req.mask.filename, req.mask.data, req.mask.mime)))
    resp = _call(lambda: send_form(provider.session, f"{provider.upstream.base_url}/images/edits",
                                   fields=fields, files=files, headers=_headers(provider),
                                   timeout=provider.timeout, upstream=provider.upstream))
    return _images(provider, resp, fetcher)


def _call(send_it):
    """Send; OpenAI's moderation refusal (400 content_policy_violation / moderation_blocked)
    becomes ImageRefused: the prompt's fault, not worth another provider."""
    try:
        return send_it()
    except UpstreamError as err:
        if err.code in ("content_policy_violation", "moderation_blocked") or (
                err.status == 400 and "safety system" in err.message):
            raise ImageRefused(err.message or "The provider refused the prompt.",
                               param="prompt") from None
        raise


def _images(provider, resp, fetcher) -> list[GeneratedImage]:
    _, data = read_json(resp)
    items = data.get("data") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise UpstreamUnavailable(f"provider {provider.upstream.name} sent an images answer "
                                  "without data", fault="protocol")
    mime = MIME.get(str(data.get("output_format") or "png"), "image/png")
    out = []
    for item in items:
        if not isinstance(item, dict):
            continue
        revised = item.get("revised_prompt") or None
        if item.get("b64_json"):
            try:
                raw = base64.b64decode(item["b64_json"], validate=True)
            except (binascii.Error, ValueError, TypeError):
                raise UpstreamUnavailable(f"provider {provider.upstream.name} sent an image "
                                          "that is not base64", fault="protocol") from None
            out.append(GeneratedImage(raw, image_type(raw) or mime, revised))
        elif isinstance(item.get("url"), str):
            got_mime, raw = download(fetcher, item["url"], provider.upstream)
            out.append(GeneratedImage(raw, got_mime, revised))
    return out
