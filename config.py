"""Configuration: defaults -> gateway.toml -> environment -> test overrides."""

import os
import secrets
import tomllib

from services.plans import DEFAULT_PLANS

DEFAULTS = {
    # Storage. DATABASE_URL (or GATEWAY_DATABASE_URL) switches to PostgreSQL.
    "SQLALCHEMY_DATABASE_URI": None,  # None: sqlite file under the instance folder
    # No pre-ping (a round trip on every checkout): connections are replaced after half an hour,
    # and one the server dropped fails its statement, which is retried (holds, settlements) or
    # answered 503; the pool then discards every connection as old as it.
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_recycle": 1800},
    # PostgreSQL connections per worker, kept open, and no overflow: a request holds one for a
    # statement (key lookup, hold), never while it waits on the upstream or streams, and the
    # settlement worker one per batch. A worker is bound by its CPU, not by its connections: when
    # all are out a greenlet waits a moment for one, which costs far less than the connect and
    # close an overflow connection costs on every use once load keeps more than this many out.
    "DATABASE_POOL_SIZE": 10,
    # Request handling.
    "MAX_CONTENT_LENGTH": 8 * 1024 * 1024,  # bytes; larger bodies get 413
    "KEY_CACHE_TTL": 5.0,  # seconds a key lookup is cached; a revoke takes effect within this
    # (and the time of a lookup already out for the key, at most a second more)
    "KEY_CACHE_SIZE": 10_000,
    # Upstream calls.
    "UPSTREAM_CONNECT_TIMEOUT": 5.0,
    "UPSTREAM_READ_TIMEOUT": 120.0,  # the longest silence tolerated between bytes
    "UPSTREAM_MAX_STREAM_SECONDS": 900.0,  # streams are cut after this long
    # Pooled connections per upstream host and worker: at least the streams a worker holds open
    # (gunicorn's worker_connections), or the connections past it are discarded after a burst.
    "UPSTREAM_POOL_SIZE": 10_000,
    # Resilience: attempts before the first byte reaches the client (URLs, keys, providers).
    "UPSTREAM_RETRY_ATTEMPTS": 4,  # attempts per request, the first included
    "UPSTREAM_RETRY_BUDGET": 30.0,  # seconds after which no new attempt starts
    "UPSTREAM_URL_COOLDOWN": 10.0,  # a URL that failed is tried after the others this long
    "BREAKER_FAILURES": 5,  # consecutive failures that open a URL's breaker
    "BREAKER_OPEN_SECONDS": 30.0,  # an open breaker gets no attempt this long, then one trial
    "BREAKER_STORAGE_URI": None,  # None: the rate-limit Redis if there is one, else memory://
    "BREAKER_SYNC_SECONDS": 1.0,  # shared breaker state is re-read from Redis this often
    "KEY_REST_SECONDS": 30.0,  # a key that got 429 without Retry-After rests this long
    "KEY_RETIRE_SECONDS": 3600.0,  # a key refused with 401/403 is out of rotation this long
    # Operations.
    "LOG_FORMAT": "text",  # "json": one JSON object per line, for log shippers
    "LOG_LEVEL": "INFO",
    "METRICS_TOKEN": "",  # bearer token for GET /metrics; empty: /metrics is off (404)
    "READY_TIMEOUT": 1.0,  # seconds /readyz waits for the database and Redis
    # Translation between formats.
    "IMAGE_FETCH_MAX_BYTES": 10 * 1024 * 1024,  # image URLs fetched for Gemini: size cap
    "IMAGE_FETCH_TIMEOUT": 10.0,  # seconds, in total
    "IMAGE_FETCH_ALLOW_PRIVATE": False,  # True lets image URLs reach private/loopback addresses
    # Stored Responses (POST /v1/responses with store, the default): kept this many days, then
    # swept (hourly by each worker, or `flask responses sweep`).
    "RESPONSES_RETENTION_DAYS": 30,
    # Images (POST /v1/images/generations and /edits): generated images are stored in
    # IMAGE_STORE_PATH (None: instance/images), served at /v1/images/files/<id>, kept this many
    # days, then swept (hourly by each worker, or `flask images sweep`). IMAGE_PUBLIC_URL: the
    # gateway's address as clients reach it, for `url` answers (None: the request's host).
    # IMAGE_MODEL_RULES: per model (name or glob) {"sizes": [...], "max_prompt": n}, beside the
    # built-in rules for dall-e-2, dall-e-3 and gpt-image-* (services/images.py).
    "IMAGE_STORE_PATH": None,
    "IMAGE_RETENTION_DAYS": 30,
    "IMAGE_PUBLIC_URL": None,
    "IMAGE_MODEL_RULES": {},
    "IMAGE_MAX_UPLOAD_BYTES": 20 * 1024 * 1024,  # the whole multipart body of an edit
    # Embeddings: the most (estimated) input tokens one request may embed, and how many upstream
    # calls of one request (Gemini takes 100 inputs a call) run at once.
    "EMBEDDING_MAX_INPUT_TOKENS": 500_000,
    "EMBEDDING_UPSTREAM_CONCURRENCY": 4,
    # Providers: a list of tables, see gateway.example.toml. Empty: take presets whose key is set.
    "PROVIDERS": [],
    # Run pending schema migrations at start-up (one process at a time; `flask db upgrade`
    # does the same by hand). False: the operator migrates.
    "CREATE_TABLES": True,
    # Credits: prices per model (see gateway.example.toml); holds older than HOLD_TTL seconds
    # were left by a dead process and are released by the sweep.
    "PRICING": {},
    "HOLD_TTL": 3600.0,
    "SETTLE_QUEUE_SIZE": 10_000,
    # A settlement batch waits this long for more charges after its first (one commit for all).
    "SETTLE_GATHER_SECONDS": 0.01,
    # A testing aid, off ("") in service: the database driver refuses every statement that
    # carries this exact string, as PostgreSQL refuses a NUL, to exercise refused charges.
    "STORAGE_REFUSE_VALUE": "",
    # Plans: see gateway.example.toml. Users without a plan of their own are on DEFAULT_PLAN.
    "PLANS": DEFAULT_PLANS,
    "DEFAULT_PLAN": "free",
    "RATELIMIT_ENABLED": True,  # False turns off every rate limit, failed-auth limit included
    # Rate-limit counters. memory:// counts in each worker process separately; a redis:// URL
    # (or REDIS_URL) shares exact counts between workers and hosts.
    "RATELIMIT_STORAGE_URI": "memory://",
    "RATELIMIT_STORAGE_OPTIONS": {},  # passed to redis-py; see REDIS_STORAGE_OPTIONS below
    "RATELIMIT_ON_STORAGE_ERROR": "open",  # "open": serve unlimited and log; "closed": 503
    "RATELIMIT_STORAGE_RETRY": 5.0,  # seconds an unreachable storage is left alone
    "AUTH_FAILURE_LIMIT": "20/minute",  # failed key checks per client address; "" for none
    "TRUSTED_PROXY_HOPS": 0,  # reverse proxies in front whose X-Forwarded-For is trusted
    # The people's side: sign-up, log-in, the console, the playground and the admin pages.
    "ALLOW_SIGNUP": True,  # False: only operators create users (CLI, admin API, /admin)
    "SIGNUP_CREDITS": 0,  # credits granted to every new account
    "SIGNUP_LIMIT": "5/hour",  # sign-ups per client address
    "LOGIN_LIMIT": "10/minute;50/hour",  # failed log-ins per client address and per account
    "SESSION_LIFETIME": 14 * 86400,  # seconds a log-in lasts
    "SECRET_KEY": None,  # from SECRET_KEY / GATEWAY_SECRET_KEY, else instance/secret_key
}
# Short Redis timeouts: a dead or blackholed Redis costs a quarter second, then the policy applies.
REDIS_STORAGE_OPTIONS = {"socket_connect_timeout": 0.25, "socket_timeout": 0.25,
                         "key_prefix": "tollgate"}


