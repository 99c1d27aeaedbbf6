"""Generated images kept by the gateway: `url` answers point here, never at a provider's URL.

An image is saved under an unguessable id (a random 32-character token): the id is the only
way to reach it, so the URL is a capability, shared by whoever the client gives it to, and
nothing lists images. A row per image (owner, type, size, time) lets the sweep delete what is
older than the retention period, files and rows, and an expired image is gone (404) even
before the sweep runs.

The bytes go to a `Blobs` backend: a local folder (under `instance/` by default); a bucket
(S3-compatible) can follow by implementing the same three methods.
"""

import logging
import os
import re
import secrets
import tempfile
import threading
import time
from datetime import timedelta
from typing import Protocol

from sqlalchemy import delete, insert, select

from models.base import utcnow
from models.images import StoredImage

log = logging.getLogger(__name__)
TABLE = StoredImage.__table__
IMAGE_ID = re.compile(r"img_[A-Za-z0-9_-]{32}")
EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif"}


class Blobs(Protocol):
    """Where the bytes live, by id."""

    def put(self, image_id: str, data: bytes) -> None: ...
    def get(self, image_id: str) -> bytes | None: ...
    def delete(self, image_id: str) -> None: ...


class LocalBlobs:
    """One file per image in a folder (two levels of subfolders by the id's first letters)."""

    def __init__(self, root: str):
        self.root = root

    def _path(self, image_id: str) -> str:
        token = image_id.removeprefix("img_")
        return os.path.join(self.root, token[:2], token)

    def put(self, image_id: str, data: bytes) -> None:
        path = self._path(image_id)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".part-")
        with os.fdopen(fd, "wb") as out:  # written whole, then renamed: never served half
            out.write(data)
        os.replace(tmp, path)

    def get(self, image_id: str) -> bytes | None:
        try:
            with open(self._path(image_id), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def delete(self, image_id: str) -> None:
        try:
            os.remove(self._path(image_id))
        except FileNotFoundError:
            pass


class ImageStore:
    def __init__(self, engine, blobs: Blobs, *, retention_days: float,
                 sweep_every: float = 3600.0):
        self.engine, self.blobs = engine, blobs
        self.retention = timedelta(days=retention_days)
        self.sweep_every = sweep_every
        self._last_sweep = time.monotonic()

    def save(self, user_id: int, data: bytes, mime: str) -> str:
        """Store an image; returns its id (what its URL carries)."""
        image_id = "img_" + secrets.token_urlsafe(24)
        self.blobs.put(image_id, data)
        with self.engine.begin() as conn:
            conn.execute(insert(TABLE).values(id=image_id, user_id=user_id, mime=mime,
                                              size=len(data), created_at=utcnow()))
        if time.monotonic() - self._last_sweep > self.sweep_every:
            self._last_sweep = time.monotonic()
            threading.Thread(target=self._sweep_safely, name="images-sweep",
                             daemon=True).start()  # off the response path
        return image_id

    def load(self, image_id: str) -> tuple[bytes, str] | None:
        """(bytes, mime) of a stored image, or None when unknown or expired."""
        if not IMAGE_ID.fullmatch(image_id):
            return None
        with self.engine.connect() as conn:
            row = conn.execute(select(TABLE.c.mime).where(
                TABLE.c.id == image_id, TABLE.c.created_at >= utcnow() - self.retention)).first()
        if row is None:
            return None
        data = self.blobs.get(image_id)
        return None if data is None else (data, row.mime)

    def _sweep_safely(self) -> None:
        try:
            self.sweep()
        except Exception as exc:  # the next save tries again after another interval
            log.error("sweeping stored images failed: %s", type(exc).__name__)

    def sweep(self) -> int:
        """Delete images older than the retention period, files then rows; returns how many."""
        self._last_sweep = time.monotonic()
        cutoff = utcnow() - self.retention
        gone = 0
        while True:
            with self.engine.connect() as conn:
                ids = conn.execute(select(TABLE.c.id).where(TABLE.c.created_at < cutoff)
                                   .limit(500)).scalars().all()
            if not ids:
                return gone
            for image_id in ids:
                self.blobs.delete(image_id)
            with self.engine.begin() as conn:
                gone += conn.execute(delete(TABLE).where(TABLE.c.id.in_(ids))).rowcount


def extension(mime: str) -> str:
    """The file extension a stored image's URL ends with."""
    return EXTENSIONS.get(mime, "bin")
