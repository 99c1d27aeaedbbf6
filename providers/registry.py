"""Which upstream serves which model: provider entries from config, presets, and routing."""

import copy
import fnmatch
import logging
import os
import time
from dataclasses import dataclass, field

from errors import InvalidRequest, ModelNotFound
from providers.anthropic import AnthropicProvider
from providers.gemini import GeminiProvider
from providers.keypool import ApiKey
from providers.openai import OpenAIProvider
from providers.replicate import ReplicateProvider
from providers.responses import ResponsesProvider
from providers.stability import StabilityProvider

log = logging.getLogger(__name__)
# purposes: which endpoints may call a model
CHAT, EMBEDDINGS, IMAGES = "chat", "embeddings", "images"

# One adapter class per upstream wire format; a provider's `type` is its wire format's name.
ADAPTERS = (OpenAIProvider, AnthropicProvider, GeminiProvider, ResponsesProvider,
            StabilityProvider, ReplicateProvider)
# Older spellings of a type, and the settings they stand for: an "openai-compatible" server is an
# OpenAI-type upstream that knows max_tokens only (OpenAI's reasoning models reject max_tokens).
TYPE_ALIASES = {"openai-compatible": {"type": "openai", "output_limit_field": "max_tokens"}}

# Known providers: base URL, wire format and the environment variable holding the key.
PRESETS = {
    "openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
               "api_key_env": "OPENAI_API_KEY", "responses": True,
               "models": ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
                          "o3", "o3-mini", "o4-mini"],
               "embedding_models": ["text-embedding-3-small", "text-embedding-3-large",
                                    "text-embedding-ada-002"],
               "image_models": ["dall-e-2", "dall-e-3", "gpt-image-1"]},
    "deepseek": {"type": "openai", "output_limit_field": "max_tokens",
                 "base_url": "https://api.deepseek.com/v1",
                 "api_key_env": "DEEPSEEK_API_KEY",
                 "models": ["deepseek-chat", "deepseek-reasoner"]},
    "openrouter": {"type": "openai", "output_limit_field": "max_tokens",
                   "base_url": "https://openrouter.ai/api/v1",
                   "api_key_env": "OPENROUTER_API_KEY", "models": ["*/*"]},
    "anthropic": {"type": "anthropic", "base_url": "https://api.anthropic.com/v1",
                  "api_key_env": "ANTHROPIC_API_KEY",
                  "models": ["claude-opus-4-1", "claude-sonnet-4-5", "claude-haiku-4-5"]},
    "gemini": {"type": "gemini", "base_url": "https://generativelanguage.googleapis.com/v1beta",
               "api_key_env": "GEMINI_API_KEY", "api_key_env_fallback": "GOOGLE_API_KEY",
               "models": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"],
               "embedding_models": ["gemini-embedding-001", "gemini-embedding-2"],
               "image_models": ["gemini-2.5-flash-image", "gemini-3-pro-image-preview"]},
    # Images-only APIs: every model they list is an image model.
    "stability": {"type": "stability", "base_url": "https://api.stability.ai/v2beta",
                  "api_key_env": "STABILITY_API_KEY",
                  "image_models": ["stable-image-ultra", "stable-image-core", "sd3.5-large",
                                   "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash"]},
    # Replicate runs any public model by its owner/name ("*/*"); the best-known image models
    # also have short names.
    "replicate": {"type": "replicate", "base_url": "https://api.replicate.com/v1",
                  "api_key_env": "REPLICATE_API_TOKEN",
                  "image_models": ["flux-schnell", "flux-dev", "flux-pro", "flux-1.1-pro",
                                   "flux-1.1-pro-ultra", "stable-diffusion-3.5-large", "*/*"],
                  "aliases": {"flux-schnell": "black-forest-labs/flux-schnell",
                              "flux-dev": "black-forest-labs/flux-dev",
                              "flux-pro": "black-forest-labs/flux-pro",
                              "flux-1.1-pro": "black-forest-labs/flux-1.1-pro",
                              "flux-1.1-pro-ultra": "black-forest-labs/flux-1.1-pro-ultra",
                              "stable-diffusion-3.5-large":
                                  "stability-ai/stable-diffusion-3.5-large"}},
}
TYPES = tuple(adapter.wire_format for adapter in ADAPTERS)


def adapter_for(wire_format: str):
    """The provider class for a wire format (None when there is none)."""
    return next((a for a in ADAPTERS if a.wire_format == wire_format), None)


