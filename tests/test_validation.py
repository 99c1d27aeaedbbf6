"""Request validation checks only the fields a body has (and the required ones): the errors, and
their order (the 400 names the first), must be exactly those of the whole schema."""

import itertools

import pytest

import app  # noqa: F401  (the blueprints' imports in the order the app makes them)
from blueprints.anthropic_api import COUNT_TOKENS_IN, MESSAGES_IN
from blueprints.gemini_api import BATCH_IN, EMBED_CONTENT_IN, GENERATE_CONTENT_IN
from blueprints.images_api import IMAGES_IN
from blueprints.openai_api import CHAT_COMPLETION_IN, EMBEDDINGS_IN
from blueprints.playground import PLAYGROUND_CHAT_IN
from blueprints.responses_api import INPUT_TOKENS_IN, RESPONSE_IN
from edge.views import _narrowed

SCHEMAS = [CHAT_COMPLETION_IN, EMBEDDINGS_IN, MESSAGES_IN, COUNT_TOKENS_IN, GENERATE_CONTENT_IN,
           EMBED_CONTENT_IN, BATCH_IN, IMAGES_IN, PLAYGROUND_CHAT_IN, RESPONSE_IN,
           INPUT_TOKENS_IN]
VALUES = [None, 0, -1, 3, 2.5, True, "", "x", "gpt-4o", [], ["x"], [{"role": "user",
          "content": "hi"}], {}, {"a": 1}]


def bodies(schema):
    keys = [field.data_key or name for name, field in schema.load_fields.items()]
    yield {}
    yield {"unknown_field": 1}
    for key, value in itertools.product(keys, VALUES):
        yield {key: value}
    for i, (a, b) in enumerate(itertools.combinations(keys, 2)):
        yield {a: VALUES[i % len(VALUES)], b: VALUES[(i * 7 + 3) % len(VALUES)]}
        yield {b: VALUES[(i * 5 + 1) % len(VALUES)], a: VALUES[(i * 3 + 2) % len(VALUES)],
               "extra": [1]}


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: type(s).__name__)
def test_the_narrowed_schema_finds_the_same_errors_in_the_same_order(schema):
    checked = 0
    for body in bodies(schema):
        whole, narrowed = schema.validate(body), _narrowed(schema, body).validate(body)
        assert narrowed == whole, body
        assert list(narrowed) == list(whole), body
        checked += 1
    assert checked > 30


def test_a_body_with_fewer_fields_is_checked_by_a_schema_with_fewer_fields():
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5}
    narrowed = _narrowed(CHAT_COMPLETION_IN, body)
    assert set(narrowed.load_fields) == {"model", "messages", "max_tokens"}
    assert _narrowed(CHAT_COMPLETION_IN, dict(body)) is narrowed  # built once per shape
    assert set(_narrowed(CHAT_COMPLETION_IN, {}).load_fields) == {"model", "messages"}
