"""Fetching image URLs for providers that need the bytes inline, without becoming an SSRF hole.

Only http(s), only public addresses (every address the host resolves to is checked, and again
on every redirect), a size cap read in pieces, and a total time limit.
"""

import base64
import ipaddress
import socket
import time
from urllib.parse import urljoin, urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from errors import InvalidRequest
from translation import ir

IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp", "image/heic", "image/heif")
MAX_REDIRECTS = 3


class ImageFetcher:
    def __init__(self, *, max_bytes: int, timeout: float, allow_private: bool = False):
        self.max_bytes, self.timeout, self.allow_private = max_bytes, timeout, allow_private
        self.session = requests.Session()
        self.session.trust_env = False
        if not allow_private:  # the check that counts: the address actually connected to
            adapter = PublicOnlyAdapter()
            self.session.mount("http://", adapter)
            self.session.mount("https://", adapter)

    def inline(self, req: ir.ChatRequest) -> None:
        """Replace every image URL in the request by the image's bytes."""
        for turn in req.turns:
            for part in turn.parts:
                for image in (part.content if isinstance(part, ir.ToolResult) else [part]):
                    if isinstance(image, ir.Image) and image.url and not image.data:
                        image.mime, image.data = self.fetch(image.url)

    def fetch(self, url: str) -> tuple[str, str]:
        """(mime type, base64 data) of the image at url, or a 400 saying why not."""
        mime, data = self.fetch_bytes(url)
        return mime, base64.b64encode(data).decode()

    def fetch_bytes(self, url: str, *, headers: dict | None = None) -> tuple[str, bytes]:
        """(mime type, bytes) of the image at url, or a 400 saying why not. `headers` go with
        the first request only (a provider's key for its own file URLs), never to a redirect."""
        deadline = time.monotonic() + self.timeout
        for _ in range(MAX_REDIRECTS + 1):
            self._check(url)
            try:
                resp = self.session.get(url, stream=True, allow_redirects=False,
                                        headers=headers,
                                        timeout=max(deadline - time.monotonic(), 0.1))
            except requests.RequestException as exc:
                why = ("it points to a private or local address" if _caused_by_private(exc)
                       else "it could not be fetched")
                raise _refused(url, why) from None
            with resp:
                if resp.is_redirect and resp.headers.get("location"):
                    url, headers = urljoin(url, resp.headers["location"]), None
                    continue
                return self._read(resp, url, deadline)
        raise _refused(url, "it redirects too many times")

    def _read(self, resp, url, deadline) -> tuple[str, bytes]:
        if resp.status_code != 200:
            raise _refused(url, f"fetching it returned HTTP {resp.status_code}")
        mime = resp.headers.get("content-type", "").split(";")[0].strip().lower()
        if mime not in IMAGE_TYPES:
            raise _refused(url, f"it is not a supported image type ({mime or 'unknown'})")
        data = bytearray()
        for piece in resp.iter_content(64 * 1024):
            data += piece
            if len(data) > self.max_bytes:
                raise _refused(url, f"it is larger than {self.max_bytes} bytes")
            if time.monotonic() > deadline:
                raise _refused(url, "fetching it took too long")
        return mime, bytes(data)

    def _check(self, url: str) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise _refused(url, "only http and https URLs can be fetched")
        if self.allow_private:
            return
        try:
            infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            raise _refused(url, "its host does not resolve") from None
        if not all(_is_public(info[4][0]) for info in infos):
            raise _refused(url, "it points to a private or local address")


# The names are looked up again when connecting, and a name can answer differently the second
# time (DNS rebinding); so the socket's own peer address is checked right after the TCP connect,
# before TLS or a byte of the request is sent.
class PrivatePeer(OSError):
    """The connection reached a private or local address."""


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


class _PublicOnly:
    def _new_conn(self):
        sock = super()._new_conn()
        if not _is_public(sock.getpeername()[0]):
            sock.close()
            raise PrivatePeer(f"refused to talk to {self.host}: not a public address")
        return sock


class _HTTP(_PublicOnly, HTTPConnection):
    pass


class _HTTPS(_PublicOnly, HTTPSConnection):
    pass


class _HTTPPool(HTTPConnectionPool):
    ConnectionCls = _HTTP


class _HTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPS


class PublicOnlyAdapter(HTTPAdapter):
    """A requests adapter whose connections refuse any peer that is not a public address."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}


def _caused_by_private(exc: BaseException) -> bool:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, PrivatePeer):
            return True
        exc = getattr(exc, "reason", None) or exc.__cause__ or exc.__context__ or (
            exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else None)
    return False


def _refused(url: str, why: str) -> InvalidRequest:
    shown = url if len(url) <= 200 else url[:200] + "…"
    return InvalidRequest(f"The image URL {shown} cannot be used: {why}.", param="image_url")