@dataclass(frozen=True)
class Upstream:
    """One configured provider. `type` is its wire format; `models` maps client-facing names to
    upstream names. The rest are the upstream's settings, read by its format's request builder.

    `base_url` and `api_key` are what one attempt uses: the first of `base_urls` and `keys` as
    configured, or the URL and key routing chose for this attempt (providers/routing.py).
    """

    name: str
    type: str
    base_url: str
    api_key: str = field(repr=False, default="")
    models: dict = field(default_factory=dict)
    patterns: tuple = ()  # glob patterns routed as-is (e.g. "*/*" on OpenRouter)
    embedding_models: frozenset = frozenset()  # names and patterns (of the above) that embed
    image_models: frozenset = frozenset()  # names and patterns (of the above) that make images
    output_limit_field: str | None = None  # OpenAI type: max_completion_tokens or max_tokens
    base_urls: tuple = ()  # primary first, then backups; the same paths are used on each
    keys: tuple = field(repr=False, default=())  # providers.keypool.ApiKey, in config order
    weight: float | None = None  # share of traffic among providers of the same priority
    priority: int = 0  # lower first; a higher one is used only when the lower ones fail
    responses: bool = False  # OpenAI type: the upstream also serves POST /responses
    prediction_timeout: float | None = None  # Replicate type: seconds a prediction may take
    poll_interval: float | None = None  # Replicate type: seconds between looks at a prediction

    @property
    def wire_format(self) -> str:
        return self.type

    def upstream_model(self, model: str) -> str | None:
        """The upstream's name for a client-facing model, or None when this provider lacks it."""
        if model in self.models:
            return self.models[model]
        if any(fnmatch.fnmatchcase(model, p) for p in self.patterns):
            return model
        return None

    def serves(self, model: str, purpose: str) -> bool:
        """Whether this provider's `model` answers chat, embeddings or images requests (a Gemini
        image model answers chat requests too: its images come back in the answer)."""
        if self.embeds(model):
            return purpose == EMBEDDINGS
        if self.draws(model):
            return purpose == IMAGES or (purpose == CHAT and self.type == "gemini")
        return purpose == CHAT

    def draws(self, model: str) -> bool:
        """Whether a model this provider serves is an image model (its patterns first)."""
        if model in self.models:
            return model in self.image_models
        return any(fnmatch.fnmatchcase(model, p) for p in self.patterns
                   if p in self.image_models)

    def embeds(self, model: str) -> bool:
        """Whether a model this provider serves is an embedding model (its patterns first)."""
        if model in self.models:
            return model in self.embedding_models
        return any(fnmatch.fnmatchcase(model, p) for p in self.patterns
                   if p in self.embedding_models)


@dataclass(frozen=True)
class Route:
    provider: object  # a provider adapter (providers.openai.OpenAIProvider, …)
    upstream_model: str

    def speaking(self, wire_format: str) -> "Route":
        """This route through the adapter for `wire_format` when the provider's upstream also
        speaks it (a dialect), else the route as it is."""
        dialect = self.provider.dialects.get(wire_format)
        if dialect is None:
            return self
        if dialect.upstream is not self.provider.upstream:  # a route bound to one URL and key
            dialect = copy.copy(dialect)
            dialect.upstream, dialect.timeout = self.provider.upstream, self.provider.timeout
        return Route(dialect, self.upstream_model)


