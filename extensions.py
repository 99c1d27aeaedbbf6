"""Extensions, created unbound and attached in create_app."""

from flask import g
from flask_limiter import Limiter
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect


def caller_key() -> str:
    """Request limits count per API key (g.caller, set by authenticate()), never per address."""
    caller = g.get("caller")
    return caller.rate_key if caller is not None else ""


db = SQLAlchemy()
migrate = Migrate()  # `flask db upgrade`; migrations/ holds the revisions
# Everything that must not differ between apps is fixed here: flask-limiter keeps these across
# init_app calls. Per-app settings are only RATELIMIT_STORAGE_URI and RATELIMIT_STORAGE_OPTIONS.
# Headers are ours (blueprints/ratelimit.py); storage errors are handled by our policy.
limiter = Limiter(key_func=caller_key, strategy="moving-window", headers_enabled=False,
                  swallow_errors=False)
# CSRF tokens for the browser pages (forms and the console's fetch calls). The key-authenticated
# JSON APIs need none: WTF_CSRF_CHECK_DEFAULT is off and the cookie-authenticated blueprints
# call csrf.protect() themselves (edge/pages.py).
csrf = CSRFProtect()
