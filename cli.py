"""Operator commands: `flask users …`, `flask keys …`, `flask plans`, `flask providers`,
`flask responses sweep`, `flask images sweep`."""

from datetime import timedelta
from decimal import Decimal

import click
from flask import current_app
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import select

from errors import GatewayError
from extensions import db
from models import ApiKey, User, utcnow
from services import accounts, text
from services.billing import balance, grant, usage_page
from services.keys import create_key, revoke_key
from services.names import USER_NAME_MAX, text_problem
from services.plans import MODELS, PER_HOUR, PER_MINUTE

users = AppGroup("users", help="Manage users.")
keys = AppGroup("keys", help="Manage API keys.")
credits = AppGroup("credits", help="Grant credits and look at balances.")
responses = AppGroup("responses", help="Stored Responses API responses.")
images = AppGroup("images", help="Generated images the gateway stores.")


def register(app):
    app.cli.add_command(users)
    app.cli.add_command(keys)
    app.cli.add_command(credits)
    app.cli.add_command(providers)
    app.cli.add_command(plans)
    app.cli.add_command(first_key)
    app.cli.add_command(responses)
    app.cli.add_command(images)


def stored(value: str, what: str, max_length: int, allow_empty=False) -> str:
    """`value` if it can be stored or looked up (see services.names), else a clear error."""
    problem = text_problem(value, max_length, allow_empty=allow_empty)
    if problem:
        raise click.ClickException(f"invalid {what}: {problem}")
    return value


def find_user(name: str) -> User:
    stored(name, "user name", USER_NAME_MAX)
    user = db.session.scalar(select(User).where(User.name == name))
    if user is None:
        raise click.ClickException(f"no user named {name!r}")
    return user


@users.command("create")
@click.argument("name")
@click.option("--plan", help="The user's plan (default: DEFAULT_PLAN).")
@click.option("--admin", is_flag=True, help="May use /admin and the admin API.")
@click.option("--password", is_flag=True, help="Ask for a password to log in to the console.")
def users_create(name, plan, admin, password):
    """Create a user (NAME is also the log-in email for the console)."""
    if plan is not None:
        _known_plan(plan)
    secret = click.prompt("Password", hide_input=True, confirmation_prompt=True) if password \
        else None
    user = _service(accounts.create_user, db.session, _name(name), password=secret, plan=plan,
                    admin=admin)
    click.echo(f"created user {user.name} (id {user.id})")


@users.command("password")
@click.argument("name")
def users_password(name):
    """Set the password user NAME logs in to the console with."""
    user = find_user(name)
    secret = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    _service(accounts.set_password, db.session, user, secret)
    click.echo(f"password set for {user.name}")


@users.command("admin")
@click.argument("name")
@click.option("--off", is_flag=True, help="Take admin rights away instead.")
def users_admin(name, off):
    """Let user NAME use /admin and the admin API (within KEY_CACHE_TTL for keys)."""
    user = find_user(name)
    accounts.set_admin(db.session, user, not off)
    click.echo(f"{user.name} is {'no longer ' if off else ''}an admin")


@users.command("disable")
@click.argument("name")
@click.option("--enable", is_flag=True, help="Re-enable the user instead.")
def users_disable(name, enable):
    """Disable user NAME: no log-in, sessions ended, keys refused within KEY_CACHE_TTL."""
    user = find_user(name)
    accounts.set_disabled(db.session, user, not enable)
    click.echo(f"{user.name} is {'enabled' if enable else 'disabled'}")


@users.command("list")
def users_list():
    """List users."""
    default = current_app.extensions["keys"].plans.default
    for user in db.session.scalars(select(User).order_by(User.id)):
        custom = " (+overrides)" if user.plan_overrides else ""
        flags = "".join(f"\t{word}" for word, on in (("admin", user.is_admin),
                                                     ("disabled", user.disabled)) if on)
        click.echo(f"{user.id}\t{user.name}\t{user.plan or default}{custom}{flags}")


@users.command("plan")
@click.argument("name")
@click.argument("plan")
def users_plan(name, plan):
    """Put user NAME on PLAN (takes effect within KEY_CACHE_TTL seconds)."""
    user = find_user(name)
    _service(accounts.set_plan, db.session, user, plan, current_app.extensions["keys"].plans)
    click.echo(_effective(user))


@users.command("limits")
@click.argument("name")
@click.option("--per-hour", metavar="N|none|plan",
              help="Requests per hour in all families; none: unlimited; plan: the plan's.")
@click.option("--per-minute", metavar="FAMILY=N|none|plan", multiple=True,
              help="Requests per minute in one family (chat, images); repeatable.")
@click.option("--models", metavar="PATTERN", multiple=True,
              help="Allow only these models (globs like 'gpt-4o*'); repeatable.")
