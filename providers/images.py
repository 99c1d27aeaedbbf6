"""What an image provider adapter receives and returns (the images exchange's contract).

An adapter (a providers.base.Provider subclass) that makes images sets `supports_images`
(and `supports_image_edits` when it edits) and implements:

    def generate_images(self, req: ImageRequest, *, fetcher: ImageFetcher) -> list[GeneratedImage]
    def edit_images(self, req: ImageRequest, *, fetcher: ImageFetcher) -> list[GeneratedImage]

The adapter object of one attempt is already bound by the routing plan to one base URL and one
key (`self.upstream.base_url`, `self.upstream.api_key`, `self.timeout`), as for chat and
embeddings: it sends with providers.http.send (or send_form for multipart) and nothing else.
`fetcher` (providers.media.ImageFetcher) downloads what an upstream answers with URLs
(`fetcher.fetch_bytes(url)`: public addresses only, size and time caps, image types only).

Faults raise GatewayError through providers/http.py like every other provider call, with the
usual `fault`, so the routing plan can fail over. A content-moderation refusal is a 400-type
GatewayError (`ImageRefused`, fault None: not a failover). Returning fewer images than `n` is
allowed (the request is charged for fewer); returning none is an error.
"""

import logging
from dataclasses import dataclass

from gevent import monkey
from gevent.pool import Pool

from errors import GatewayError, InvalidRequest, UpstreamUnavailable

log = logging.getLogger(__name__)


def image_type(data: bytes) -> str | None:
    """The raster type of image bytes from their first bytes (PNG, JPEG, WebP, GIF), or None.
    What an upstream or an upload claims is not trusted: the gateway serves images from its own
    address, where an SVG or HTML page would run script."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    return None


@dataclass(frozen=True)
class SourceImage:
    """An uploaded image for edits."""

    data: bytes
    mime: str  # image/png, image/jpeg, image/webp
    filename: str


@dataclass(frozen=True)
class ImageRequest:
    model: str  # the upstream's model name (after aliasing)
    prompt: str
    n: int  # 1..4
    size: str  # "1024x1024" etc, already validated against the model
    quality: str  # "standard" | "hd" (newer OpenAI words already mapped)
    style: str | None
    user: str | None
    images: tuple[SourceImage, ...] = ()  # edits only
    mask: SourceImage | None = None


@dataclass(frozen=True)
class GeneratedImage:
    data: bytes  # the image bytes (providers answering with URLs download them first,
    mime: str  # through providers.media's fetch rules)
    revised_prompt: str | None = None


class ImageRefused(InvalidRequest):
    """The provider refused the prompt or image (content moderation): the request's own fault,
    so not retried elsewhere, and nothing is charged."""

    code = "content_policy_violation"


def one_call_each(call, n: int, upstream) -> list:
    """`n` images from an upstream that makes one a call: `call()` returns a list of
    GeneratedImage. The first call alone (its failure may move on to another attempt), the rest
    at once under gevent; one of those that fails leaves fewer images (charged fewer)."""
    first = call()

    def attempt(_):
        try:
            return call()
        except GatewayError as err:
            log.warning("provider %s: one of %d images failed: %s", upstream.name, n,
                        err.message)
            return []

    if n <= 1:
        return first
    if monkey.is_module_patched("socket"):
        rest = Pool(n - 1).map(attempt, range(n - 1))
    else:
        rest = [attempt(i) for i in range(n - 1)]
    return [image for batch in [first, *rest] for image in batch]


def download(fetcher, url: str, upstream, headers: dict | None = None) -> tuple[str, bytes]:
    """(mime, bytes) of an image an upstream answered with as a URL, through the fetcher's rules;
    a URL that cannot be fetched is the upstream's fault (protocol), not the client's."""
    try:
        return fetcher.fetch_bytes(url, headers=headers)
    except InvalidRequest as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} answered with an image that could "
                                  f"not be downloaded: {exc.message}", fault="protocol") from None
