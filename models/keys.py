from sqlalchemy import JSON, DateTime, ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from extensions import db
from models.base import utcnow


class ApiKey(db.Model):
    """A client key. Only its SHA-256 digest is stored; the key itself is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    name: Mapped[str] = mapped_column(String(120), default="")
    digest: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))  # "tg-Ab12…last4", the prefix shown in lists
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[object] = mapped_column(DateTime, nullable=True)
    revoked_at: Mapped[object] = mapped_column(DateTime, nullable=True)
    # Optional restriction to some models (names or glob patterns), on top of the user's plan.
    models: Mapped[list | None] = mapped_column(JSON, nullable=True)

    user = relationship("User")

    def usable_at(self, now):
        """True while the key is neither revoked nor expired."""
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)
