"""Generated images the gateway keeps and serves (`url` answers of the images endpoints)."""

from sqlalchemy import DateTime, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import utcnow


class StoredImage(db.Model):
    """One stored image: its unguessable id (the URL's path), owner, type and size. The bytes
    live in the image store (services/image_store.py), under the same id."""

    __tablename__ = "stored_images"
    __table_args__ = (Index("ix_stored_images_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    mime: Mapped[str] = mapped_column(String(32))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
