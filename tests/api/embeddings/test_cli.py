"""flask providers marks embedding models, listed by name or by pattern."""

import pytest

from tests.conftest import provider_entry


@pytest.fixture
def settings(upstream):
    return {"PROVIDERS": [provider_entry(upstream, embedding_models=["embed-1", "emb/*"])]}


def test_providers_listing_marks_embedding_models(app):
    out = app.test_cli_runner().invoke(args=["providers"]).output
    assert "    embed-1 (embedding)" in out and "    gpt-test\n" in out
    assert "emb/* (any matching name, embedding)" in out
