"""Replicate upstreams: image models run as predictions (flux-schnell, flux-pro, SD 3.5, SDXL...).

A prediction is created (`POST /models/{owner}/{name}/predictions`, or `POST /predictions` with
the version of an `owner/name:version` model) with `Prefer: wait=N`, so a quick model answers
at once; one still `starting` or `processing` is polled at its `urls.get` until it ends or the
provider's `prediction_timeout` (seconds, in total) runs out, when it is cancelled and the
request fails with a timeout (charged nothing). A `failed` or `canceled` prediction is a clean
error costing nothing (an NSFW refusal is `ImageRefused`). A succeeded one's output files are
downloaded through the image fetcher's rules (providers.images.download). Models that take
`num_outputs` make `n` images in one prediction; the others get `n` predictions in parallel.
See https://replicate.com/docs/reference/http
"""

import base64
import binascii
import fnmatch
import json
import math
import re
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit

from gevent import monkey
from gevent.pool import Pool

from errors import (
    GatewayError,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    redact,
)
from providers.aspect import nearest_aspect_ratio
from providers.base import Provider
from providers.http import get, read_json, send
from providers.images import GeneratedImage, ImageRefused, download

MAX_WAIT = 60  # the longest `Prefer: wait` Replicate honours, in seconds
RUNNING = ("starting", "processing")
FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
PRO_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
SD35_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "9:16", "9:21")
_ID = re.compile(r"[A-Za-z0-9]{1,64}")
_MODEL = re.compile(r"([a-z0-9][a-z0-9_.-]*)/([a-z0-9][a-z0-9_.-]*)(?::([0-9a-f]{64}))?")
# What a safety checker's refusal says in a failed prediction's error (flux, SDXL).
_NSFW = re.compile(r"nsfw|safety|flagged|sensitive", re.IGNORECASE)


@dataclass(frozen=True)
class Inputs:
    """How a model's inputs are shaped: an aspect ratio (from `ratios`) or width and height in
    pixels (`ratios` empty); `num_outputs` or one image a prediction; an `output_format`."""

    ratios: tuple = FLUX_RATIOS
    many: bool = False
    output_format: bool = True

    def of(self, req, count: int) -> dict:
        inputs = {"prompt": req.prompt}
        if self.ratios:
            inputs["aspect_ratio"] = nearest_aspect_ratio(req.size, self.ratios)
        else:
            width, height = (int(x) for x in req.size.lower().split("x"))
            inputs["width"], inputs["height"] = _multiple_of_8(width), _multiple_of_8(height)
        if self.many:
            inputs["num_outputs"] = count
        if self.output_format:
            inputs["output_format"] = "png"
        return inputs


# Upstream model names (patterns, first match wins) -> their inputs; others take an aspect
# ratio and make one image a prediction, like most image models on Replicate.
MODEL_INPUTS = (
    ("black-forest-labs/flux-schnell", Inputs(FLUX_RATIOS, many=True)),
    ("black-forest-labs/flux-dev", Inputs(FLUX_RATIOS, many=True)),
    ("black-forest-labs/flux-1.1-pro-ultra", Inputs(FLUX_RATIOS)),
    ("black-forest-labs/flux-*pro*", Inputs(PRO_RATIOS)),
    ("stability-ai/stable-diffusion-3*", Inputs(SD35_RATIOS)),
    ("stability-ai/sdxl*", Inputs((), many=True, output_format=False)),
    ("stability-ai/stable-diffusion*", Inputs((), many=True, output_format=False)),
)


def inputs_for(model: str) -> Inputs:
    name = model.split(":")[0]
    return next((i for p, i in MODEL_INPUTS if fnmatch.fnmatchcase(name, p)), Inputs())


class PredictionTimeout(UpstreamTimeout):
    """A prediction outlived the provider's prediction_timeout; it was cancelled. The request's
    answer, not a reason to start the same long job elsewhere."""

    fault = None


