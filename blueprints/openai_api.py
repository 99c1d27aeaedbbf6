"""The OpenAI-compatible API: chat completions, embeddings and models, under /v1, /api/v1 and
/api/v1/ai."""

from flask import Blueprint, current_app, g, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from edge.errors import sdk_family
from edge.ratelimit import limited, reports
from edge.schemas import StopSequences, StoredName, StrictBoolean, StrictInteger, StrictNumber
from edge.views import authenticate, json_body, model_list, one_model, require_model, to_response
from edge.views import validate as check
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.embeddings import MAX_INPUTS
from translation.inbound import Inbound

bp = Blueprint("openai_api", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")
ROLES = ("system", "developer", "user", "assistant", "tool")


class Messages(fields.Field):
    """A non-empty list of messages, each an object with one of ROLES as its role; the rest of
    a message (content parts, tool calls, names) is forwarded as it is. One loop over the list:
    a nested schema per message cost about 7 us each, on every request of a long conversation.
    Errors are shaped as a nested schema's would be, so they name `messages[3].role`."""

    ROLE_ERROR = f"Must be one of: {', '.join(ROLES)}."

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Not a valid list.")
        if not value:
            raise ValidationError("Shorter than minimum length 1.")
        for i, message in enumerate(value):
            if not isinstance(message, dict):
                raise ValidationError({i: {"_schema": ["Invalid input type."]}})
            role = message.get("role")
            if role not in ROLES or not isinstance(role, str):
                problem = ("Missing data for required field." if "role" not in message
                           else self.ROLE_ERROR)
                raise ValidationError({i: {"role": [problem]}})
        return value


class ChatCompletionIn(Schema):
    class Meta:
        unknown = INCLUDE  # fields we do not model are forwarded: upstream APIs grow monthly

    model = StoredName(MODEL_MAX, required=True)
    messages = Messages(required=True)
    temperature = StrictNumber(allow_none=True, validate=validate.Range(0, 2))
    top_p = StrictNumber(allow_none=True, validate=validate.Range(0, 1))
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    n = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    stop = StopSequences(allow_none=True)
    stream = StrictBoolean(allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    provider = StoredName(PROVIDER_MAX)


TASK_TYPE = r"^[A-Za-z_]{1,64}$"  # Gemini's RETRIEVAL_QUERY, ...: sent upstream in capitals
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

    model = StoredName(MODEL_MAX, required=True)
    input = EmbeddingInput(required=True)
    dimensions = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    encoding_format = fields.String(allow_none=True,
                                    validate=validate.OneOf(("float", "base64")))
    user = fields.String(allow_none=True)
    task_type = fields.String(validate=validate.Regexp(TASK_TYPE))
    provider = StoredName(PROVIDER_MAX)


# built once: a schema instance costs ~0.4 ms to make
CHAT_COMPLETION_IN, EMBEDDINGS_IN = ChatCompletionIn(), EmbeddingsIn()


@bp.before_request
def require_key():
    authenticate()


@bp.post("/chat/completions")
@limited("chat")
def chat_completions():
    body = json_body()
    check(CHAT_COMPLETION_IN, body)
    require_model(body["model"])
    inbound = Inbound("openai", body, body["model"], stream=bool(body.get("stream")),
                      provider=body.get("provider"))
    reply = current_app.extensions["relay"].chat(
        inbound, caller=g.caller, client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


@bp.post("/embeddings")
@limited("embeddings")
def create_embeddings():
    body = json_body()
    check(EMBEDDINGS_IN, body)
    require_model(body["model"])
    body = {k: v for k, v in body.items() if v is not None}  # null: as if not given
    if "task_type" in body:
        body["task_type"] = body["task_type"].upper()
    return to_response(current_app.extensions["embeddings"].embed("openai", body,
                                                                   caller=g.caller))


# GET /v1/models is also what the Anthropic SDK and google-genai (API version v1) call: the
# list is in the shape the caller's SDK expects.
@bp.get("/models")
@reports("chat")
def list_models():
    return model_list(sdk_family())


@bp.get("/models/<path:model>")
@reports("chat")
def get_model(model):
    return one_model(sdk_family(), model)
