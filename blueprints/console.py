"""The console: balance and spend, API keys, the usage ledger and its CSV export."""

import csv
import io
from datetime import UTC, date, datetime, timedelta

from flask import Response, current_app, g, jsonify, redirect, render_template, request, url_for
from sqlalchemy import select

from edge.chart import stacked_bars
from edge.pages import login_required, page_blueprint
from errors import InvalidRequest
from extensions import db
from models import ApiKey, utcnow
from services import accounts, text, usage
from services.billing import balance
from services.keys import create_key
from services.usage import PLAYGROUND_KEY, UsageFilter

bp = page_blueprint("console", __name__, url_prefix="/console")
PAGE, CONSOLE_PAGE = 50, 10
EXPIRY_CHOICES = (("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"),
                  ("365", "1 year"))


@bp.get("")
@login_required
def home():
    user = g.user
    bal, credited = balance(db.session, user.id)
    chart = usage.daily_spend(db.session, user.id, datetime.now(UTC).date())
    rows, next_id = usage.page(db.session, user.id, UsageFilter(), CONSOLE_PAGE,
                               _cursor())
    spent_30 = sum(chart.totals)
    return render_template("console/home.html", balance=bal, credited=credited,
                           chart=stacked_bars(chart), spent_30=spent_30, rows=rows,
                           next_id=next_id, key_names=_key_names(), cursor=_cursor(),
                           plan=_plan())


@bp.get("/api/balance")
@login_required
def balance_json():
    bal, credited = balance(db.session, g.user.id)
    return jsonify(data={"balance": float(bal), "amount": float(credited)})


@bp.get("/keys")
@login_required
def keys():
    return _keys_page()


@bp.post("/keys")
@login_required
def create():
    form = request.form
    try:
        name = text.clean(form.get("name"), field="name", max_length=120)
        models = text.model_patterns(form.get("models", ""))
        expires = _expiry(form.get("expires", ""))
    except InvalidRequest as err:
        return _keys_page(error=err.message, status=400)
    row, plaintext = create_key(db.session, g.user, name=name, expires_at=expires,
                                models=models or None)
    response = _keys_page(new_key=plaintext, new_row=row, status=201)
    response.headers["Cache-Control"] = "no-store"  # the key is shown this once
    return response


@bp.post("/keys/<int:key_id>/revoke")
@login_required
def revoke(key_id):
    accounts.revoke_user_key(db.session, g.user.id, key_id)
    current_app.extensions["keys"].forget()  # this worker at once; others within the TTL
    return redirect(url_for("console.keys", revoked=key_id), 303)


@bp.get("/keys/<int:key_id>")
@login_required
def key_detail(key_id):
    row = accounts.user_key(db.session, g.user.id, key_id)
    where = UsageFilter(key_id=row.id)
    rows, next_id = usage.page(db.session, g.user.id, where, PAGE, _cursor())
    count, spent = usage.totals(db.session, g.user.id, where)
    return render_template("console/key.html", key=row, rows=rows, next_id=next_id,
                           count=count, spent=spent, now=utcnow(),
                           last_used=usage.last_used(db.session, g.user.id).get(row.id))


@bp.get("/usage")
@login_required
def usage_page():
    where = _filter()
    rows, next_id = usage.page(db.session, g.user.id, where, PAGE, _cursor())
    count, spent = usage.totals(db.session, g.user.id, where)
    query = {k: v for k, v in request.args.items() if k != "nextId" and v}
    return render_template("console/usage.html", rows=rows, next_id=next_id, count=count,
                           spent=spent, where=where, query=query, key_names=_key_names(),
                           models=usage.models_used(db.session, g.user.id),
                           keys=_keys(), cursor=_cursor())


@bp.get("/usage.csv")
@login_required
def usage_csv():
    where, user_id = _filter(), g.user.id
    names = _key_names()
    factory = current_app.extensions["billing"].session_factory

    def lines():
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        with factory() as session:  # its own session: the response outlives the request
            for row in usage.every_record(session, user_id, where):
                writer.writerow(_csv_row(row, names))
                if buffer.tell() > 32_768:
                    yield buffer.getvalue()
                    buffer.seek(0)
                    buffer.truncate()
        yield buffer.getvalue()

    stamp = datetime.now(UTC).strftime("%Y%m%d")
    return Response(lines(), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="tollgate-usage-{stamp}.csv"'})


@bp.get("/usage/<int:record_id>")
@login_required
def record(record_id):
    row = accounts.user_record(db.session, g.user.id, record_id)
    return render_template("console/record.html", row=row, key_names=_key_names())


CSV_COLUMNS = ("id", "time_utc", "key", "model", "input_tokens", "cache_read_tokens",
               "cache_write_tokens", "output_tokens", "credits", "estimated", "partial", "images")


def _csv_row(row, names) -> list:
    return [row.id, row.created_at.isoformat(timespec="seconds"),
            _csv_safe(names.get(row.key_id, f"key {row.key_id}")), _csv_safe(row.model),
            row.input_tokens, row.cache_read_tokens, row.cache_write_tokens,
            row.output_tokens, f"{row.price:f}", row.estimated, row.partial, row.images]


def _csv_safe(value: str) -> str:
    """Cells a spreadsheet would run as a formula are quoted with a leading apostrophe."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _keys_page(*, error=None, new_key=None, new_row=None, status=200):
    rows = _keys()
    page = render_template("console/keys.html", keys=rows, error=error, new_key=new_key,
                           new_row=new_row, now=utcnow(), choices=EXPIRY_CHOICES,
                           last_used=usage.last_used(db.session, g.user.id),
                           revoked=request.args.get("revoked", type=int),
                           form=request.form if error else {})
    return current_app.make_response((page, status))


def _keys():
    return db.session.scalars(select(ApiKey).where(ApiKey.user_id == g.user.id)
                              .order_by(ApiKey.revoked_at.is_not(None), ApiKey.id.desc())).all()


def _key_names() -> dict[int, str]:
    names = {row.id: row.name or row.hint for row in _keys()}
    names[PLAYGROUND_KEY] = "Playground"
    return names


def _plan():
    return current_app.extensions["keys"].plans.for_user(g.user.plan, g.user.plan_overrides)


def _expiry(days: str):
    if not days:
        return None
    if days not in {value for value, _ in EXPIRY_CHOICES}:
        raise InvalidRequest("Pick an expiry from the list.", param="expires")
    return utcnow() + timedelta(days=int(days))


def _cursor() -> int | None:
    raw = request.args.get("nextId", "")
    if not raw:
        return None
    if not raw.isdigit() or not 1 <= int(raw) < 2**63:
        raise InvalidRequest("'nextId' must be a positive whole number", param="nextId")
    return int(raw)


def _filter() -> UsageFilter:
    args = request.args
    model = text.clean(args.get("model"), field="model", max_length=256) or None
    key = args.get("key", "")
    key_id = None
    if key:
        if not key.isdigit() or int(key) >= 2**31:
            raise InvalidRequest("'key' must be a key id", param="key")
        key_id = int(key)
        if key_id != PLAYGROUND_KEY:
            accounts.user_key(db.session, g.user.id, key_id)  # 404 for another user's key
    return UsageFilter(model=model, start=_date("from"), end=_date("to"), key_id=key_id)


def _date(name) -> date | None:
    raw = request.args.get(name, "")
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        raise InvalidRequest(f"'{name}' must be a date like 2026-01-31", param=name) from None
