"""Providers of every kind for the Responses tests, and an openai SDK client on the gateway."""

import json

import openai
import pytest

from tests.conftest import provider_entry

# model -> the provider kind that serves it
MODELS = {"gpt-test": "openai", "chat-test": "openai-compatible", "claude-test": "anthropic",
          "gemini-test": "gemini"}
PRICE = {"input": 2, "output": 4, "cache_read": 0.5, "minimum": 0.001, "max_output_tokens": 8000}
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
TOOLS = [{"type": "function", "name": "get_weather", "description": "Weather in a city",
          "parameters": SCHEMA}]
CALLS = [("get_weather", {"city": "Paris"}), ("get_weather", {"city": "Rome"})]


def providers(upstream) -> list[dict]:
    return [provider_entry(upstream, "fake-openai", ("gpt-test",), responses=True),
            provider_entry(upstream, "fake-chat", ("chat-test",), type="openai-compatible"),
            provider_entry(upstream, "fake-claude", ("claude-test",), type="anthropic"),
            provider_entry(upstream, "fake-gemini", ("gemini-test",), type="gemini"),
            provider_entry(upstream, "fake-resp", ("resp-test",), type="responses"),
            # fail-test: a chat-only provider first, an Anthropic one when that one fails
            provider_entry(upstream, "fake-chat2", ("fail-test",), type="openai-compatible"),
            provider_entry(upstream, "fake-backup", ("fail-test",), type="anthropic")]


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": providers(upstream), "RATELIMIT_ENABLED": False,
            "PRICING": {"models": {m: PRICE for m in [*MODELS, "resp-test"]}}}


@pytest.fixture
def sdk(gateway, api_key):
    return openai.OpenAI(base_url=f"{gateway}/v1", api_key=api_key, max_retries=0)


def upstream_path(model: str) -> str:
    return {"openai": "/v1/responses", "openai-compatible": "/v1/chat/completions",
            "anthropic": "/v1/messages",
            "gemini": f"/v1beta/models/{model}:generateContent"}[MODELS[model]]


def sent(model: str, body: dict) -> dict:
    """What a provider was sent, in one shape: system, texts by role, calls, results, tools."""
    kind = MODELS.get(model, "responses")
    if kind in ("openai", "responses"):
        return _responses(body)
    from tests.api.cross_family.test_matrix import sent_conversation

    return sent_conversation({"openai-compatible": "openai"}.get(kind, kind), body)


def _responses(body):
    items = body["input"] if isinstance(body["input"], list) else [
        {"role": "user", "content": body["input"]}]

    def texts(item):
        content = item.get("content")
        return [content] if isinstance(content, str) else [p["text"] for p in content
                                                          if "text" in p]
    return {"system": body.get("instructions"),
            "user_texts": [t for i in items if i.get("role") == "user" for t in texts(i)],
            "assistant_texts": [t for i in items if i.get("role") == "assistant"
                                for t in texts(i)],
            "tools": [t["name"] for t in body.get("tools", [])],
            "calls": [(i["call_id"], i["name"], json.loads(i["arguments"])) for i in items
                      if i.get("type") == "function_call"],
            "results": [(i["call_id"], i["output"]) for i in items
                        if i.get("type") == "function_call_output"]}
