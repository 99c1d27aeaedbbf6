"""The balance API: GET /api/v1/credits (also /v1/credits), with the usage ledger on request."""

from datetime import UTC

from flask import Blueprint, current_app, g, jsonify, request

from edge.views import authenticate
from errors import InvalidRequest
from services.billing import balance, usage_page

bp = Blueprint("credits", __name__)
MAX_PAGE = 100


@bp.before_request
def require_key():
    authenticate()


@bp.get("/api/v1/credits")
@bp.get("/v1/credits")
def get_credits():
    include_usage = _flag("include_usage")
    size = _int_arg("pageSize", default=20, low=1, high=MAX_PAGE)
    before = _int_arg("nextId", default=None, low=1, high=2**63 - 1)
    session = current_app.extensions["billing"].session_factory()
    with session:
        bal, credited = balance(session, g.caller.user_id)
        data = {"balance": float(bal), "amount": float(credited)}
        if include_usage:
            rows, next_id = usage_page(session, g.caller.user_id, size, before)
            data["usage"] = {"pageSize": size, "nextId": "" if next_id is None else str(next_id),
                             "list": [record_json(r) for r in rows]}
    return jsonify(data=data)


def record_json(row) -> dict:
    """A usage record as the credits API (and the console) show it."""
    return {"id": row.id, "model": row.model, "provider": row.provider,
            "tokens": row.input_tokens + row.cache_read_tokens + row.cache_write_tokens
            + row.output_tokens,
            "input_tokens": row.input_tokens + row.cache_read_tokens + row.cache_write_tokens,
            "output_tokens": row.output_tokens, "cache_hit_tokens": row.cache_read_tokens,
            "cache_creation_tokens": row.cache_write_tokens, "images": row.images,
            "price": float(row.price),
            "estimated": row.estimated, "partial": row.partial,
            "create_time": int(row.created_at.replace(tzinfo=UTC).timestamp() * 1000)}


def _flag(name) -> bool:
    value = request.args.get(name, "false").lower()
    if value not in ("true", "false", "1", "0"):
        raise InvalidRequest(f"'{name}' must be true or false", param=name)
    return value in ("true", "1")


def _int_arg(name, *, default, low, high):
    raw = request.args.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidRequest(f"'{name}' must be a whole number from {low} to {high}", param=name)
    return int(raw)
