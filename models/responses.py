"""Stored Responses: each response a client created with `store`, with its input, per user."""

from sqlalchemy import DateTime, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import utcnow


class StoredResponse(db.Model):
    """One response and the input items it was asked with (JSON text, ASCII-escaped).

    `previous_id` links a conversation's turns; the gateway walks it to rebuild the history
    when a later request names `previous_response_id`, whichever provider serves it.
    """

    __tablename__ = "stored_responses"
    __table_args__ = (Index("ix_stored_responses_created_at", "created_at"),)

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    previous_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    model: Mapped[str] = mapped_column(String(256))
    input_items: Mapped[str] = mapped_column(Text)  # JSON list
    body: Mapped[str] = mapped_column(Text)  # JSON: the response object the client got
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
