from sqlalchemy import JSON, Boolean, DateTime, Integer, String, false
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
    # People who sign up log in with their email (kept in `name`) and a password; only the
    # password's argon2 hash is stored. Users made by the CLI have none until one is set.
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # A disabled user cannot log in, and its keys stop working within KEY_CACHE_TTL.
    disabled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
