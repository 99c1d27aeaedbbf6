"""Providers for the embeddings tests: an OpenAI-type and a Gemini-type fake, each with a chat
model and an embedding model, and an Anthropic-type one (which has no embeddings)."""

import pytest

from tests.conftest import provider_entry

OPENAI_MODEL, GEMINI_MODEL = "text-embedding-3-small", "gemini-embedding-001"


def embedding_providers(upstream) -> list[dict]:
    return [provider_entry(upstream, models=("gpt-test",), embedding_models=[OPENAI_MODEL],
                           aliases={"small": OPENAI_MODEL}),
            provider_entry(upstream, "fake-gemini", ("gemini-test",), type="gemini",
                           embedding_models=[GEMINI_MODEL]),
            provider_entry(upstream, "fake-claude", ("claude-test",), type="anthropic")]


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": embedding_providers(upstream)}
