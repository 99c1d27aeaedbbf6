"""Tollgate: a self-hosted AI API gateway. create_app() builds the Flask application."""

import os

from flask import Flask

import cli
import requestlog
from blueprints import (
    admin,
    admin_api,
    anthropic_api,
    auth,
    console,
    credits,
    gemini_api,
    images_api,
    openai_api,
    ops,
    playground,
    responses_api,
    site,
)
from config import load_config
from edge import pages, paths, ratelimit
from edge.errors import register_error_handlers
from extensions import db
from logs import install_logging
from providers import build_registry
from providers.breaker import make_breakers
from providers.http import pooled_session
from providers.media import ImageFetcher
from providers.routing import Router
from services.conversations import ConversationStore
from services.embeddings import Embeddings
from services.health import ProviderHealth
from services.image_store import ImageStore, LocalBlobs
from services.images import Images
from services.keys import KeyStore
from services.metrics import Metrics
from services.plans import PlanBook
from services.relay import Relay
from storage import observe_storage, prepare_database, start_billing


def create_app(overrides=None):
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, overrides)
    install_logging(app.config["LOG_FORMAT"], app.config["LOG_LEVEL"])
    app.extensions["metrics"] = metrics = Metrics()
    requestlog.init_app(app)
    db.init_app(app)
    prepare_database(app)
    ratelimit.init_app(app)
    plans = PlanBook(app.config["PLANS"], app.config["DEFAULT_PLAN"])
    app.extensions["keys"] = KeyStore(app.config["KEY_CACHE_TTL"], app.config["KEY_CACHE_SIZE"],
                                      plans)
    registry = build_registry(app.config,
                              lambda: pooled_session(app.config["UPSTREAM_POOL_SIZE"]))
    app.extensions["billing"] = billing = start_billing(app)
    fetcher = ImageFetcher(max_bytes=app.config["IMAGE_FETCH_MAX_BYTES"],
                           timeout=app.config["IMAGE_FETCH_TIMEOUT"],
                           allow_private=app.config["IMAGE_FETCH_ALLOW_PRIVATE"])
    app.extensions["conversations"] = ConversationStore(
        billing.engine, retention_days=app.config["RESPONSES_RETENTION_DAYS"])
    app.extensions["provider_health"] = health = ProviderHealth()
    router = build_router(app.config, registry, metrics, health)
    app.extensions["embeddings"] = Embeddings(
        registry, billing, router, max_input_tokens=app.config["EMBEDDING_MAX_INPUT_TOKENS"],
        concurrency=app.config["EMBEDDING_UPSTREAM_CONCURRENCY"])
    app.extensions["relay"] = Relay(
        registry, billing, router,
        max_stream_seconds=app.config["UPSTREAM_MAX_STREAM_SECONDS"], fetcher=fetcher)
    app.extensions["image_store"] = store = ImageStore(
        billing.engine, LocalBlobs(app.config["IMAGE_STORE_PATH"]
                                   or os.path.join(app.instance_path, "images")),
        retention_days=app.config["IMAGE_RETENTION_DAYS"])
    app.extensions["images"] = Images(registry, billing, router, store, fetcher,
                                      models=app.config["IMAGE_MODEL_RULES"])
    app.extensions["readiness"] = ops.readiness_checks(app)
    observe_storage(app, metrics)
    pages.init_app(app)
    app.register_blueprint(ops.bp)
    for page in (site, auth, console, playground, admin, admin_api, credits):
        app.register_blueprint(page.bp)
    app.register_blueprint(images_api.files_bp)
    for family in (openai_api, images_api, responses_api, anthropic_api, gemini_api):
        for prefix in family.BASE_PATHS:
            app.register_blueprint(family.bp, url_prefix=prefix,
                                   name=family.bp.name + prefix.replace("/", "_"))
    for prefix in gemini_api.V1_PATHS:
        app.register_blueprint(gemini_api.v1_bp, url_prefix=prefix,
                               name="gemini_v1" + prefix.replace("/", "_"))
    register_error_handlers(app)
    paths.init_app(app)
    cli.register(app)
    return app


def build_router(config, registry, metrics, health) -> Router:
    """Routing state for this process: breakers per URL (shared via Redis when configured)
    and a key pool per provider; every attempt's outcome also goes to the admin's health view."""
    breakers = make_breakers(config, on_change=metrics.breaker_changed)
    urls = [u for p in registry.providers.values() for u in p.upstream.base_urls]
    # at scrape time the scraping worker reports the breakers as it (or Redis) sees them now
    metrics.before_scrape(lambda: [metrics.breaker_changed(u, breakers.state(u)) for u in urls])
    return Router(list(registry.providers.values()), breakers,
                  max_attempts=config["UPSTREAM_RETRY_ATTEMPTS"],
                  budget_seconds=config["UPSTREAM_RETRY_BUDGET"],
                  key_rest_seconds=config["KEY_REST_SECONDS"],
                  key_retire_seconds=config["KEY_RETIRE_SECONDS"],
                  on_failure=metrics.upstream_failed, on_outcome=health.record)
