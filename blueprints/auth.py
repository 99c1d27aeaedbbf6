"""Sign-up, log-in and log-out for people (the API uses keys, never these sessions)."""

from decimal import Decimal

from flask import current_app, g, redirect, render_template, request, session

from edge.pages import SESSION_TOKEN, page_blueprint, safe_next, subjects
from errors import InvalidRequest, RateLimited
from extensions import db
from services import accounts, text
from services.accounts import Conflict

bp = page_blueprint("auth", __name__)


@bp.get("/signup")
def signup():
    if g.user is not None:
        return redirect("/console")
    return _signup_page()


@bp.post("/signup")
def signup_post():
    config = current_app.config
    if not config["ALLOW_SIGNUP"]:
        return _signup_page("Sign-up is closed on this gateway; ask its operator for an "
                            "account.", 403)
    form = request.form
    throttle = current_app.extensions["signup_throttle"]
    address = subjects("")[0]
    try:
        email = text.email(form.get("email"))
        accounts.check_password(form.get("password"))
        throttle.check(address)
        user = accounts.create_user(
            db.session, email, password=form["password"],
            credits=Decimal(str(config["SIGNUP_CREDITS"])), reason="sign-up credits")
    except Conflict:
        return _signup_page("An account with this email exists already; log in instead.", 409)
    except (InvalidRequest, RateLimited) as err:
        return _signup_page(err.message, err.status)
    throttle.hit(address)
    _log_in(user)
    return redirect("/console", 303)


@bp.get("/login")
def login():
    if g.user is not None:
        return redirect(safe_next(request.args.get("next")))
    return _login_page()


@bp.post("/login")
def login_post():
    form = request.form
    raw_email = form.get("email", "")
    try:
        email = text.clean(raw_email, field="email", max_length=120, required=True).lower()
    except InvalidRequest as err:
        return _login_page(err.message, 400)
    throttle = current_app.extensions["login_throttle"]
    who = subjects(email)
    try:
        throttle.check(*who)
    except RateLimited as err:
        return _login_page(err.message, 429, err.headers)
    password = form.get("password", "")
    user = accounts.verify_login(db.session, email, password[:accounts.MAX_PASSWORD])
    if user is None:
        throttle.hit(*who)
        return _login_page("Wrong email or password.", 401)
    if user.disabled:
        return _login_page("This account is disabled; contact the gateway's operator.", 403)
    _log_in(user)
    return redirect(safe_next(form.get("next")), 303)


@bp.get("/logout")
def logout():
    if g.user is None:
        return redirect("/")
    return render_template("logout.html")


@bp.post("/logout")
def logout_post():
    accounts.end_session(db.session, session.get(SESSION_TOKEN))
    session.clear()
    return redirect("/", 303)


def _log_in(user):
    """A fresh session (never one the browser had before: no fixation), lasting
    SESSION_LIFETIME seconds."""
    session.clear()
    session.permanent = True
    session[SESSION_TOKEN] = accounts.start_session(db.session, user,
                                                    current_app.config["SESSION_LIFETIME"])


def _signup_page(error=None, status=200):
    return render_template("signup.html", error=error,
                           allow_signup=current_app.config["ALLOW_SIGNUP"],
                           email=request.form.get("email", "")), status


def _login_page(error=None, status=200, headers=None):
    return (render_template("login.html", error=error, email=request.form.get("email", ""),
                            next=request.values.get("next", "")), status, headers or {})


