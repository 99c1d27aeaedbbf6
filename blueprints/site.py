"""Public pages: the landing page, the docs with this server's own base URLs, and pricing."""

from flask import current_app, g, render_template, request
from sqlalchemy import select

from edge.pages import page_blueprint
from extensions import db
from models import ApiKey

bp = page_blueprint("site", __name__)


@bp.get("/")
def landing():
    return render_template("landing.html", models=_models()[:8],
                           allow_signup=current_app.config["ALLOW_SIGNUP"])


@bp.get("/docs")
def docs():
    root = request.url_root.rstrip("/")
    key = "tg-YOUR-KEY"
    if g.user is not None:
        hint = db.session.scalar(select(ApiKey.hint).where(
            ApiKey.user_id == g.user.id, ApiKey.revoked_at.is_(None))
            .order_by(ApiKey.id.desc()).limit(1))
        key = hint.replace("…", "...") if hint else key
    models = _models()
    return render_template("docs.html", root=root, key=key, openai_routes=_openai_routes(),
                           model=models[0][0] if models else "gpt-4.1-mini")


@bp.get("/pricing")
def pricing():
    book = current_app.extensions["keys"].plans
    prices = current_app.extensions["billing"].pricing
    models = [(name, owner, prices.for_model(name)) for name, owner in _models()]
    draws = current_app.extensions["relay"].registry.image_models()
    image_models = [m for m in models if m[0] in draws]
    models = [m for m in models if "text" in draws.get(m[0], ("text",))]
    plans = sorted(book.plans.values(), key=lambda p: (p.per_hour is None, p.per_hour or 0))
    families = sorted({f for p in plans for f in p.per_minute})
    return render_template("pricing.html", models=models, image_models=image_models,
                           plans=plans, families=families,
                           default_plan=book.default, default_price=prices.default,
                           signup_credits=current_app.config["SIGNUP_CREDITS"])


def _openai_routes() -> list[str]:
    """Every OpenAI-style endpoint this server has under /v1 (whatever blueprints added them)."""
    found = set()
    for rule in current_app.url_map.iter_rules():
        family = rule.endpoint.split(".")[0]
        if (rule.rule.startswith("/v1/") and not family.startswith(("anthropic", "gemini"))
                and "credits" not in rule.rule):
            path = rule.rule.replace("<path:", "{").replace("<", "{").replace(">", "}")
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                found.add((path, method))
    return [f"{method} {path}" for path, method in sorted(found)]


def _models():
    return current_app.extensions["relay"].registry.models()
