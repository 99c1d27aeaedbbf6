"""Gemini image models (gemini-2.5-flash-image, gemini-3-pro-image-preview, ...) behind the
images API: one generateContent call per image asked for, with image output.

https://ai.google.dev/gemini-api/docs/image-generation: `responseModalities` with IMAGE,
`imageConfig.aspectRatio` (the nearest to the size asked) and `imageSize` ("4K" for hd; the
model's default, 1K, for standard); the images come back as inlineData parts. An edit sends
the uploads as inlineData parts with the instruction. The calls after the first run at once
under gevent; one that fails after the first succeeded leaves fewer images (charged fewer).
"""

import base64
import binascii
import json
import math

from errors import UpstreamUnavailable
from providers.http import read_json
from providers.images import GeneratedImage, ImageRefused, one_call_each

ASPECT_RATIOS = ("1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9")
HD_SIZE = "4K"
BLOCKED = {"SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "IMAGE_SAFETY",
           "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "RECITATION"}


def aspect_ratio(size: str) -> str | None:
    """The supported aspect ratio nearest to a "WxH" size (None for "auto" and the like)."""
    try:
        width, height = (int(x) for x in size.lower().split("x"))
    except (ValueError, AttributeError):
        return None
    if width <= 0 or height <= 0:
        return None
    want = math.log(width / height)

    def distance(ratio):
        w, h = (int(x) for x in ratio.split(":"))
        return abs(math.log(w / h) - want)

    return min(ASPECT_RATIOS, key=distance)


def payload(req) -> dict:
    """The generateContent body for one image of `req`."""
    parts = [{"text": req.prompt}]
    for image in req.images:
        parts.append({"inlineData": {"mimeType": image.mime,
                                     "data": base64.b64encode(image.data).decode()}})
    if req.mask is not None:
        parts.append({"text": "The last image is a mask: change only where it is transparent."})
        parts.append({"inlineData": {"mimeType": req.mask.mime,
                                     "data": base64.b64encode(req.mask.data).decode()}})
    config = {}
    if ratio := aspect_ratio(req.size):
        config["aspectRatio"] = ratio
    if req.quality == "hd":
        config["imageSize"] = HD_SIZE
    generation = {"responseModalities": ["IMAGE"]}
    if config:
        generation["imageConfig"] = config
    return {"contents": [{"role": "user", "parts": parts}], "generationConfig": generation}


def generate(provider, req, fetcher) -> list[GeneratedImage]:
    """`req.n` images: one call each (Gemini image models make one image per candidate)."""
    body = payload(req)

    def one():
        resp = provider.open(body, model=req.model, stream=False)
        return images_of(provider, read_json(resp)[1])

    return one_call_each(one, req.n, provider.upstream)


def images_of(provider, data) -> list[GeneratedImage]:
    """The inline image parts of a generateContent answer; a blocked prompt is refused."""
    if not isinstance(data, dict):
        raise UpstreamUnavailable(f"provider {provider.upstream.name} sent an unreadable "
                                  "answer", fault="protocol")
    blocked = (data.get("promptFeedback") or {}).get("blockReason")
    out, reasons = [], []
    for candidate in data.get("candidates") or []:
        reasons.append(candidate.get("finishReason"))
        for part in (candidate.get("content") or {}).get("parts") or []:
            blob = part.get("inlineData") if isinstance(part, dict) else None
            if not isinstance(blob, dict) or not str(blob.get("mimeType", "")).startswith(
                    "image/"):
                continue
            try:
                raw = base64.b64decode(blob.get("data") or "", validate=True)
            except (binascii.Error, ValueError):
                raise UpstreamUnavailable(f"provider {provider.upstream.name} sent an image "
                                          "that is not base64", fault="protocol") from None
            out.append(GeneratedImage(raw, blob["mimeType"]))
    if not out and (blocked or any(r in BLOCKED for r in reasons)):
        raise ImageRefused(f"The provider refused to make this image "
                           f"({blocked or next(r for r in reasons if r in BLOCKED)}).",
                           param="prompt")
    if not out:
        text = json.dumps(data)[:200]
        raise UpstreamUnavailable(f"provider {provider.upstream.name} answered without an "
                                  f"image: {text}", fault="protocol")
    return out
