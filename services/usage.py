"""The usage ledger as people look at it: filtered pages, spend per day and model, CSV rows,
when each key was last used. Read-only queries over usage_records."""

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select, type_coerce

from models import UsageRecord
from models.credits import Credits

PLAYGROUND_KEY = 0  # usage made in the playground on a logged-in user's behalf
CHART_SERIES = 6  # models shown apart in the chart; the rest are added up as "other"


@dataclass(frozen=True)
class UsageFilter:
    """What the usage page narrows the ledger to; every field optional."""

    model: str | None = None
    start: date | None = None  # inclusive, UTC
    end: date | None = None  # inclusive, UTC
    key_id: int | None = None

    def apply(self, query, user_id: int):
        query = query.where(UsageRecord.user_id == user_id)
        if self.model:
            query = query.where(UsageRecord.model == self.model)
        if self.start:
            query = query.where(UsageRecord.created_at >= _midnight(self.start))
        if self.end:
            query = query.where(UsageRecord.created_at < _midnight(self.end + timedelta(days=1)))
        if self.key_id is not None:
            query = query.where(UsageRecord.key_id == self.key_id)
        return query


def page(session, user_id: int, where: UsageFilter, size: int, before_id: int | None):
    """Newest-first records below `before_id` (the credits API's cursor); (rows, next id)."""
    query = where.apply(select(UsageRecord), user_id)
    if before_id is not None:
        query = query.where(UsageRecord.id < before_id)
    rows = session.scalars(query.order_by(UsageRecord.id.desc()).limit(size + 1)).all()
    return rows[:size], (rows[size - 1].id if len(rows) > size else None)


def every_record(session, user_id: int, where: UsageFilter, batch: int = 1000):
    """All matching records, newest first, fetched in keyset batches (for CSV export)."""
    before = None
    while True:
        rows, before = page(session, user_id, where, batch, before)
        yield from rows
        if before is None:
            return


def totals(session, user_id: int, where: UsageFilter) -> tuple[int, Decimal]:
    """(number of records, credits spent) matching the filter."""
    count, spent = session.execute(where.apply(
        select(func.count(UsageRecord.id),
               type_coerce(func.coalesce(func.sum(UsageRecord.price), 0), Credits)),
        user_id)).one()
    return count, spent


def models_used(session, user_id: int) -> list[str]:
    return list(session.scalars(select(UsageRecord.model).where(UsageRecord.user_id == user_id)
                                .group_by(UsageRecord.model).order_by(UsageRecord.model)))


def last_used(session, user_id: int) -> dict[int, datetime]:
    """key id -> time of its newest billed request (nothing is written per request for this)."""
    rows = session.execute(select(UsageRecord.key_id, func.max(UsageRecord.created_at))
                           .where(UsageRecord.user_id == user_id)
                           .group_by(UsageRecord.key_id))
    return {key_id: _as_datetime(at) for key_id, at in rows}


@dataclass
class SpendChart:
    days: list[date]
    series: list[tuple[str, list[Decimal]]]  # (model, credits per day), biggest first

    @property
    def totals(self) -> list[Decimal]:
        return [sum(values, Decimal(0)) for values in zip(*(s for _, s in self.series),
                                                          strict=True)] or [
            Decimal(0)] * len(self.days)


def daily_spend(session, user_id: int, today: date, days: int = 30) -> SpendChart:
    """Credits spent per UTC day and model over the last `days` days, today included."""
    first = today - timedelta(days=days - 1)
    day = func.date(UsageRecord.created_at)
    rows = session.execute(
        select(day, UsageRecord.model,
               type_coerce(func.coalesce(func.sum(UsageRecord.price), 0), Credits))
        .where(UsageRecord.user_id == user_id, UsageRecord.created_at >= _midnight(first))
        .group_by(day, UsageRecord.model))
    spent: dict[str, dict[date, Decimal]] = defaultdict(dict)
    for when, model, amount in rows:
        spent[model][_as_date(when)] = amount
    dates = [first + timedelta(days=i) for i in range(days)]
    ranked = sorted(spent, key=lambda m: (-sum(spent[m].values()), m))
    series = [(m, [spent[m].get(d, Decimal(0)) for d in dates]) for m in ranked[:CHART_SERIES]]
    rest = ranked[CHART_SERIES:]
    if rest:
        series.append(("other", [sum((spent[m].get(d, Decimal(0)) for m in rest), Decimal(0))
                                 for d in dates]))
    return SpendChart(dates, series)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day)


def _as_date(value) -> date:
    """func.date() gives a string on SQLite and a date on PostgreSQL."""
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def _as_datetime(value) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
