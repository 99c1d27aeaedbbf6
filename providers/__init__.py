"""Upstream providers: one module per wire format, plus the registry that routes models to them."""

from providers.registry import ADAPTERS, PRESETS, Registry, Route, Upstream, build_registry

__all__ = ["ADAPTERS", "PRESETS", "Registry", "Route", "Upstream", "build_registry"]