def parse_upstream(entry: dict, environ) -> Upstream:
    """Build an Upstream from a config table, filling gaps from the preset of the same name."""
    name = entry.get("name")
    if not name or not isinstance(name, str):
        raise ValueError("every provider needs a name")
    if len(name) > 64 or not name.isprintable():  # it is stored on every usage record
        raise ValueError(f"provider {name!r}: names are at most 64 printable characters")
    preset = PRESETS.get(entry.get("preset", name), {})
    alias = TYPE_ALIASES.get(entry.get("type", preset.get("type")), {})
    kind = alias.get("type", entry.get("type", preset.get("type")))
    # settings, weakest first: the type's defaults, the preset, what an alias stands for, the entry
    adapter = adapter_for(kind)
    if adapter is None:
        raise ValueError(f"provider {name}: type must be one of "
                         f"{sorted([*TYPES, *TYPE_ALIASES])}")
    spec = {**adapter.defaults, **preset, **alias, **entry, "type": kind}
    if "api_key" in entry:
        raise ValueError(f"provider {name}: put the key in an environment variable (api_key_env)")
    models, patterns = {}, []
    embedding = _purpose_models(name, entry, spec, "embedding_models",
                                adapter.supports_embeddings, "embeddings API")
    drawing = _purpose_models(name, entry, spec, "image_models", adapter.supports_images,
                              "images API")
    for item in [*spec.get("models", []), *embedding, *drawing]:
        (patterns.append(item) if "*" in item else models.setdefault(item, item))
    embedding, drawing = set(embedding), set(drawing)
    for alias, target in (spec.get("aliases") or {}).items():
        models[alias] = target
        if target in embedding:  # an alias of an embedding model is one too
            embedding.add(alias)
        if target in drawing:
            drawing.add(alias)
    if not adapter.chats:  # an images-only API: whatever it lists makes images
        drawing.update(models, patterns)
    responses = spec.get("responses", False)
    if not isinstance(responses, bool) or (responses and kind != OpenAIProvider.wire_format):
        raise ValueError(f"provider {name}: responses must be true or false, and only on "
                         "openai-type providers")
    keys = _keys(spec, environ)
    urls = _base_urls(name, spec)
    return Upstream(name=name, type=spec["type"], base_url=urls[0],
                    api_key=keys[0].value if keys else "", models=models,
                    patterns=tuple(patterns), output_limit_field=spec.get("output_limit_field"),
                    embedding_models=frozenset(embedding), image_models=frozenset(drawing),
                    base_urls=urls, keys=keys,
                    weight=_number(name, spec, "weight", float, low=0.0),
                    priority=_number(name, spec, "priority", int) or 0,
                    responses=responses,
                    prediction_timeout=_number(name, spec, "prediction_timeout", float, low=0.0),
                    poll_interval=_number(name, spec, "poll_interval", float, low=0.0))


def _base_urls(name, spec) -> tuple:
    """`base_urls = [primary, backup, ...]`, or the single `base_url`."""
    urls = spec.get("base_urls") or ([spec["base_url"]] if spec.get("base_url") else [])
    if isinstance(urls, str) or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"provider {name}: base_urls must be a list of URLs")
    if not urls:
        raise ValueError(f"provider {name}: base_url is required")
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"provider {name}: base URL {url!r} must be http(s)")
    return tuple(dict.fromkeys(u.rstrip("/") for u in urls))


def _keys(spec, environ) -> tuple:
    """The keys named by `api_key_envs` (or `api_key_env`, with the preset's fallback) and set."""
    names = spec.get("api_key_envs") or (
        [spec["api_key_env"]] if spec.get("api_key_env") else [])
    if isinstance(names, str):
        names = [names]
    keys = [ApiKey(n, environ[n]) for n in names if environ.get(n)]
    fallback = spec.get("api_key_env_fallback")
    if not keys and fallback and environ.get(fallback):
        keys = [ApiKey(fallback, environ[fallback])]
    missing = [n for n in names if not environ.get(n)]
    if keys and missing:
        log.warning("provider %s: key variables not set: %s", spec["name"], ", ".join(missing))
    return tuple(keys)


def _number(name, spec, field_name, kind, low=None):
    value = spec.get(field_name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"provider {name}: {field_name} must be a number")
    if low is not None and value <= low:
        raise ValueError(f"provider {name}: {field_name} must be above {low}")
    return kind(value)


def _purpose_models(name: str, entry: dict, spec: dict, key: str, supported: bool,
                    what: str) -> list[str]:
    """The provider's embedding or image models (`key`), for adapters that have `what`.
    An entry that lists its own models replaces the preset's models of that purpose too."""
    items = (entry.get(key) if "models" in entry else spec.get(key)) or []
    if not isinstance(items, list) or not all(isinstance(m, str) and m for m in items):
        raise ValueError(f"provider {name}: {key} must be a list of model names")
    if items and not supported:
        raise ValueError(f"provider {name}: {spec['type']}-type providers have no {what}; "
                         f"remove {key}")
    return items


def configured_upstreams(entries, environ=os.environ) -> list[Upstream]:
    """Upstreams from the config file, or, with none configured, every preset whose key is set.

    A provider whose key variable is named but not set is left out (with a warning) rather
    than listed with models that could only fail.
    """
    if not entries:
        return [parse_upstream({"name": name}, environ) for name, preset in PRESETS.items()
                if environ.get(preset["api_key_env"])
                or environ.get(preset.get("api_key_env_fallback") or "")]
    upstreams = []
    for entry in entries:
        upstream = parse_upstream(entry, environ)
        key_envs = entry.get("api_key_envs") or entry.get("api_key_env") or PRESETS.get(
            entry.get("preset", upstream.name), {}).get("api_key_env")
        if key_envs and not upstream.keys:
            log.warning("provider %s disabled: %s is not set", upstream.name, key_envs)
            continue
        upstreams.append(upstream)
    return upstreams


