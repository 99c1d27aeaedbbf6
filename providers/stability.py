"""Stability AI upstreams: the Stable Image API (v2beta `stable-image/generate/{core,ultra,sd3}`).

One multipart/form-data request makes one image, so `n` images are `n` requests, sent in
parallel under gevent; the request is charged for those that came back. The answer is the
image's bytes (`Accept: image/*`) with a `finish-reason` header, or `{"image": base64,
"finish_reason", "seed"}` as JSON. A prompt the content filter refuses is a 403
`content_moderation` error (providers/http.py) or a `CONTENT_FILTERED` finish reason: both are
`ImageRefused`, the request's own fault, not retried elsewhere and not charged.
See https://platform.stability.ai/docs/api-reference#tag/Generate
"""

import base64
import binascii
import json

from gevent import monkey
from gevent.pool import Pool

from errors import GatewayError, UpstreamUnavailable
from providers.aspect import nearest_aspect_ratio
from providers.base import Provider
from providers.http import send_form
from providers.images import GeneratedImage, ImageRefused

ASPECT_RATIOS = ("21:9", "16:9", "3:2", "5:4", "1:1", "4:5", "2:3", "9:16", "9:21")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp")
# The style presets Stable Image Core takes (OpenAI's "vivid" and "natural" are not among them).
STYLE_PRESETS = frozenset((
    "3d-model", "analog-film", "anime", "cinematic", "comic-book", "digital-art", "enhance",
    "fantasy-art", "isometric", "line-art", "low-poly", "modeling-compound", "neon-punk",
    "origami", "photographic", "pixel-art", "tile-texture"))


def endpoint(model: str) -> tuple[str, dict]:
    """The generate endpoint for an upstream model name, and the fields it adds: `core` and
    `ultra` (also as stable-image-core/-ultra) have their own, every SD3 model goes to `sd3`."""
    name = model.removeprefix("stable-image-")
    if name in ("core", "ultra"):
        return name, {}
    return "sd3", {"model": model}


class StabilityProvider(Provider):
    wire_format = "stability"
    chats = False
    supports_images = True

    def generate_images(self, req, *, fetcher):
        kind, fields = endpoint(req.model)
        fields = {"prompt": req.prompt, "output_format": "png",
                  "aspect_ratio": nearest_aspect_ratio(req.size, ASPECT_RATIOS), **fields}
        if kind == "core" and req.style in STYLE_PRESETS:
            fields["style_preset"] = req.style
        url = f"{self.upstream.base_url}/stable-image/generate/{kind}"

        def one(_):
            try:
                return self._generate(url, fields)
            except GatewayError as err:
                return err

        if req.n > 1 and monkey.is_module_patched("socket"):
            outcomes = Pool(req.n).map(one, range(req.n))
        else:
            outcomes = [one(i) for i in range(req.n)]
        images = [o for o in outcomes if isinstance(o, GeneratedImage)]
        if not images:  # every call failed: the first failure is the answer (maybe a failover)
            raise outcomes[0]
        return images

    def _generate(self, url: str, fields: dict) -> GeneratedImage:
        headers = {"Accept": "image/*"}
        if self.upstream.api_key:
            headers["Authorization"] = f"Bearer {self.upstream.api_key}"
        resp = send_form(self.session, url, fields=fields, files=[], headers=headers,
                         timeout=self.timeout, upstream=self.upstream)  # multipart only
        mime = resp.content_type.split(";")[0].strip().lower()
        finish = resp.headers.get("finish-reason", "SUCCESS")
        content = resp.body()
        if mime == "application/json":  # the JSON answer: base64 image and its finish reason
            mime, content, finish = self._json_image(resp, content)
        if finish == "CONTENT_FILTERED":
            raise ImageRefused(f"provider {self.upstream.name} refused the request: its "
                               "content filter flagged the image", param="prompt")
        if finish != "SUCCESS" or mime not in IMAGE_TYPES or not content:
            raise UpstreamUnavailable(f"provider {self.upstream.name} sent no image "
                                      f"(finish reason {finish}, type {mime or 'none'})",
                                      fault="protocol")
        return GeneratedImage(content, mime)

    def _json_image(self, resp, content: bytes) -> tuple[str, bytes, str]:
        _, _, subtype = resp.content_type.partition("type=")  # application/json; type=image/png
        try:
            answer = json.loads(content)
            data = base64.b64decode(answer.get("image") or "", validate=True)
        except (ValueError, AttributeError, binascii.Error) as exc:
            raise UpstreamUnavailable(f"provider {self.upstream.name} sent an unreadable "
                                      "image answer", fault="protocol") from exc
        return (subtype.strip().lower() or "image/png", data,
                str(answer.get("finish_reason") or "SUCCESS"))
