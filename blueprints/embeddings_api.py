"""Embeddings: OpenAI's POST /embeddings (under /v1, /api/v1 and /api/v1/ai), and Gemini's
:embedContent and :batchEmbedContents, which the Gemini blueprint hands to `gemini_embed`.
Both count in the `embeddings` rate-limit family."""

from flask import Blueprint, current_app, g
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from blueprints.common import authenticate, json_body, require_model, to_response
from blueprints.common import validate as check
from blueprints.ratelimit import limited
from blueprints.schemas import StrictInteger
from errors import InvalidRequest
from translation.embeddings import MAX_INPUTS
from translation.gemini_embeddings import normalize_request

bp = Blueprint("embeddings_api", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")  # the OpenAI family's paths
FAMILY = "embeddings"
TASK_TYPE = r"^[A-Za-z_]{1,64}$"  # RETRIEVAL_QUERY, ...: sent upstream in capitals
KINDS = "Must be a string, a list of strings, or a list of token arrays (lists of integers)."


def _is_token(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def input_problem(value):
    """Why `input` cannot be embedded (a message, or {index: message}), or None when it can."""
    if isinstance(value, str):
        return None if value else "Must not be an empty string."
    if not isinstance(value, list):
        return KINDS
    if not value:
        return "Must not be an empty list."
    if len(value) > MAX_INPUTS:
        return f"At most {MAX_INPUTS} inputs per request; got {len(value)}."
    if all(_is_token(v) for v in value):
        return None  # one token array
    first = type(value[0])
    for i, item in enumerate(value):
        if isinstance(item, str):
            if not item:
                return {i: "Must not be an empty string."}
        elif isinstance(item, list):
            if not item or not all(_is_token(t) for t in item):
                return {i: "A token array must be a non-empty list of non-negative integers."}
        else:
            return {i: "Must be a string (or, in a list of token arrays, a list of integers)."}
        if type(item) is not first:
            return {i: "Inputs must all be strings or all be token arrays."}
    return None


class EmbeddingInput(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        problem = input_problem(value)
        if problem:
            raise ValidationError(problem if isinstance(problem, dict) else [problem])
        return value


class EmbeddingsIn(Schema):
    class Meta:
        unknown = INCLUDE  # fields we do not model go to OpenAI-type upstreams as they are

    model = fields.String(required=True, validate=validate.Length(min=1, max=256))
    input = EmbeddingInput(required=True)
    dimensions = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    encoding_format = fields.String(allow_none=True,
                                    validate=validate.OneOf(("float", "base64")))
    user = fields.String(allow_none=True)
    task_type = fields.String(validate=validate.Regexp(TASK_TYPE))
    provider = fields.String(validate=validate.Length(min=1, max=64))


class Parts(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not value:
            raise ValidationError("Must be a non-empty list of parts.")
        for i, part in enumerate(value):
            if not isinstance(part, dict) or not part:
                raise ValidationError({i: ["Must be an object with one data field."]})
            if "text" in part and not isinstance(part["text"], str):
                raise ValidationError({i: ["'text' must be a string."]})
        if all(part.get("text") == "" for part in value):
            raise ValidationError("There is no text to embed.")
        return value


class ContentIn(Schema):
    class Meta:
        unknown = INCLUDE

    parts = Parts(required=True)


class EmbedContentIn(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(validate=validate.Length(min=1, max=300))
    content = fields.Nested(ContentIn, required=True)
    taskType = fields.String(validate=validate.Regexp(TASK_TYPE))
    title = fields.String()
    outputDimensionality = StrictInteger(validate=validate.Range(min=1))
    provider = fields.String(validate=validate.Length(min=1, max=64))


class BatchEmbedContentsIn(Schema):
    class Meta:
        unknown = INCLUDE

    requests = fields.List(fields.Nested(EmbedContentIn), required=True,
                           validate=validate.Length(min=1, max=MAX_INPUTS))
    provider = fields.String(validate=validate.Length(min=1, max=64))


# built once: a schema instance costs ~0.4 ms to make
EMBEDDINGS_IN, EMBED_CONTENT_IN, BATCH_IN = EmbeddingsIn(), EmbedContentIn(), BatchEmbedContentsIn()


@bp.before_request
def require_key():
    authenticate()


@bp.post("/embeddings")
@limited(FAMILY)
def create_embeddings():
    body = json_body()
    check(EMBEDDINGS_IN, body)
    require_model(body["model"])
    body = {k: v for k, v in body.items() if v is not None}  # null: as if not given
    if "task_type" in body:
        body["task_type"] = body["task_type"].upper()
    return to_response(current_app.extensions["embeddings"].embed("openai", body,
                                                                   caller=g.caller))


@limited(FAMILY)
def gemini_embed(model: str, method: str, body: dict):
    """:embedContent and :batchEmbedContents for one model (keys already camelCase)."""
    if method == "embedContent":
        body = normalize_request(body)
        check(EMBED_CONTENT_IN, body)
        _same_model(model, body.get("model"), "model")
        _capital_task_type(body)
    else:
        if isinstance(body.get("requests"), list):
            body["requests"] = [normalize_request(r) if isinstance(r, dict) else r
                                for r in body["requests"]]
        check(BATCH_IN, body)
        for i, request in enumerate(body["requests"]):
            _same_model(model, request.get("model"), f"requests[{i}].model")
            _capital_task_type(request)
    require_model(model)
    embeddings = current_app.extensions["embeddings"]
    return to_response(embeddings.embed("gemini", {**body, "model": model}, caller=g.caller,
                                        method=method))


def _same_model(model: str, named: str | None, param: str) -> None:
    """A request item may name its model, but only the one in the URL (as Gemini requires)."""
    if named is not None and named.removeprefix("models/") != model:
        raise InvalidRequest(f"'{param}' is '{named}', but the URL names 'models/{model}'; "
                             "a batch embeds with one model.", param=param)


def _capital_task_type(request: dict) -> None:
    """Task types are enum names, in capitals on the wire; clients may write them in lower case."""
    if "taskType" in request:
        request["taskType"] = request["taskType"].upper()