@click.option("--all-models", is_flag=True, help="Allow every model.")
@click.option("--plan-models", is_flag=True, help="Back to the plan's models.")
@click.option("--reset", is_flag=True, help="Drop every override first.")
def users_limits(name, per_hour, per_minute, models, all_models, plan_models, reset):
    """Set user NAME's own limits over its plan's."""
    user = find_user(name)
    overrides = {} if reset else dict(user.plan_overrides or {})
    if per_hour is not None:
        _override(overrides, PER_HOUR, per_hour)
    minute = dict(overrides.get(PER_MINUTE) or {})
    for item in per_minute:
        family, sep, value = item.partition("=")
        if not sep or not family:
            raise click.BadParameter(f"{item!r}: expected FAMILY=N", param_hint="--per-minute")
        _override(minute, family, value)
    overrides[PER_MINUTE] = minute
    if models or all_models or plan_models:
        overrides.pop(MODELS, None)
        if not plan_models:
            overrides[MODELS] = list(models) if models else None
    overrides = {k: v for k, v in overrides.items() if v != {}}
    try:
        current_app.extensions["keys"].plans.for_user(user.plan, overrides)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    user.plan_overrides = overrides or None
    db.session.commit()
    click.echo(_effective(user))


@users.command("show")
@click.argument("name")
def users_show(name):
    """Show user NAME's plan and effective limits."""
    click.echo(_effective(find_user(name)))


def _service(fn, *args, **kwargs):
    """Call a service; its error becomes the command's error message."""
    try:
        return fn(*args, **kwargs)
    except GatewayError as err:
        raise click.ClickException(err.message) from None


def _name(name: str) -> str:
    return _service(text.clean, name, field="name", max_length=120, required=True)


def _known_plan(plan: str) -> None:
    book = current_app.extensions["keys"].plans
    if plan not in book.plans:
        raise click.ClickException(f"no plan {plan!r}; plans: {', '.join(sorted(book.plans))}")


def _override(table: dict, key: str, value: str) -> None:
    """Set table[key] from a CLI word: a number, 'none' (unlimited) or 'plan' (inherit)."""
    if value == "plan":
        table.pop(key, None)
    elif value == "none":
        table[key] = None
    elif value.isdigit() and int(value) >= 1:
        table[key] = int(value)
    else:
        raise click.BadParameter(f"{value!r}: expected a number >= 1, 'none' or 'plan'")


def _effective(user: User) -> str:
    plan = current_app.extensions["keys"].plans.for_user(user.plan, user.plan_overrides)
    custom = f"\n  overrides: {user.plan_overrides}" if user.plan_overrides else ""
    return f"{user.name} is on plan {plan.describe()}{custom}"


@responses.command("sweep")
def responses_sweep():
    """Delete stored responses older than RESPONSES_RETENTION_DAYS."""
    gone = current_app.extensions["conversations"].sweep()
    click.echo(f"deleted {gone} stored responses older than "
               f"{current_app.config['RESPONSES_RETENTION_DAYS']} days")


@images.command("sweep")
def images_sweep():
    """Delete stored images older than IMAGE_RETENTION_DAYS (files and rows)."""
    gone = current_app.extensions["image_store"].sweep()
    click.echo(f"deleted {gone} stored images older than "
               f"{current_app.config['IMAGE_RETENTION_DAYS']} days")


@click.command("plans")
def plans():
    """Show the configured plans."""
    book = current_app.extensions["keys"].plans
    for name, plan in sorted(book.plans.items()):
        click.echo(plan.describe() + ("  [default]" if name == book.default else ""))


@keys.command("create")
@click.argument("user")
@click.option("--name", default="", help="A label to tell keys apart.")
@click.option("--expires-days", type=click.IntRange(min=1), help="Expire after this many days.")
@click.option("--models", metavar="PATTERN", multiple=True,
              help="Restrict the key to these models (names or globs); repeatable.")
def keys_create(user, name, expires_days, models):
    """Create a key for USER and print it (it is shown only this once)."""
    owner = find_user(user)
    expires = utcnow() + timedelta(days=expires_days) if expires_days else None
    name = _service(text.clean, name, field="name", max_length=120)
    models = _service(text.model_patterns, list(models)) or None
    row, plaintext = create_key(db.session, owner, name=name, expires_at=expires, models=models)
    click.echo(f"key id {row.id} for {owner.name}; store it now, it is not shown again:",
               err=True)
    click.echo(plaintext)


