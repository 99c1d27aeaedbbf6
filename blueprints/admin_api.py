"""The admin API, for operators who automate: users, credit top-ups (idempotent), keys, plans.
Authenticated with an admin's API key; JSON in and out; errors in the OpenAI envelope (the
app-wide handler in edge/errors.py)."""

from datetime import UTC, timedelta

from flask import Blueprint, current_app, jsonify, request
from sqlalchemy import select

from edge.pages import require_admin_caller
from edge.views import authenticate, json_body
from errors import InvalidRequest, NotFound
from extensions import db
from models import ApiKey, Grant, User, utcnow
from services import accounts, text
from services.billing import balance
from services.keys import create_key, revoke_key

bp = Blueprint("admin_api", __name__, url_prefix="/admin/api")


@bp.before_request
def require_admin_key():
    authenticate()
    require_admin_caller()


@bp.post("/users")
def create_user():
    body = json_body()
    email = body.get("email", body.get("name"))
    name = (text.email(email) if "@" in str(email or "") else
            text.clean(email, field="email", max_length=120, required=True))
    plan = body.get("plan")
    if plan is not None and (not isinstance(plan, str)
                             or plan not in current_app.extensions["keys"].plans.plans):
        raise InvalidRequest(f"No plan {str(plan)[:64]!r}.", param="plan")
    credits = accounts.parse_amount(body["credits"], field="credits") if body.get(
        "credits") is not None else 0
    if credits < 0:
        raise InvalidRequest("'credits' cannot be negative", param="credits")
    user = accounts.create_user(db.session, name, password=body.get("password") or None,
                                plan=plan, credits=credits, admin=_flag(body, "admin"),
                                reason="granted at creation")
    return jsonify(_user(user)), 201


@bp.get("/users")
def list_users():
    after = request.args.get("after", 0, type=int)
    users = db.session.scalars(select(User).where(User.id > after).order_by(User.id)
                               .limit(100)).all()
    return jsonify(object="list", data=[_user(u, keys=False) for u in users])


@bp.get("/users/<int:user_id>")
def get_user(user_id):
    return jsonify(_user(accounts.get_user(db.session, user_id)))


@bp.patch("/users/<int:user_id>")
def update_user(user_id):
    user = accounts.get_user(db.session, user_id)
    body = json_body()
    unknown = set(body) - {"plan", "disabled", "admin"}
    if unknown:
        raise InvalidRequest(f"Unknown field {sorted(unknown)[0]!r}.", param=sorted(unknown)[0])
    if "plan" in body:
        accounts.set_plan(db.session, user, body["plan"], current_app.extensions["keys"].plans)
    if "disabled" in body:
        accounts.set_disabled(db.session, user, _flag(body, "disabled"))
    if "admin" in body:
        accounts.set_admin(db.session, user, _flag(body, "admin"))
    current_app.extensions["keys"].forget()  # this worker at once; others within the TTL
    return jsonify(_user(user))


@bp.post("/users/<int:user_id>/credits")
def grant_credits(user_id):
    user = accounts.get_user(db.session, user_id)
    body = json_body()
    amount = accounts.parse_amount(body.get("amount"))
    reason = text.clean(body.get("reason"), field="reason", max_length=500)
    key = request.headers.get("Idempotency-Key") or body.get("idempotency_key")
    key = text.clean(key, field="idempotency_key", max_length=128, required=True)
    row, replayed = accounts.grant_once(db.session, user.id, amount, reason, key)
    bal, credited = balance(db.session, user.id)
    response = jsonify(grant=_grant(row), balance=float(bal), amount=float(credited),
                       replayed=replayed)
    response.status_code = 200 if replayed else 201
    response.headers["Idempotent-Replayed"] = "true" if replayed else "false"
    return response


@bp.post("/users/<int:user_id>/keys")
def create_user_key(user_id):
    user = accounts.get_user(db.session, user_id)
    body = json_body()
    name = text.clean(body.get("name"), field="name", max_length=120)
    models = text.model_patterns(body.get("models") or [])
    days = body.get("expires_in_days")
    if days is not None and (isinstance(days, bool) or not isinstance(days, int)
                             or not 1 <= days <= 36500):
        raise InvalidRequest("'expires_in_days' must be a whole number from 1 to 36500",
                             param="expires_in_days")
    expires = utcnow() + timedelta(days=days) if days else None
    row, plaintext = create_key(db.session, user, name=name, expires_at=expires,
                                models=models or None)
    return jsonify({**_key(row), "key": plaintext}), 201


@bp.delete("/keys/<int:key_id>")
def delete_key(key_id):
    row = db.session.get(ApiKey, key_id) if 0 < key_id < 2**31 else None
    if row is None:
        raise NotFound(f"No key with id {key_id}.", code="key_not_found")
    revoke_key(db.session, key_id)
    current_app.extensions["keys"].forget()
    return jsonify({**_key(row), "deleted": True})


def _flag(body, name) -> bool:
    value = body.get(name, False)
    if not isinstance(value, bool):
        raise InvalidRequest(f"'{name}' must be true or false", param=name)
    return value


def _iso(value):
    return value.replace(tzinfo=UTC).isoformat() if value else None


def _user(user, keys=True) -> dict:
    bal, credited = balance(db.session, user.id)
    plans = current_app.extensions["keys"].plans
    data = {"id": user.id, "object": "user", "email": user.name, "plan": user.plan or plans.default,
            "disabled": user.disabled, "admin": user.is_admin, "balance": float(bal),
            "amount": float(credited), "created_at": _iso(user.created_at),
            "has_password": user.password_hash is not None}
    if keys:
        rows = db.session.scalars(select(ApiKey).where(ApiKey.user_id == user.id)
                                  .order_by(ApiKey.id)).all()
        data["keys"] = [_key(r) for r in rows]
    return data


def _key(row) -> dict:
    return {"id": row.id, "object": "api_key", "user_id": row.user_id, "name": row.name,
            "prefix": row.hint, "models": row.models, "created_at": _iso(row.created_at),
            "expires_at": _iso(row.expires_at), "revoked_at": _iso(row.revoked_at)}


def _grant(row: Grant) -> dict:
    return {"id": row.id, "user_id": row.user_id, "amount": float(row.amount),
            "reason": row.reason, "idempotency_key": row.idempotency_key,
            "created_at": _iso(row.created_at)}
