"""Upstream providers: one module per wire format, plus the registry that routes models to them."""

from providers.anthropic import AnthropicProvider
from providers.gemini import GeminiProvider
from providers.openai import OpenAIProvider
from providers.registry import PRESETS, Registry, Route, Upstream, build_registry
from providers.responses import ResponsesProvider

PROVIDERS = {"openai": OpenAIProvider, "openai-compatible": OpenAIProvider,
             "anthropic": AnthropicProvider, "gemini": GeminiProvider,
             "responses": ResponsesProvider}

__all__ = ["PRESETS", "PROVIDERS", "Registry", "Route", "Upstream", "build_registry"]
