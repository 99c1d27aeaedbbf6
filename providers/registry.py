"""Which upstream serves which model: provider entries from config, presets, and routing."""

import fnmatch
import logging
import os
import time
from dataclasses import dataclass, field

from errors import InvalidRequest, ModelNotFound
from providers.anthropic import AnthropicProvider
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from providers.responses import ResponsesProvider

log = logging.getLogger(__name__)

# One adapter class per upstream wire format; a provider's `type` is its wire format's name.
ADAPTERS = (OpenAIProvider, AnthropicProvider, GeminiProvider, ResponsesProvider)
# Older spellings of a type, and the settings they stand for: an "openai-compatible" server is an
# OpenAI-type upstream that knows max_tokens only (OpenAI's reasoning models reject max_tokens).
TYPE_ALIASES = {"openai-compatible": {"type": "openai", "output_limit_field": "max_tokens"}}

# Known providers: base URL, wire format and the environment variable holding the key.
PRESETS = {
    "openai": {"type": "openai", "base_url": "https://api.openai.com/v1",
               "api_key_env": "OPENAI_API_KEY", "responses": True,
               "models": ["gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "gpt-4o", "gpt-4o-mini",
                          "o3", "o3-mini", "o4-mini"]},
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
               "models": ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]},
}
TYPES = tuple(adapter.wire_format for adapter in ADAPTERS)


def adapter_for(wire_format: str):
    """The provider class for a wire format (None when there is none)."""
    return next((a for a in ADAPTERS if a.wire_format == wire_format), None)


@dataclass(frozen=True)
class Upstream:
    """One configured provider. `type` is its wire format; `models` maps client-facing names to
    upstream names. The rest are the upstream's settings, read by its format's request builder."""

    name: str
    type: str
    base_url: str
    api_key: str = field(repr=False, default="")
    models: dict = field(default_factory=dict)
    patterns: tuple = ()  # glob patterns routed as-is (e.g. "*/*" on OpenRouter)
    output_limit_field: str | None = None  # OpenAI type: max_completion_tokens or max_tokens
    responses: bool = False  # OpenAI type: the upstream also serves POST /responses

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


@dataclass(frozen=True)
class Route:
    provider: object  # a provider adapter (providers.openai.OpenAIProvider, …)
    upstream_model: str

    def speaking(self, wire_format: str) -> "Route":
        """This route through the adapter for `wire_format` when the provider's upstream also
        speaks it (a dialect), else the route as it is."""
        dialect = self.provider.dialects.get(wire_format)
        return Route(dialect, self.upstream_model) if dialect is not None else self


def parse_upstream(entry: dict, environ) -> Upstream:
    """Build an Upstream from a config table, filling gaps from the preset of the same name."""
    name = entry.get("name")
    if not name or not isinstance(name, str):
        raise ValueError("every provider needs a name")
    preset = PRESETS.get(entry.get("preset", name), {})
    alias = TYPE_ALIASES.get(entry.get("type", preset.get("type")), {})
    kind = alias.get("type", entry.get("type", preset.get("type")))
    # settings, weakest first: the type's defaults, the preset, what an alias stands for, the entry
    adapter = adapter_for(kind)
    if adapter is None:
        raise ValueError(f"provider {name}: type must be one of "
                         f"{sorted([*TYPES, *TYPE_ALIASES])}")
    spec = {**adapter.defaults, **preset, **alias, **entry, "type": kind}
    if not spec.get("base_url"):
        raise ValueError(f"provider {name}: base_url is required")
    if "api_key" in entry:
        raise ValueError(f"provider {name}: put the key in an environment variable (api_key_env)")
    models, patterns = {}, []
    for item in spec.get("models", []):
        (patterns.append(item) if "*" in item else models.setdefault(item, item))
    for alias, target in (spec.get("aliases") or {}).items():
        models[alias] = target
    responses = spec.get("responses", False)
    if not isinstance(responses, bool) or (responses and kind != OpenAIProvider.wire_format):
        raise ValueError(f"provider {name}: responses must be true or false, and only on "
                         "openai-type providers")
    key_env, fallback = spec.get("api_key_env"), spec.get("api_key_env_fallback")
    api_key = (environ.get(key_env, "") if key_env else "") or (
        environ.get(fallback, "") if fallback else "")
    return Upstream(name=name, type=spec["type"], base_url=spec["base_url"].rstrip("/"),
                    api_key=api_key, models=models, patterns=tuple(patterns),
                    output_limit_field=spec.get("output_limit_field"), responses=responses)


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
        key_env = entry.get("api_key_env") or PRESETS.get(entry.get("preset", upstream.name),
                                                          {}).get("api_key_env")
        if key_env and not upstream.api_key:
            log.warning("provider %s disabled: %s is not set", upstream.name, key_env)
            continue
        upstreams.append(upstream)
    return upstreams


class Registry:
    """Routes a client-facing model name to the providers that serve it, in config order."""

    def __init__(self, providers: list):
        self.providers = {p.upstream.name: p for p in providers}
        self.created = int(time.time())

    def routes(self, model: str, provider: str | None = None) -> list[Route]:
        """Candidates for a model, best first; raises when nothing serves it."""
        if provider is not None:
            if provider not in self.providers:
                raise InvalidRequest(f"unknown provider '{provider}'", param="provider")
            candidates = [self.providers[provider]]
        else:
            candidates = list(self.providers.values())
        routes = [Route(p, m) for p in candidates if (m := p.upstream.upstream_model(model))]
        if not routes:
            where = f" on provider '{provider}'" if provider else ""
            raise ModelNotFound(f"The model '{model}' does not exist{where}", param="model")
        return routes

    def models(self) -> list[tuple[str, str]]:
        """(model, provider name) for every listed model, first provider wins."""
        seen = {}
        for p in self.providers.values():
            for model in p.upstream.models:
                seen.setdefault(model, p.upstream.name)
        return sorted(seen.items())


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
