"""Plans: how many requests a key may make per hour and per minute in each API family, and which
models it may use. Plain data parsed from config and per-user overrides; no Flask here."""

import fnmatch
import logging
from dataclasses import dataclass, field, replace
from types import MappingProxyType

log = logging.getLogger(__name__)

# The keys a plan table (and a user's overrides) may hold.
PER_HOUR, PER_MINUTE, MODELS = "requests_per_hour", "requests_per_minute", "models"
FIELDS = (PER_HOUR, PER_MINUTE, MODELS)

DEFAULT_PLANS = {
    "free": {PER_HOUR: 200, PER_MINUTE: {"chat": 10, "images": 5, "embeddings": 20}},
    "standard": {PER_MINUTE: {"chat": 60, "images": 20, "embeddings": 120}},
    "pro": {PER_HOUR: 2000, PER_MINUTE: {"chat": 300, "images": 60, "embeddings": 600}},
    "lifetime": {PER_HOUR: 2000, PER_MINUTE: {"chat": 300, "images": 60, "embeddings": 600}},
    "enterprise": {},  # limits set per user (flask users limits NAME ...)
}


@dataclass(frozen=True)
class Plan:
    """Limits that apply to one caller. None means no limit (or, for models, every model)."""

    name: str
    per_hour: int | None = None
    per_minute: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))  # family->n
    models: tuple[str, ...] | None = None  # glob patterns of client-facing model names
    key_models: tuple[str, ...] | None = None  # a key's own restriction, within the plan's

    def minute_limit(self, family: str) -> int | None:
        """Requests per minute allowed in an API family (chat, images, ...), None for no limit."""
        return self.per_minute.get(family)

    def allows(self, model: str) -> bool:
        """True when the plan lets the caller use this model."""
        return _matches(model, self.models) and _matches(model, self.key_models)

    def restricted_to(self, models) -> "Plan":
        """This plan, narrowed to the models a key is restricted to."""
        return replace(self, key_models=tuple(models))

    def describe(self) -> str:
        """One line for operators: 'pro: 2000/hour, chat 300/min, images 60/min, all models'."""
        parts = [f"{self.per_hour}/hour" if self.per_hour else "no hourly limit"]
        parts += [f"{family} {n}/min" if n else f"{family} unlimited"
                  for family, n in sorted(self.per_minute.items())]
        parts.append("all models" if self.models is None else "models " + ", ".join(self.models))
        return f"{self.name}: " + ", ".join(parts)


UNLIMITED = Plan("unlimited")


def _matches(model: str, patterns: tuple[str, ...] | None) -> bool:
    return patterns is None or any(fnmatch.fnmatchcase(model, p) for p in patterns)


def build_plan(name: str, table: dict, base: Plan | None = None) -> Plan:
    """A Plan from a config table; with `base`, the table only overrides what it names.
    A limit given as None (null) is explicitly unlimited."""
    unknown = set(table) - set(FIELDS)
    if unknown:
        raise ValueError(f"plan {name}: unknown setting(s) {sorted(unknown)}; use {FIELDS}")
    base = base or Plan(name)
    per_hour = _limit(name, PER_HOUR, table[PER_HOUR]) if PER_HOUR in table else base.per_hour
    per_minute = dict(base.per_minute)
    minute_table = table.get(PER_MINUTE) or {}
    if not isinstance(minute_table, dict):
        raise ValueError(f"plan {name}: {PER_MINUTE} must be a table of family = number")
    for family, value in minute_table.items():
        per_minute[family] = _limit(name, f"{PER_MINUTE}.{family}", value)
    models = _models(name, table[MODELS]) if MODELS in table else base.models
    return Plan(name, per_hour, MappingProxyType(per_minute), models)


def parse_plans(table: dict) -> dict[str, Plan]:
    """Every plan: the built-in defaults, each replaced whole by a config table of the same name."""
    merged = {**DEFAULT_PLANS, **(table or {})}
    return {name: build_plan(name, spec or {}) for name, spec in merged.items()}


class PlanBook:
    """The configured plans and the default one; resolves a user's effective plan."""

    def __init__(self, table: dict, default: str):
        self.plans = parse_plans(table)
        if default not in self.plans:
            raise ValueError(f"DEFAULT_PLAN {default!r} is not one of {sorted(self.plans)}")
        self.default = default

    def for_user(self, plan_name: str | None, overrides: dict | None) -> Plan:
        """The plan a user is on, with the user's own overrides applied."""
        plan = self.plans.get(plan_name or self.default)
        if plan is None:
            log.warning("user plan %r is not configured; using %r", plan_name, self.default)
            plan = self.plans[self.default]
        return build_plan(plan.name, overrides, base=plan) if overrides else plan


def _limit(plan: str, field: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"plan {plan}: {field} must be a whole number >= 1 (or unset)")
    return value


def _models(plan: str, value) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list | tuple) or not all(isinstance(m, str) and m for m in value):
        raise ValueError(f"plan {plan}: {MODELS} must be a list of model names or patterns")
    return tuple(value)
