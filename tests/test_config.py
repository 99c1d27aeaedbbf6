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


def test_image_models_are_their_own_purpose():
    """Image models (and their aliases) serve the images endpoints; a Gemini one chats too."""
    from providers.registry import CHAT, EMBEDDINGS, IMAGES

    up = parse_upstream({"name": "gemini", "models": ["gemini-2.5-flash"],
                         "image_models": ["gemini-2.5-flash-image"],
                         "aliases": {"banana": "gemini-2.5-flash-image"}}, {})
    assert [up.serves("banana", p) for p in (CHAT, EMBEDDINGS, IMAGES)] == [True, False, True]
    assert [up.serves("gemini-2.5-flash", p) for p in (CHAT, IMAGES)] == [True, False]
    openai = parse_upstream({"name": "openai"}, {})
    assert [openai.serves("dall-e-3", p) for p in (CHAT, IMAGES)] == [False, True]


@pytest.mark.parametrize("entry, problem", [
    ({"name": "anthropic", "embedding_models": ["claude-embed"]}, "no embeddings API"),
    ({"name": "openai", "embedding_models": "text-embedding-3-small"}, "list of model names"),
    ({"name": "anthropic", "image_models": ["claude-draw"]}, "no images API"),
    ({"name": "openai", "image_models": [""]}, "image_models must be a list of model names"),
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


def test_backup_urls_and_key_pools(caplog):
    env = {"K1": "sk-one-000000", "K3": "sk-three-000000"}
    up = parse_upstream({"name": "pool", "type": "openai", "models": ["m"],
                         "base_urls": ["https://a.example/v1/", "https://b.example/v1"],
                         "api_key_envs": ["K1", "K2", "K3"], "priority": 2, "weight": 0.5}, env)
    assert up.base_urls == ("https://a.example/v1", "https://b.example/v1")
    assert up.base_url == "https://a.example/v1" and up.api_key == "sk-one-000000"
    assert [k.env for k in up.keys] == ["K1", "K3"]  # K2 is not set: left out, with a warning
    assert (up.priority, up.weight) == (2, 0.5)
    assert "K2" in caplog.text and "sk-one" not in caplog.text
    assert configured_upstreams([{"name": "none", "type": "openai", "base_url": "http://x",
                                  "api_key_envs": ["UNSET_VAR"]}], env) == []


def test_metrics_token_is_refused_in_the_file(tmp_path, monkeypatch):
    path = tmp_path / "gateway.toml"
    path.write_text('metrics_token = "secret-token"\n')
    monkeypatch.setenv("GATEWAY_CONFIG", str(path))
    with pytest.raises(ValueError, match="GATEWAY_METRICS_TOKEN"):
        load_config(Flask(__name__))
