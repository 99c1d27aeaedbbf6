"""Configuration: TOML file, environment, presets, and refusing secrets in the file."""

import pytest
from flask import Flask

from config import load_config
from providers.registry import configured_upstreams, parse_upstream


def test_toml_file_then_env_then_overrides(tmp_path, monkeypatch):
    path = tmp_path / "gw.toml"
    path.write_text('key_cache_ttl = 9\nupstream_read_timeout = 30\n'
                    '[[providers]]\nname = "local"\ntype = "openai-compatible"\n'
                    'base_url = "http://127.0.0.1:9/v1"\nmodels = ["m"]\n')
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    monkeypatch.setenv("GATEWAY_UPSTREAM_READ_TIMEOUT", "45")
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h/db")
    app = Flask(__name__)
    load_config(app, {"MAX_CONTENT_LENGTH": 10})
    assert app.config["KEY_CACHE_TTL"] == 9
    assert app.config["UPSTREAM_READ_TIMEOUT"] == 45
    assert app.config["MAX_CONTENT_LENGTH"] == 10
    assert app.config["PROVIDERS"][0]["name"] == "local"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == "postgresql+psycopg://u@h/db"


def test_presets_enabled_by_their_key_variables():
    env = {"DEEPSEEK_API_KEY": "sk-d", "OPENROUTER_API_KEY": "sk-o"}
    ups = {u.name: u for u in configured_upstreams([], env)}
    assert set(ups) == {"deepseek", "openrouter"}
    assert ups["deepseek"].base_url == "https://api.deepseek.com/v1"
    assert ups["deepseek"].api_key == "sk-d"
    assert ups["openrouter"].upstream_model("anthropic/claude-x") == "anthropic/claude-x"
    assert ups["deepseek"].upstream_model("gpt-4o") is None
    assert configured_upstreams([], {}) == []


def test_provider_without_its_key_is_left_out(caplog):
    entries = [{"name": "deepseek"}, {"name": "local", "type": "openai-compatible",
                                      "base_url": "http://127.0.0.1:9/v1", "models": ["m"]}]
    assert [u.name for u in configured_upstreams(entries, {})] == ["local"]
    assert "DEEPSEEK_API_KEY" in caplog.text
    assert [u.name for u in configured_upstreams(entries, {"DEEPSEEK_API_KEY": "k"})] == [
        "deepseek", "local"]


def test_entry_overrides_preset_and_aliases():
    up = parse_upstream({"name": "openai", "models": ["gpt-4o"], "aliases": {"best": "gpt-4o"}},
                        {"OPENAI_API_KEY": "sk-x"})
    assert up.base_url == "https://api.openai.com/v1" and up.api_key == "sk-x"
    assert up.models == {"gpt-4o": "gpt-4o", "best": "gpt-4o"}


def test_embedding_models_from_presets_and_entries():
    up = parse_upstream({"name": "openai"}, {"OPENAI_API_KEY": "sk-x"})
    assert up.embeds("text-embedding-3-small") and not up.embeds("o3")
    assert up.serves("o3", "chat") and not up.serves("o3", "embeddings")
    up = parse_upstream({"name": "gemini", "embedding_models": []}, {})
    assert up.embedding_models == frozenset() and "gemini-embedding-001" not in up.models
    up = parse_upstream({"name": "gemini", "models": ["gemini-2.5-pro"]}, {})
    assert up.embedding_models == frozenset()  # own models replace the preset's, embeddings too
    up = parse_upstream({"name": "local", "type": "openai-compatible", "base_url": "http://h",
                         "models": ["llama", "*/*"], "embedding_models": ["nomic", "embed/*"],
                         "aliases": {"docs": "nomic", "talk": "llama"}}, {})
    assert [up.embeds(m) for m in ("nomic", "docs", "llama", "talk", "embed/x", "chat/x")] == [
        True, True, False, False, True, False]
    assert up.upstream_model("docs") == "nomic"


@pytest.mark.parametrize("entry, problem", [
    ({"name": "anthropic", "embedding_models": ["claude-embed"]}, "no embeddings API"),
    ({"name": "openai", "embedding_models": "text-embedding-3-small"}, "list of model names"),
])
def test_bad_embedding_models_are_refused(entry, problem):
    with pytest.raises(ValueError, match=problem):
        parse_upstream(entry, {})


@pytest.mark.parametrize("entry, problem", [
    ({"name": "x", "type": "openai", "base_url": "http://h", "api_key": "sk-1"}, "environment"),
    ({"name": "x", "type": "carrier-pigeon", "base_url": "http://h"}, "type"),
    ({"name": "x", "type": "openai"}, "base_url"),
    ({"type": "openai", "base_url": "http://h"}, "name"),
])
def test_bad_entries_are_refused(entry, problem):
    with pytest.raises(ValueError, match=problem):
        parse_upstream(entry, {})


def test_anthropic_and_gemini_presets():
    env = {"ANTHROPIC_API_KEY": "sk-ant-1", "GOOGLE_API_KEY": "AIza-fallback"}
    ups = {u.name: u for u in configured_upstreams([], env)}
    assert set(ups) == {"anthropic", "gemini"}
    assert (ups["anthropic"].type, ups["anthropic"].base_url) == (
        "anthropic", "https://api.anthropic.com/v1")
    assert ups["gemini"].wire_format == "gemini" and ups["gemini"].api_key == "AIza-fallback"
    both = {**env, "GEMINI_API_KEY": "AIza-main"}
    assert parse_upstream({"name": "gemini"}, both).api_key == "AIza-main"


def test_example_config_loads(monkeypatch):
    import pathlib

    example = pathlib.Path(__file__).resolve().parent.parent / "gateway.example.toml"
    monkeypatch.setenv("GATEWAY_CONFIG", str(example))
    app = Flask(__name__)
    load_config(app)
    assert app.config["IMAGE_FETCH_ALLOW_PRIVATE"] is False
    types = {p.get("name"): p.get("type") for p in app.config["PROVIDERS"]}
    assert "anthropic" in types and "gemini" in types
