"""The Gemini API (v1beta): generateContent, streamGenerateContent, countTokens, embedContent,
batchEmbedContents and models, under /v1beta and /api/v1beta."""

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from edge.ratelimit import limited, reports
from edge.schemas import StoredName, StrictInteger, StrictNumber
from edge.views import authenticate, json_body, model_list, one_model, require_model, to_response
from edge.views import validate as check
from errors import InvalidRequest, NotFound
from services.names import PROVIDER_MAX, check_model
from translation.embeddings import MAX_INPUTS
from translation.gemini import METHODS, lift_system_turns, normalize_keys
from translation.gemini_embeddings import METHODS as EMBED_METHODS
from translation.gemini_embeddings import normalize_request
from translation.inbound import JSON_ARRAY, SSE, Inbound

bp = Blueprint("gemini_api", __name__)
BASE_PATHS = ("/v1beta", "/api/v1beta")
# google-genai 1.x+ calls the Developer API's "v1" by default: its model calls are served under
# /v1 too (POST only; GET /v1/models is shared with the other families, see openai_api).
v1_bp = Blueprint("gemini_v1", __name__)
V1_PATHS = ("/v1", "/api/v1")


class Parts(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list) or not value:
            raise ValidationError("Must be a non-empty list of parts.")
        if not all(isinstance(p, dict) and p for p in value):
            raise ValidationError("Each part must be an object with one data field.")
        return value


class ContentIn(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(validate=validate.OneOf(("user", "model", "function")))
    parts = Parts(required=True)


class GenerationConfigIn(Schema):
    class Meta:
        unknown = INCLUDE  # thinkingConfig, responseSchema, …: forwarded as they are

    temperature = StrictNumber(allow_none=True, validate=validate.Range(0, 2))
    topP = StrictNumber(allow_none=True, validate=validate.Range(0, 1))
    topK = StrictNumber(allow_none=True, validate=validate.Range(min=0))
    maxOutputTokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    candidateCount = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    stopSequences = fields.List(fields.String(), allow_none=True, validate=validate.Length(max=5))


class GenerateContentIn(Schema):
    class Meta:
        unknown = INCLUDE

    contents = fields.List(fields.Nested(ContentIn), required=True,
                           validate=validate.Length(min=1))
    systemInstruction = fields.Nested(ContentIn, allow_none=True)
    generationConfig = fields.Nested(GenerationConfigIn, allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    toolConfig = fields.Dict(allow_none=True)
    provider = StoredName(PROVIDER_MAX)


class EmbedParts(fields.Field):
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


class EmbedContent(Schema):
    class Meta:
        unknown = INCLUDE

    parts = EmbedParts(required=True)


class EmbedContentIn(Schema):
    class Meta:
        unknown = INCLUDE

    model = fields.String(validate=validate.Length(min=1, max=300))
    content = fields.Nested(EmbedContent, required=True)
    taskType = fields.String(validate=validate.Regexp(r"^[A-Za-z_]{1,64}$"))
    title = fields.String()
    outputDimensionality = StrictInteger(validate=validate.Range(min=1))
    provider = StoredName(PROVIDER_MAX)


class BatchEmbedContentsIn(Schema):
    class Meta:
        unknown = INCLUDE

    requests = fields.List(fields.Nested(EmbedContentIn), required=True,
                           validate=validate.Length(min=1, max=MAX_INPUTS))
    provider = StoredName(PROVIDER_MAX)


# built once: a schema instance costs ~0.4 ms to make
GENERATE_CONTENT_IN, EMBED_CONTENT_IN, BATCH_IN = (GenerateContentIn(), EmbedContentIn(),
                                                   BatchEmbedContentsIn())


@bp.before_request
@v1_bp.before_request
def require_key():
    authenticate()


@bp.post("/models/<path:target>")
@v1_bp.post("/models/<path:target>")
def call_model(target):
    model, _, method = target.rpartition(":")
    if not model or method not in METHODS + EMBED_METHODS:
        raise NotFound(f"Method '{method}' is not supported on models; use one of "
                       f"{', '.join(METHODS + EMBED_METHODS)}.")
    model = check_model(model.removeprefix("models/"))  # the path's model reaches the ledger
    body = normalize_keys(json_body())
    if method in EMBED_METHODS:
        return embed(model, method, body)
    body = lift_system_turns(body)
    if method == "countTokens":
        return count_tokens(model, body)
    return generate(model, method, body)


@limited("chat")
def generate(model, method, body):
    """generateContent and streamGenerateContent: counted in the chat family's rate limits."""
    check(GENERATE_CONTENT_IN, body)
    require_model(model)
    stream = method == "streamGenerateContent"
    framing = SSE if request.args.get("alt") == "sse" else JSON_ARRAY
    inbound = Inbound("gemini", body, model, stream=stream, framing=framing,
                      provider=body.get("provider"))
    reply = current_app.extensions["relay"].chat(
        inbound, caller=g.caller, client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


@reports("chat")
def count_tokens(model, body):
    """countTokens takes `contents`, or a whole `generateContentRequest` (system, tools too)."""
    if "generateContentRequest" in body:
        if body.get("contents"):
            raise InvalidRequest("Give either 'contents' or 'generateContentRequest', not both.")
        inner = body["generateContentRequest"]
        body = lift_system_turns(normalize_keys(inner)) if isinstance(inner, dict) else {}
    check(GENERATE_CONTENT_IN, body)
    require_model(model)
    inbound = Inbound("gemini", body, model, provider=body.get("provider"))
    tokens, estimated = current_app.extensions["relay"].count_tokens(inbound)
    response = jsonify(totalTokens=tokens)
    if estimated:
        response.headers["x-tollgate-token-count"] = "estimated"
    return response


@limited("embeddings")
def embed(model: str, method: str, body: dict):
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


@bp.get("/models")
@reports("chat")
def list_models():
    return model_list("gemini")


@bp.get("/models/<path:model>")
@reports("chat")
def get_model(model):
    """One model; GET /v1/models/<model> for Gemini clients is served by openai_api."""
    return one_model("gemini", model)
