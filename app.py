"""Tollgate: a self-hosted AI API gateway. create_app() builds the Flask application."""

from flask import Flask

import cli
from blueprints import (
    admin,
    admin_api,
    anthropic_api,
    auth,
    console,
    credits,
    gemini_api,
    openai_api,
    playground,
    responses_api,
    site,
)
from config import load_config
from edge import pages, paths, ratelimit
from edge.errors import register_error_handlers
from extensions import db
from logs import install_redaction
from providers import build_registry
from providers.http import pooled_session
from providers.media import ImageFetcher
from services.conversations import ConversationStore
from services.embeddings import Embeddings
from services.health import ProviderHealth
from services.keys import KeyStore
from services.plans import PlanBook
from services.relay import Relay
from storage import prepare_database, start_billing


def create_app(overrides=None):
    app = Flask(__name__, instance_relative_config=True)
    load_config(app, overrides)
    install_redaction()
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
    app.extensions["relay"] = Relay(
        registry, billing, max_stream_seconds=app.config["UPSTREAM_MAX_STREAM_SECONDS"],
        fetcher=fetcher)
    app.extensions["conversations"] = ConversationStore(
        billing.engine, retention_days=app.config["RESPONSES_RETENTION_DAYS"])
    app.extensions["embeddings"] = Embeddings(
        registry, billing, max_input_tokens=app.config["EMBEDDING_MAX_INPUT_TOKENS"],
        concurrency=app.config["EMBEDDING_UPSTREAM_CONCURRENCY"])
    app.extensions["provider_health"] = health = ProviderHealth()
    for provider in registry.providers.values():
        health.watch(provider)
    pages.init_app(app)
    for page in (site, auth, console, playground, admin, admin_api, credits):
        app.register_blueprint(page.bp)
    for family in (openai_api, responses_api, anthropic_api, gemini_api):
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
