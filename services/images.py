"""The images exchange: generate or edit images over the routing plan, billed per image.

One path for `POST /images/generations` and `/images/edits`: the routes for the model with
purpose images (providers.registry), the request checked against the model's declared sizes
and prompt limit, a hold of `n` times the per-image price of the quality asked (402 when the
balance cannot cover it) before anything is sent, then one attempt at a time as the routing
plan binds it (one URL, one key), each calling the provider adapter's `generate_images` or
`edit_images` (providers/images.py). A failure another URL, key or provider may not have moves
on; anything else ends the request and releases the hold. The images returned are charged
(fewer than `n` cost less), one ledger record with the image count, and answered in the OpenAI
images shape: stored by the gateway and served from its own URL (`url`), or inline
(`b64_json`).

Providers stay behind the adapter interface: this module knows no upstream's wire format.
"""

import base64
import fnmatch
import json
import logging
import time
from dataclasses import dataclass, replace

from sqlalchemy.exc import SQLAlchemyError

import tracing
from errors import (
    InsufficientCredits,
    InvalidRequest,
    StorageUnavailable,
    UpstreamError,
    UpstreamUnavailable,
)
from providers.images import ImageRequest, image_type
from providers.registry import IMAGES
from services.image_store import extension
from services.relay import Reply
from translation.ir import Usage

log = logging.getLogger(__name__)

STANDARD_SIZES = ("256x256", "512x512", "1024x1024", "1792x1024", "1024x1792")
RATIO_SIZES = [*STANDARD_SIZES, "1536x1024", "1024x1536", "1344x768", "768x1344", "1536x640",
               "640x1536", "1216x832", "832x1216", "1152x896", "896x1152"]
# The words newer OpenAI image models use for quality, mapped onto the two we price.
# every quality word of the openai SDK's images.generate / images.edit, onto the two prices
QUALITIES = {"standard": "standard", "hd": "hd", "low": "standard", "medium": "standard",
             "auto": "standard", "high": "hd", "xhigh": "hd", "max": "hd"}
MAX_PROMPT = 4000
MAX_IMAGES = 4
# What the well-known image models accept (client-facing names or patterns); IMAGE_MODEL_RULES in
# the config adds or overrides entries: {"sizes": [...], "max_prompt": n}.
KNOWN_MODELS = {
    "dall-e-2": {"sizes": ["256x256", "512x512", "1024x1024"], "max_prompt": 1000},
    "dall-e-3": {"sizes": ["1024x1024", "1792x1024", "1024x1792"]},
    "gpt-image-*": {"sizes": ["1024x1024", "1536x1024", "1024x1536", "auto"],
                    "max_prompt": 32000},
    # Stability and Replicate models take an aspect ratio, not pixels: the standard sizes and
    # the native ones of each ratio (about a megapixel) are sent as the nearest ratio.
    "stable-image-*": {"sizes": RATIO_SIZES, "max_prompt": 10000},
    "sd3*": {"sizes": RATIO_SIZES, "max_prompt": 10000},
    "flux-*": {"sizes": RATIO_SIZES},
    "stable-diffusion-*": {"sizes": RATIO_SIZES},
}


@dataclass(frozen=True)
class ModelRules:
    sizes: tuple
    max_prompt: int


