"""The admin pages: users (plan, balance, status; grant credits, change plan, disable and
enable) and providers (models, and whether they answered their last requests)."""

import secrets

from flask import (
    current_app,
    flash,
    g,
    get_flashed_messages,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import func, or_, select

from edge.pages import admin_required, page_blueprint
from errors import InvalidRequest
from extensions import db
from models import Account, ApiKey, User
from services import accounts, text

bp = page_blueprint("admin", __name__, url_prefix="/admin")
PAGE = 50


@bp.get("")
@admin_required
def home():
    search = text.clean(request.args.get("q"), field="q", max_length=120)
    page = max(request.args.get("page", 1, type=int) or 1, 1)
    return render_template("admin/home.html", users=_users(search, page), search=search,
                           page=page, plans=_plans(), default_plan=_plans().default,
                           providers=_providers(), messages=get_flashed_messages())


@bp.post("/users/<int:user_id>/credits")
@admin_required
def grant(user_id):
    user = accounts.get_user(db.session, user_id)
    amount = accounts.parse_amount(request.form.get("amount", ""))
    reason = text.clean(request.form.get("reason"), field="reason", max_length=500)
    # The form carries a one-time key, so a double-submitted form grants once.
    key = text.clean(request.form.get("idempotency_key") or secrets.token_hex(16),
                     field="idempotency_key", max_length=128)
    accounts.grant_once(db.session, user.id, amount, reason or f"granted by {g.user.name}", key)
    return _done(f"Granted {amount} credits to {user.name}.")


@bp.post("/users/<int:user_id>/plan")
@admin_required
def plan(user_id):
    user = accounts.get_user(db.session, user_id)
    accounts.set_plan(db.session, user, request.form.get("plan", ""), _plans())
    current_app.extensions["keys"].forget()
    return _done(f"{user.name} is now on plan {user.plan}.")


@bp.post("/users/<int:user_id>/status")
@admin_required
def status(user_id):
    user = accounts.get_user(db.session, user_id)
    wanted = request.form.get("disabled")
    if wanted not in ("true", "false"):
        raise InvalidRequest("'disabled' must be true or false", param="disabled")
    if user.id == g.user.id and wanted == "true":
        raise InvalidRequest("You cannot disable your own account.", param="disabled")
    accounts.set_disabled(db.session, user, wanted == "true")
    current_app.extensions["keys"].forget()
    return _done(f"{user.name} is {'disabled' if user.disabled else 'enabled'}.")


def _done(message):
    flash(message)  # kept in the session, not the URL: a link cannot put words on this page
    return redirect(url_for("admin.home", q=request.args.get("q") or None), 303)


def _plans():
    return current_app.extensions["keys"].plans


def _users(search: str, page: int):
    keys = (select(ApiKey.user_id, func.count(ApiKey.id).label("key_count"))
            .where(ApiKey.revoked_at.is_(None)).group_by(ApiKey.user_id).subquery())
    query = (select(User, Account.balance, Account.credited, keys.c.key_count)
             .outerjoin(Account, Account.user_id == User.id)
             .outerjoin(keys, keys.c.user_id == User.id).order_by(User.id))
    if search:
        escaped = search.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(or_(User.name.ilike(f"%{escaped}%", escape="\\")))
    return db.session.execute(query.limit(PAGE + 1).offset((page - 1) * PAGE)).all()


def _providers():
    health = current_app.extensions["provider_health"]
    rows = []
    for name, provider in current_app.extensions["relay"].registry.providers.items():
        up = provider.upstream
        recent = health.recent(name)
        rows.append({"name": name, "type": up.type, "base_url": up.base_url,
                     "models": sorted(up.models) + list(up.patterns), "recent": recent[:10],
                     "answered": sum(o.answered for o in recent), "calls": len(recent),
                     "last": recent[0] if recent else None})
    return rows