def load_config(app, overrides=None):
    """Fill app.config from defaults, the TOML file, the environment and overrides, in order."""
    app.config.from_mapping(DEFAULTS)
    path = os.environ.get("GATEWAY_CONFIG", "gateway.toml")
    if os.path.exists(path):
        with open(path, "rb") as fh:
            settings = {k.upper(): v for k, v in tomllib.load(fh).items()}
        if settings.get("METRICS_TOKEN"):  # secrets come from the environment only
            raise ValueError(f"{path}: set metrics_token as GATEWAY_METRICS_TOKEN in the "
                             "environment, not in the file")
        app.config.from_mapping(settings)
        app.config["CONFIG_FILE"] = os.path.abspath(path)
    if os.environ.get("DATABASE_URL"):
        app.config["SQLALCHEMY_DATABASE_URI"] = os.environ["DATABASE_URL"]
    if os.environ.get("SECRET_KEY"):
        app.config["SECRET_KEY"] = os.environ["SECRET_KEY"]
    if os.environ.get("REDIS_URL"):
        app.config["RATELIMIT_STORAGE_URI"] = os.environ["REDIS_URL"]
    app.config.from_prefixed_env("GATEWAY")  # values parsed as JSON: GATEWAY_KEY_CACHE_TTL=2
    app.config.from_mapping(overrides or {})
    app.config["SQLALCHEMY_DATABASE_URI"] = url = database_url(app)
    app.config["RATELIMIT_STORAGE_OPTIONS"] = storage_options(app.config)
    breaker_storage(app.config)
    app.config["SECRET_KEY"] = app.config["SECRET_KEY"] or instance_secret(app)
    if url.startswith("postgresql"):  # room for the greenlets that hold a connection at once
        options = app.config["SQLALCHEMY_ENGINE_OPTIONS"] = dict(
            app.config["SQLALCHEMY_ENGINE_OPTIONS"])
        options.setdefault("pool_size", app.config["DATABASE_POOL_SIZE"])
        options.setdefault("max_overflow", 0)