class Images:
    def __init__(self, registry, billing, router, store, fetcher, *, models: dict | None = None):
        self.registry, self.billing, self.router = registry, billing, router
        self.store, self.fetcher = store, fetcher
        self.models = {**KNOWN_MODELS, **(models or {})}

    def rules(self, model: str) -> ModelRules:
        """The sizes a model accepts and its longest prompt (exact names first, then patterns)."""
        entry = self.models.get(model)
        if entry is None:
            entry = next((v for k, v in self.models.items()
                          if "*" in k and fnmatch.fnmatchcase(model, k)), {})
        sizes = tuple(entry.get("sizes") or STANDARD_SIZES)
        return ModelRules(sizes, int(entry.get("max_prompt") or MAX_PROMPT))

    def create(self, body: dict, *, caller, public_base: str, uploads=(), mask=None) -> Reply:
        """Serve one validated images request (edits when `uploads` are given)."""
        editing = bool(uploads)
        model = body["model"]
        routes = [r for r in self.registry.routes(model, body.get("provider"), purpose=IMAGES)
                  if r.provider.supports_images
                  and (r.provider.supports_image_edits or not editing)]
        if not routes:
            what = "edit images" if editing else "make images"
            raise InvalidRequest(f"The model '{model}' cannot {what} here; use an image model "
                                 "whose provider does (see GET /v1/models).",
                                 param="model", code="unsupported_model")
        n, quality, size = self._checked(body, model)
        info = tracing.current() or tracing.RequestInfo("")
        info.family, info.model = "openai", model
        price = self.billing.pricing.for_model(model).images_only().at_quality(quality)
        ticket = self._reserve(caller, model, price, n, info)
        try:
            images, headers = self._serve(routes, body, n, quality, size, uploads, mask, editing,
                                          info)
        except BaseException:
            self.billing.release(ticket)
            raise
        ticket.provider = info.provider
        usage = Usage(images=len(images))
        cost = self.billing.charge(ticket, usage)  # the images exist: charged whatever follows
        info.charged(usage, cost)
        try:
            data = [self._entry(image, body, caller, public_base) for image in images]
        except (OSError, SQLAlchemyError) as exc:  # a full disk, a lost database
            log.error("request %s: %d images made but not stored: %s", info.id, len(images),
                      exc.__class__.__name__)
            raise StorageUnavailable(
                f"The images were made ({cost} credits charged) but the gateway could not "
                "store them. Retry, or ask for response_format b64_json.",
                code="image_store_unavailable") from None
        out = {"created": int(time.time()), "data": data, "credits_consumed": float(cost)}
        return Reply(200, json.dumps(out).encode(), headers=headers)

    def _checked(self, body: dict, model: str) -> tuple[int, str, str]:
        """(n, quality, size) of a request, checked against the model's rules."""
        rules = self.rules(model)
        if len(body["prompt"]) > rules.max_prompt:
            raise InvalidRequest(f"Invalid value for 'prompt': at most {rules.max_prompt} "
                                 f"characters for '{model}' (got {len(body['prompt'])}).",
                                 param="prompt")
        size = body.get("size") or rules.sizes[0]
        if size not in rules.sizes:
            raise InvalidRequest(f"Invalid value for 'size': '{size}' is not supported by "
                                 f"'{model}'; use one of {', '.join(rules.sizes)}.",
                                 param="size")
        return body.get("n") or 1, QUALITIES[body.get("quality") or "standard"], size

    def _reserve(self, caller, model, price, n, info):
        try:
            return self.billing.reserve(caller, model, 0, 0, price=price, images=n,
                                        request_id=info.id if info.generated else "")
        except InsufficientCredits as err:
            err.message = (f"Insufficient credits: {n} image{'s' if n > 1 else ''} at "
                           f"{price.image} credits each may cost up to {price.image * n} "
                           "credits. Top up, or ask for fewer images.")
            raise

    def _serve(self, routes, body, n, quality, size, uploads, mask, editing, info):
        """(images, headers naming what served them) of the first attempt that answers."""
        plan = self.router.plan(routes)
        for route in plan:
            req = ImageRequest(model=route.upstream_model, prompt=body["prompt"], n=n,
                               size=size, quality=quality, style=body.get("style"),
                               user=body.get("user"), images=tuple(uploads), mask=mask)
            adapter = route.provider
            try:
                if editing:
                    images = adapter.edit_images(req, fetcher=self.fetcher)
                else:
                    images = adapter.generate_images(req, fetcher=self.fetcher)
                images = raster_images(images)
                if not images:
                    raise UpstreamUnavailable(f"provider {adapter.upstream.name} returned no "
                                              "image", fault="protocol")
            except (UpstreamUnavailable, UpstreamError) as err:
                info.attempts = plan.attempts
                plan.failed(route, err)  # raises what no other attempt could help with
                log.warning("provider %s attempt %d failed (%s): %s", adapter.upstream.name,
                            plan.attempts, err.fault, err.message)
                continue
            headers = plan.succeeded(route)
            info.provider, info.attempts = plan.provider, plan.attempts
            return images[:n], headers
        info.attempts = plan.attempts
        raise plan.exhausted(body["model"])

    def _entry(self, image, body, caller, public_base: str) -> dict:
        if body.get("response_format") == "b64_json":
            entry = {"b64_json": base64.b64encode(image.data).decode()}
        else:
            image_id = self.store.save(caller.user_id, image.data, image.mime)
            entry = {"url": f"{public_base}/v1/images/files/{image_id}.{extension(image.mime)}"}
        if image.revised_prompt:
            entry["revised_prompt"] = image.revised_prompt
        return entry


def raster_images(images) -> list:
    """The images whose bytes are a raster type (PNG, JPEG, WebP, GIF), with the type their
    bytes show, whatever the upstream claimed; anything else (an SVG, say) is left out and not
    charged."""
    out = []
    for image in images:
        mime = image_type(image.data)
        if mime is None:
            log.warning("an upstream image that is no raster image was left out (%s)",
                        image.mime[:40])
            continue
        out.append(image if mime == image.mime else replace(image, mime=mime))
    return out
