"""Stored Responses: each response a client created with `store`, with its input, per user."""

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text
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


class StoredItem(db.Model):
    """One input or output item of a stored response, by its id: what an `item_reference`
    in a later request names (the Vercel AI SDK sends those instead of the items)."""

    __tablename__ = "stored_response_items"
    __table_args__ = (Index("ix_stored_response_items_user_item", "user_id", "item_id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    response_id: Mapped[str] = mapped_column(
        ForeignKey("stored_responses.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[str] = mapped_column(String(64))
    item: Mapped[str] = mapped_column(Text)  # JSON