def instance_secret(app) -> str:
    """The key that signs session cookies when none is configured: made once, kept in the
    instance folder (readable by its owner only), so that every worker and restart shares it.
    Published with a hard link, so a process starting at the same moment never reads it half
    written."""
    os.makedirs(app.instance_path, exist_ok=True)
    path = os.path.join(app.instance_path, "secret_key")
    if not os.path.exists(path):
        draft = f"{path}.{os.getpid()}.{secrets.token_hex(4)}"
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
        try:
            os.link(draft, path)
        except FileExistsError:
            pass  # another process published its key first: everyone uses that one
        finally:
            os.unlink(draft)
    with open(path) as fh:
        return fh.read().strip()


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


def storage_options(config) -> dict:
    """Options for the rate-limit storage: storage errors wrapped in one exception type, and for
    Redis short timeouts and our key prefix unless the config says otherwise."""
    options = {"wrap_exceptions": True}
    if config["RATELIMIT_STORAGE_URI"].startswith(("redis", "valkey")):
        options.update(REDIS_STORAGE_OPTIONS)
    return {**options, **(config.get("RATELIMIT_STORAGE_OPTIONS") or {})}


def breaker_storage(config) -> None:
    """Breakers are shared through the rate limits' Redis (under its key prefix) by default."""
    if config.get("BREAKER_STORAGE_URI") is None:
        uri = config["RATELIMIT_STORAGE_URI"]
        config["BREAKER_STORAGE_URI"] = uri if uri.startswith(("redis", "unix")) else "memory://"
    config.setdefault("BREAKER_KEY_PREFIX",
                      config["RATELIMIT_STORAGE_OPTIONS"].get("key_prefix") or "tollgate")
