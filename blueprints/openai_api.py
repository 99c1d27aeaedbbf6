"""The OpenAI-compatible API: chat completions and models, under /v1, /api/v1 and /api/v1/ai."""

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import INCLUDE, Schema, fields, validate

from blueprints import anthropic_api, gemini_api
from blueprints.common import (
    allowed_models,
    authenticate,
    client_family,
    error_response,
    json_body,
    require_model,
    to_response,
)
from blueprints.common import validate as check
from blueprints.ratelimit import limited, reports
from blueprints.schemas import (
    StopSequences,
    StoredName,
    StrictBoolean,
    StrictInteger,
    StrictNumber,
)
from errors import GatewayError, ModelNotFound
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.openai import error_body

bp = Blueprint("openai_api", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")
ROLES = ("system", "developer", "user", "assistant", "tool")
# GET /v1/models is also what the Anthropic SDK and google-genai (API version v1) call.
OTHER_FAMILIES = {"anthropic": anthropic_api, "gemini": gemini_api}


class MessageIn(Schema):
    class Meta:
        unknown = INCLUDE  # content parts, tool calls, names: forwarded as they are

    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class ChatCompletionIn(Schema):
    class Meta:
        unknown = INCLUDE  # fields we do not model are forwarded: upstream APIs grow monthly

    model = StoredName(MODEL_MAX, required=True)
    messages = fields.List(fields.Nested(MessageIn), required=True,
                           validate=validate.Length(min=1))
    temperature = StrictNumber(allow_none=True, validate=validate.Range(0, 2))
    top_p = StrictNumber(allow_none=True, validate=validate.Range(0, 1))
    max_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    max_completion_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    n = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    stop = StopSequences(allow_none=True)
    stream = StrictBoolean(allow_none=True)
    stream_options = fields.Dict(allow_none=True)
    provider = StoredName(PROVIDER_MAX)


CHAT_COMPLETION_IN = ChatCompletionIn()  # built once: a schema instance costs ~0.4 ms to make


@bp.before_request
def require_key():
    authenticate(client_family())


@bp.post("/chat/completions")
@limited("chat")
def chat_completions():
    body = json_body()
    check(CHAT_COMPLETION_IN, body)
    require_model(body["model"])
    relay = current_app.extensions["relay"]
    reply = relay.chat("openai", body, caller=g.caller,
                       client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


@bp.get("/models")
@reports("chat")
def list_models():
    if other := OTHER_FAMILIES.get(client_family()):
        return other.list_models()
    return jsonify(object="list", data=[_model(m, owner) for m, owner in _models()])


@bp.get("/models/<path:model>")
@reports("chat")
def get_model(model):
    if other := OTHER_FAMILIES.get(client_family()):
        return other.get_model(model)
    for name, owner in _models():
        if name == model:
            return jsonify(_model(name, owner))
    raise ModelNotFound(f"The model '{model}' does not exist", param="model")


@bp.errorhandler(GatewayError)
def gateway_error(err):
    other = OTHER_FAMILIES.get(client_family()) if "/models" in request.path else None
    return other.render_error(err) if other else render_error(err)


def render_error(err):
    """An OpenAI-shaped error response for any GatewayError."""
    return error_response(err, error_body)


def _models():
    return allowed_models()


def _model(name, owner):
    created = current_app.extensions["relay"].registry.created
    return {"id": name, "object": "model", "created": created, "owned_by": owner}
