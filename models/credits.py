"""Credits: balances, open holds, the usage ledger and grants. Amounts are exact Decimals."""

from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    TypeDecorator,
)
from sqlalchemy.orm import Mapped, mapped_column

from extensions import db
from models.base import utcnow

MICRO = Decimal("0.000001")


class Credits(TypeDecorator):
    """An exact amount of credits with six decimals.

    NUMERIC(20, 6) on PostgreSQL. SQLite has no exact decimal arithmetic (NUMERIC values become
    floats there), so on SQLite the amount is stored as an integer count of micro-credits; sums
    and `balance - hold` updates stay exact in SQL on both.
    """

    impl = Numeric(20, 6)
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, 6, asdecimal=True))

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        value = Decimal(value).quantize(MICRO)
        return int(value / MICRO) if dialect.name == "sqlite" else value

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) * MICRO).quantize(MICRO)
        return Decimal(value).quantize(MICRO)


class Account(db.Model):
    """A user's balance and the total ever credited to it (`credited`, shown as `amount`)."""

    __tablename__ = "accounts"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    balance: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))
    credited: Mapped[Decimal] = mapped_column(Credits, default=Decimal(0))


class Hold(db.Model):
    """Credits set aside for a request in flight; settled or released when it ends."""

    __tablename__ = "holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Credits)
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow, index=True)


class UsageRecord(db.Model):
    """One charge: exactly one row per billed request. Narrow on purpose: no payloads."""

    __tablename__ = "usage_records"
    __table_args__ = (Index("ix_usage_user_id_id", "user_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"),
                                    primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    key_id: Mapped[int] = mapped_column(Integer, index=True)
    model: Mapped[str] = mapped_column(String(256))
    # the provider that served it (its configured name; "" for records made before this column)
    provider: Mapped[str] = mapped_column(String(64), default="", server_default="")
    input_tokens: Mapped[int] = mapped_column(Integer, default=0)  # excludes cached tokens
    cache_read_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cache_write_tokens: Mapped[int] = mapped_column(Integer, default=0)
    output_tokens: Mapped[int] = mapped_column(Integer, default=0)
    images: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # images made
    price: Mapped[Decimal] = mapped_column(Credits)
    estimated: Mapped[bool] = mapped_column(Boolean, default=False)  # we counted, not upstream
    partial: Mapped[bool] = mapped_column(Boolean, default=False)  # the stream was cut short
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
    # the request's id (its x-request-id): at most one record per request, however often its
    # settlement is retried
    request_id: Mapped[str | None] = mapped_column(String(64), unique=True, nullable=True)


class Grant(db.Model):
    """Credits added by an operator, with the reason given."""

    __tablename__ = "grants"
    __table_args__ = (Index("ux_grants_user_idempotency", "user_id", "idempotency_key",
                            unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    amount: Mapped[Decimal] = mapped_column(Credits)
    reason: Mapped[str] = mapped_column(String(500), default="")
    created_at: Mapped[object] = mapped_column(DateTime, default=utcnow)
    # Set by callers that may retry (the admin API): one grant per user and key, ever.
    idempotency_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