class ReplicateProvider(Provider):
    wire_format = "replicate"
    chats = False
    supports_images = True
    defaults = {"prediction_timeout": 300.0, "poll_interval": 1.0}

    def generate_images(self, req, *, fetcher):
        match = _MODEL.fullmatch(req.model)
        if match is None:
            raise UpstreamError(f"provider {self.upstream.name}: {req.model!r} is not a "
                                "Replicate model name (owner/name or owner/name:version)")
        shape = inputs_for(req.model)
        counts = [req.n] if shape.many else [1] * req.n
        deadline = time.monotonic() + self._setting("prediction_timeout")

        def one(count):
            try:
                return self._predict(match, shape.of(req, count), deadline, fetcher)
            except GatewayError as err:
                return err

        if len(counts) > 1 and monkey.is_module_patched("socket"):
            outcomes = Pool(len(counts)).map(one, counts)
        else:
            outcomes = [one(c) for c in counts]
        images = [image for o in outcomes if not isinstance(o, GatewayError) for image in o]
        if not images:  # every prediction failed: the first failure is the answer
            raise next(o for o in outcomes if isinstance(o, GatewayError))
        return images[:req.n]

    # ---- one prediction ---------------------------------------------------------------------
    def _predict(self, match, inputs: dict, deadline: float, fetcher) -> list[GeneratedImage]:
        owner, name, version = match.groups()
        if version:
            url, body = f"{self.upstream.base_url}/predictions", {"version": version}
        else:
            url = f"{self.upstream.base_url}/models/{quote(owner)}/{quote(name)}/predictions"
            body = {}
        wait = math.ceil(max(1, min(MAX_WAIT, deadline - time.monotonic())))
        connect, read = self.timeout
        resp = send(self.session, url, body=json.dumps({**body, "input": inputs}).encode(),
                    headers={**self._auth(), "Content-Type": "application/json",
                             "Prefer": f"wait={wait}"},
                    timeout=(connect, read + wait), upstream=self.upstream)
        prediction = self._read(resp)
        try:
            while prediction.get("status") in RUNNING:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise self._timed_out()
                time.sleep(min(self._setting("poll_interval"), left))
                try:
                    prediction = self._read(get(
                        self.session, self._own(prediction, "get"), headers=self._auth(),
                        timeout=(connect, max(1.0, min(read, deadline - time.monotonic()))),
                        upstream=self.upstream))
                except UpstreamTimeout:
                    if time.monotonic() < deadline:
                        raise
                    raise self._timed_out() from None  # the look itself outlasted the time
        except BaseException:
            self._cancel(prediction)  # nobody will wait for it: stop paying for its compute
            raise
        return self._outcome(prediction, fetcher)

    def _timed_out(self) -> PredictionTimeout:
        return PredictionTimeout(
            f"provider {self.upstream.name}: the prediction did not finish within "
            f"{self._setting('prediction_timeout'):g} seconds; it was cancelled")

    def _outcome(self, prediction: dict, fetcher) -> list[GeneratedImage]:
        status, name = prediction.get("status"), self.upstream.name
        if status == "succeeded":
            output = prediction.get("output")
            urls = [output] if isinstance(output, str) else output
            if not isinstance(urls, list) or not urls or not all(
                    isinstance(u, str) for u in urls):
                raise UpstreamUnavailable(f"provider {name}'s prediction succeeded without "
                                          "output files", fault="protocol")
            return self._download(urls, fetcher)
        error = redact(str(prediction.get("error") or "no reason given")[:500],
                       self.upstream.api_key)
        if status == "failed" and _NSFW.search(error):
            raise ImageRefused(f"provider {name} refused the request: {error}", param="prompt")
        if status in ("failed", "canceled"):
            what = "failed" if status == "failed" else "was cancelled"
            raise UpstreamError(f"provider {name}'s prediction {what}: {error}",
                                code="upstream_prediction_failed")
        raise UpstreamUnavailable(f"provider {name} sent a prediction with status {status!r}",
                                  fault="protocol")

    def _download(self, urls: list[str], fetcher) -> list[GeneratedImage]:
        """Every output file that can be fetched (fewer are charged fewer); none: the error."""
        images, failure = [], None
        for url in urls:
            try:
                mime, data = (_data_url(url, self.upstream) if url.startswith("data:")
                              else download(fetcher, url, self.upstream))
            except GatewayError as err:
                failure = failure or err
                continue
            images.append(GeneratedImage(data, mime))
        if not images:
            raise failure
        return images

    # ---- HTTP details -----------------------------------------------------------------------
    def _setting(self, name: str) -> float:
        """The upstream's setting, or this type's default when it was built without one."""
        return getattr(self.upstream, name) or self.defaults[name]

    def _auth(self) -> dict:
        return {"Authorization": f"Bearer {self.upstream.api_key}"} if self.upstream.api_key \
            else {}

    def _read(self, resp) -> dict:
        _, prediction = read_json(resp)
        if not isinstance(prediction, dict) or not _ID.fullmatch(str(prediction.get("id"))):
            raise UpstreamUnavailable(f"provider {self.upstream.name} sent an unreadable "
                                      "prediction", fault="protocol")
        return prediction

    def _own(self, prediction: dict, which: str) -> str:
        """The prediction's `urls.get` / `urls.cancel`, when it is on this provider's base URL;
        else the documented path there: the key is never sent anywhere else."""
        base = f"{self.upstream.base_url}/predictions/{prediction['id']}"
        fallback = base if which == "get" else f"{base}/{which}"
        url = (prediction.get("urls") or {}).get(which)
        if isinstance(url, str) and _same_origin(url, self.upstream.base_url):
            return url
        return fallback

    def _cancel(self, prediction: dict) -> None:
        if prediction.get("status") not in RUNNING:
            return
        try:
            send(self.session, self._own(prediction, "cancel"), body=b"",
                 headers=self._auth(), timeout=self.timeout, upstream=self.upstream).close()
        except GatewayError:  # it ends on its own anyway; the request's own error stands
            pass


def _same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc) and a.path.startswith(b.path + "/")


def _data_url(url: str, upstream) -> tuple[str, bytes]:
    """(mime, bytes) of a `data:image/...;base64,` output."""
    head, _, data = url.partition(",")
    mime = head.removeprefix("data:").split(";")[0].lower()
    try:
        if not (mime.startswith("image/") and head.endswith(";base64")):
            raise ValueError(mime)
        return mime, base64.b64decode(data, validate=True)
    except (ValueError, binascii.Error) as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} sent an output that is not an "
                                  "image", fault="protocol") from exc


def _multiple_of_8(pixels: int) -> int:
    return max(128, min(2048, pixels // 8 * 8))