class Registry:
    """Routes a client-facing model name to the providers that serve it, in config order."""

    def __init__(self, providers: list):
        self.providers = {p.upstream.name: p for p in providers}
        self.created = int(time.time())
        self._embedding_models = frozenset(m for p in providers for m in p.upstream.models
                                           if p.upstream.embeds(m))
        self._image_models = {}  # image model -> what it outputs (Gemini's also chat)
        for p in providers:
            for m in p.upstream.models:
                if p.upstream.draws(m):
                    chats = p.upstream.serves(m, CHAT) or "text" in self._image_models.get(m, ())
                    self._image_models[m] = ("image", "text") if chats else ("image",)

    def routes(self, model: str, provider: str | None = None, purpose: str = CHAT
               ) -> list[Route]:
        """Candidates for a model (for chat or embeddings requests), best first; raises when
        nothing serves it (404), or nothing for this purpose (400)."""
        if provider is not None:
            if provider not in self.providers:
                raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
            candidates = [self.providers[provider]]
        else:
            candidates = list(self.providers.values())
        serving = [(p, m) for p in candidates if (m := p.upstream.upstream_model(model))]
        if not serving:
            where = f" on provider '{provider}'" if provider else ""
            raise ModelNotFound(f"The model '{model}' does not exist{where}", param="model")
        routes = [Route(p, m) for p, m in serving if p.upstream.serves(model, purpose)]
        if not routes:
            raise wrong_purpose(model, purpose, [p.upstream.type for p, _ in serving],
                                drawing=any(p.upstream.draws(model) for p, _ in serving))
        return routes

    def embedding_models(self) -> frozenset[str]:
        """Client-facing names of every listed embedding model (worked out once)."""
        return self._embedding_models

    def image_models(self) -> dict[str, tuple]:
        """Every listed image model -> its output modalities (("image",), or ("image", "text")
        for a Gemini image model, which chat clients call too)."""
        return self._image_models

    def models(self) -> list[tuple[str, str]]:
        """(model, provider name) for every listed model, first provider wins."""
        seen = {}
        for p in self.providers.values():
            for model in p.upstream.models:
                seen.setdefault(model, p.upstream.name)
        return sorted(seen.items())


def wrong_purpose(model: str, purpose: str, types: list[str], drawing: bool = False
                  ) -> InvalidRequest:
    """The 400 for a request to a model of another purpose (chat, embeddings, images)."""
    if purpose == IMAGES:
        message = (f"The model '{model}' makes no images; use an image model with "
                   "POST /v1/images/generations (see GET /v1/models).")
    elif purpose == CHAT and drawing:
        message = (f"The model '{model}' is an image model; it cannot chat. Call "
                   "POST /v1/images/generations with it.")
    elif purpose == CHAT:
        message = (f"The model '{model}' is an embedding model; it cannot chat. Call "
                   "POST /v1/embeddings (or :embedContent / :batchEmbedContents) with it.")
    elif all(t == "anthropic" for t in types):
        message = (f"The model '{model}' is served by an Anthropic-type provider, and the "
                   "Anthropic API has no embeddings; use an embedding model (see GET /v1/models).")
    else:
        kind = "an image model" if drawing else "a chat model"
        message = (f"The model '{model}' is {kind}, not an embedding model; use an "
                   "embedding model (see GET /v1/models).")
    return InvalidRequest(message, param="model", code="unsupported_model")


def build_registry(config, session_factory) -> Registry:
    """The registry for this process: one adapter and one pooled session per upstream."""
    providers = []
    for upstream in configured_upstreams(config["PROVIDERS"]):
        timeout = (config["UPSTREAM_CONNECT_TIMEOUT"], config["UPSTREAM_READ_TIMEOUT"])
        session = session_factory()
        adapter = adapter_for(upstream.type)(upstream, session, timeout=timeout)
        if upstream.responses:  # the same upstream and pool, spoken to in the Responses format
            dialect = ResponsesProvider(upstream, session, timeout=timeout)
            adapter.dialects = {dialect.wire_format: dialect}
        providers.append(adapter)
    return Registry(providers)
