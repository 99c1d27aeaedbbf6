"""Configuration: defaults -> gateway.toml -> environment -> test overrides."""

import os
import tomllib

DEFAULTS = {
    # Storage. DATABASE_URL (or GATEWAY_DATABASE_URL) switches to PostgreSQL.
    "SQLALCHEMY_DATABASE_URI": None,  # None: sqlite file under the instance folder
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    "DATABASE_POOL_SIZE": 20,  # PostgreSQL connections per worker (and as many again in overflow)
    # Request handling.
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # bytes; larger bodies get 413
    "KEY_CACHE_TTL": 5.0,  # seconds a key lookup is cached; a revoke takes effect within this
    "KEY_CACHE_SIZE": 10_000,
    # Upstream calls.
    "UPSTREAM_CONNECT_TIMEOUT": 5.0,
    "UPSTREAM_READ_TIMEOUT": 120.0,  # the longest silence tolerated between bytes
    "UPSTREAM_MAX_STREAM_SECONDS": 900.0,  # streams are cut after this long
    "UPSTREAM_POOL_SIZE": 256,  # pooled connections per provider
    # Translation between formats.
    "IMAGE_FETCH_MAX_BYTES": 10 * 1024 * 1024,  # image URLs fetched for Gemini: size cap
    "IMAGE_FETCH_TIMEOUT": 10.0,  # seconds, in total
    "IMAGE_FETCH_ALLOW_PRIVATE": False,  # True lets image URLs reach private/loopback addresses
    # Providers: a list of tables, see gateway.example.toml. Empty: take presets whose key is set.
    "PROVIDERS": [],
    "CREATE_TABLES": True,
    # Credits: prices per model (see gateway.example.toml); holds older than HOLD_TTL seconds
    # were left by a dead process and are released by the sweep.
    "PRICING": {},
    "HOLD_TTL": 3600.0,
    "SETTLE_QUEUE_SIZE": 10_000,
}


def load_config(app, overrides=None):
    """Fill app.config from defaults, the TOML file, the environment and overrides, in order."""
    app.config.from_mapping(DEFAULTS)
    path = os.environ.get("GATEWAY_CONFIG", "gateway.toml")
    if os.path.exists(path):
        with open(path, "rb") as fh:
            app.config.from_mapping({k.upper(): v for k, v in tomllib.load(fh).items()})
        app.config["CONFIG_FILE"] = os.path.abspath(path)
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    app.config.from_prefixed_env("GATEWAY")  # values parsed as JSON: GATEWAY_KEY_CACHE_TTL=2
    app.config.from_mapping(overrides or {})
    app.config["SQLALCHEMY_DATABASE_URI"] = url = database_url(app)
    if url.startswith("postgresql"):  # room for the greenlets that hold a connection at once
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"] = dict(
            app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("pool_size", app.config["DATABASE_POOL_SIZE"])
        options.setdefault("max_overflow", app.config["DATABASE_POOL_SIZE"])


def database_url(app):
    """The SQLAlchemy URL, with the gevent-friendly psycopg 3 driver for PostgreSQL."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    if not url:
        os.makedirs(app.instance_path, exist_ok=True)
        return "sqlite:///" + os.path.join(app.instance_path, "tollgate.db")
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url
