from sqlalchemy import JSON, DateTime, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import utcnow


class User(db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
    plan: Mapped[str | None] = mapped_column(String(64), nullable=True)  # None: DEFAULT_PLAN
    # This user's own limits over the plan's: {"requests_per_hour": 5000, "models": [...]};
    # a key set to null means unlimited (or every model), a missing key keeps the plan's value.
    plan_overrides: Mapped[dict | None] = mapped_column(JSON, nullable=True)
