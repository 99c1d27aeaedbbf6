"""Embedding bodies between the OpenAI and Gemini formats: pure functions, no I/O."""

import array
import base64
import inspect
import struct

import pytest

from errors import InvalidRequest
from translation import gemini_embeddings, openai_embeddings
from translation.embeddings import (
    EmbedAnswer,
    EmbeddingFormat,
    EmbedInput,
    batches,
    estimate_tokens,
    pack_base64,
    unpack_base64,
    vector_of,
)


@pytest.mark.parametrize("module", [openai_embeddings, gemini_embeddings],
                         ids=lambda m: m.name)
def test_each_format_keeps_the_contract(module):
    """Every member the protocol names, with the parameters it names."""
    members = {name: member for name, member in vars(EmbeddingFormat).items()
               if not name.startswith("_") and callable(member)}
    assert len(members) == 8
    for name, member in members.items():
        wanted = list(inspect.signature(member).parameters)[1:]  # without self
        assert list(inspect.signature(getattr(module, name)).parameters) == wanted, name
    assert isinstance(module.name, str)


def test_base64_is_float32_little_endian_as_openai_sends_it():
    assert pack_base64([1.0, 2.0]) == "AACAPwAAAEA="  # the reference's example
    values = [0.1, -3.25, 1e-7, 12345.678]
    packed = pack_base64(values)
    assert base64.b64decode(packed) == struct.pack("<4f", *values)
    # how the openai SDK decodes it (without numpy; with it, frombuffer(dtype="float32"))
    assert array.array("f", base64.b64decode(packed)).tolist() == unpack_base64(packed)
    assert unpack_base64(packed) == [struct.unpack("<f", struct.pack("<f", v))[0]
                                     for v in values]


@pytest.mark.parametrize("bad", ["AAA", "AACAPwAAAE==", "not base64!", 3, [1, "x"], [True],
                                 [float("nan")], None])
def test_what_is_not_a_vector(bad):
    with pytest.raises(ValueError):
        vector_of(bad)


def test_batches_keep_order_within_groups_and_split_by_size():
    assert batches(5, 2) == [[0, 1], [2, 3], [4]]
    dims = [None, 3, None, 3, None]
    assert batches(5, 2, key=lambda i: dims[i]) == [[0, 2], [4], [1, 3]]


def test_estimates():
    assert estimate_tokens(EmbedInput(text="abcdef")) == 2
    assert estimate_tokens(EmbedInput(text="é" * 3)) == 2  # 6 UTF-8 bytes
    assert estimate_tokens(EmbedInput(tokens=[1, 2, 3, 4])) == 4
    assert estimate_tokens(EmbedInput(parts=[{"inlineData": {"data": "AAAA"}}])) == 1000


def test_openai_request_shapes():
    req = openai_embeddings.request_to_ir({"model": "m", "input": [5, 6], "user": "u",
                                           "dimensions": 8})
    assert [(i.tokens, i.dimensions, i.param) for i in req.inputs] == [([5, 6], 8, "input")]
    assert req.extras == {"user": "u"} and req.encoding == "float"
    req = openai_embeddings.request_to_ir({"model": "m", "input": ["a", "b"],
                                           "encoding_format": "base64"})
    assert [(i.text, i.param) for i in req.inputs] == [("a", "input[0]"), ("b", "input[1]")]
    payload, _ = openai_embeddings.request_from_ir(req, req.inputs, "up")
    assert payload == {"model": "up", "input": ["a", "b"], "encoding_format": "base64"}


def test_openai_answers_are_checked_and_put_in_index_order():
    data = {"data": [{"index": 1, "embedding": pack_base64([2.0])},
                     {"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 3}}
    assert openai_embeddings.answer_to_ir(data, 2, {}) == EmbedAnswer([[1.0], [2.0]], 3)
    for bad in ({"data": [{"index": 0, "embedding": [1.0]}]},
                {"data": [{"index": 0, "embedding": [1.0]}, {"index": 0, "embedding": [1]}]},
                {"data": "x"}, []):
        with pytest.raises(ValueError):
            openai_embeddings.answer_to_ir(bad, 2, {})


def test_openai_passthrough_keeps_bytes_only_in_the_asked_encoding():
    req = openai_embeddings.request_to_ir({"model": "m", "input": "a",
                                           "encoding_format": "base64"})
    content = b'{"data":[{"index":0,"embedding":"AACAPw=="}],"usage":{"prompt_tokens":1}}\n'
    data = {"data": [{"index": 0, "embedding": "AACAPw=="}], "usage": {"prompt_tokens": 1}}
    assert openai_embeddings.relayable(content, data, req)
    out = openai_embeddings.relay_body(content, 0.25)
    assert out == content.rstrip()[:-1] + b',"credits_consumed":0.25}'
    floats = {"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 1}}
    assert not openai_embeddings.relayable(b"{}", floats, req)
    assert not openai_embeddings.relayable(content, {"data": data["data"]}, req)  # no usage
    # relayed answers are checked, not decoded
    assert openai_embeddings.answer_to_ir(data, 1, {}, decode=False).vectors == ["AACAPw=="]


def test_gemini_requests_from_openai_inputs():
    req = openai_embeddings.request_to_ir({"model": "m", "input": ["a"], "dimensions": 4,
                                           "task_type": "CLUSTERING"})
    payload, options = gemini_embeddings.request_from_ir(req, req.inputs, "g-1")
    assert options == {"method": "batchEmbedContents"}
    assert payload == {"model": "g-1", "requests": [{
        "model": "models/g-1", "content": {"parts": [{"text": "a"}]},
        "taskType": "CLUSTERING", "outputDimensionality": 4}]}
    tokens = openai_embeddings.request_to_ir({"model": "m", "input": [[1], [2]]})
    with pytest.raises(InvalidRequest) as caught:
        gemini_embeddings.request_from_ir(tokens, tokens.inputs, "g-1")
    assert caught.value.param == "input[0]"


def test_gemini_client_requests_and_answers():
    body = {"requests": [{"content": {"parts": [{"text": "a"}, {"text": "b"}]},
                          "task_type": "RETRIEVAL_DOCUMENT", "title": "T"}]}
    req = gemini_embeddings.request_to_ir({**body, "model": "g"}, "batchEmbedContents")
    [item] = req.inputs
    assert (item.text, item.task_type, item.title, item.param) == (
        "a\nb", "RETRIEVAL_DOCUMENT", "T", "requests[0].content")
    answer = EmbedAnswer([[0.5, 0.25]], None)
    assert gemini_embeddings.answer_from_ir(answer, req, 7, 0) == (
        b'{"embeddings":[{"values":[0.5,0.25]}]}')
    single = gemini_embeddings.request_to_ir({"content": {"parts": [{"text": "a"}]},
                                              "model": "g"}, "embedContent")
    answer = EmbedAnswer([[1.0]], 7)
    assert gemini_embeddings.answer_from_ir(answer, single, 7, 0) == (
        b'{"embedding":{"values":[1.0]},"usageMetadata":{"promptTokenCount":7,'
        b'"totalTokenCount":7}}')
    assert gemini_embeddings.answer_to_ir({"embedding": {"values": [1]}}, 1,
                                          {"method": "embedContent"}).vectors == [[1]]
    with pytest.raises(ValueError):
        gemini_embeddings.answer_to_ir({"embeddings": [{"values": ["x"]}]}, 1, {})