@keys.command("list")
@click.option("--user", help="Only this user's keys.")
def keys_list(user):
    """List keys (never the keys themselves: id, owner, label, hint, state)."""
    query = select(ApiKey, User.name).join(User).order_by(ApiKey.id)
    if user:
        query = query.where(User.name == stored(user, "user name", USER_NAME_MAX))
    now = utcnow()
    for key, owner in db.session.execute(query):
        state = ("revoked" if key.revoked_at else "expired" if not key.usable_at(now)
                 else "active")
        expires = key.expires_at.isoformat(timespec="seconds") if key.expires_at else "never"
        click.echo(f"{key.id}\t{owner}\t{key.name or '-'}\t{key.hint}\t{state}\texpires {expires}")


@keys.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id):
    """Revoke a key by id (takes effect everywhere within KEY_CACHE_TTL seconds)."""
    if not revoke_key(db.session, key_id):
        raise click.ClickException(f"no active key with id {key_id}")
    click.echo(f"revoked key {key_id}")


@click.command("providers")
@with_appcontext
def providers():
    """Show the configured providers and the models each serves."""
    registry = current_app.extensions["relay"].registry
    if not registry.providers:
        click.echo("no providers configured (see gateway.example.toml)")
    for name, provider in registry.providers.items():
        up = provider.upstream
        keys = ("key set: " + ", ".join(k.env for k in up.keys)) if up.keys else "no key"
        routing = f"priority {up.priority}" + (f", weight {up.weight:g}" if up.weight else "")
        click.echo(f"{name}\t{up.type}\t{' '.join(up.base_urls)}\t{keys}\t{routing}")
        for model, target in sorted(up.models.items()):
            click.echo(f"    {model}" + (f" -> {target}" if target != model else "")
                       + (" (embedding)" if model in up.embedding_models else "")
                       + (" (image)" if model in up.image_models else ""))
        for pattern in up.patterns:
            click.echo(f"    {pattern} (any matching name"
                       + (", embedding" if pattern in up.embedding_models else "")
                       + (", image" if pattern in up.image_models else "") + ")")


@click.command("first-key")
@click.option("--credits", "amount", default="1000", show_default=True,
              help="Credits granted to admin with the first key.")
@with_appcontext
def first_key(amount):
    """On a gateway with no keys yet, create user 'admin' (plan pro, with credits) and print
    a key."""
    if db.session.scalar(select(ApiKey.id).limit(1)) is not None:
        click.echo("Keys exist already; make another with: flask keys create USER", err=True)
        return
    owner = db.session.scalar(select(User).where(User.name == "admin")) or User(name="admin")
    owner.plan = owner.plan or "pro"  # the operator's own key: not held to the free plan
    owner.is_admin = True  # its key works with the admin API
    db.session.add(owner)
    db.session.commit()
    if Decimal(amount):
        grant(db.session, owner.id, Decimal(amount), "first key")
    row, plaintext = create_key(db.session, owner, name="first key")
    click.echo(f"First API key (user admin, key id {row.id}); it is shown only this once:")
    click.echo(f"\n    {plaintext}\n")


@credits.command("grant")
@click.argument("user")
@click.argument("amount")
@click.option("--reason", default="", help="Why, for the record (an invoice number, say).")
@click.option("--idempotency-key", help="Apply this grant once however often it is run.")
def credits_grant(user, amount, reason, idempotency_key):
    """Add AMOUNT credits to USER's balance (a negative amount takes them back)."""
    owner = find_user(user)
    value = _service(accounts.parse_amount, amount)
    reason = _service(text.clean, reason, field="reason", max_length=500)
    if idempotency_key:
        key = _service(text.clean, idempotency_key, field="idempotency_key", max_length=128)
        _, replayed = _service(accounts.grant_once, db.session, owner.id, value, reason, key)
        if replayed:
            click.echo("already granted with this idempotency key; nothing changed", err=True)
    else:
        grant(db.session, owner.id, value, reason)
    bal, credited = balance(db.session, owner.id)
    click.echo(f"{owner.name}: balance {bal}, credited in all {credited}")


@credits.command("show")
@click.argument("user")
@click.option("--last", default=10, type=click.IntRange(1, 100), help="How many charges.")
def credits_show(user, last):
    """Show USER's balance and most recent charges."""
    owner = find_user(user)
    bal, credited = balance(db.session, owner.id)
    click.echo(f"{owner.name}: balance {bal}, credited in all {credited}")
    rows, _ = usage_page(db.session, owner.id, last, None)
    for r in rows:
        flags = ",".join(f for f, on in (("estimated", r.estimated), ("partial", r.partial)) if on)
        click.echo(f"{r.id}\t{r.created_at:%Y-%m-%d %H:%M:%S}\t{r.model}\tin {r.input_tokens}"
                   f"+{r.cache_read_tokens} cached\tout {r.output_tokens}\t{r.price}\t{flags}")
