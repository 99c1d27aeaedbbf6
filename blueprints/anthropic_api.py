"""The Anthropic Messages API: /v1/messages and count_tokens, under /v1 and /api/v1."""

from datetime import UTC, datetime

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from blueprints.common import (
    allowed_models,
    authenticate,
    error_response,
    json_body,
    require_model,
    to_response,
)
from blueprints.common import validate as check
from blueprints.ratelimit import limited, reports
from blueprints.schemas import StoredName, StrictBoolean, StrictInteger, StrictNumber
from errors import GatewayError, ModelNotFound
from services.counting import count_input_tokens
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.anthropic import BETA_KEY, error_body

bp = Blueprint("anthropic_api", __name__)
BASE_PATHS = ("/v1", "/api/v1")
BLOCK_TYPES = ("text", "image", "document", "tool_use", "tool_result", "thinking",
               "redacted_thinking", "search_result", "server_tool_use", "container_upload")


class Content(fields.Field):
    """A string, or a list of content blocks each with a known `type`."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if not isinstance(value, list):
            raise ValidationError("Must be a string or a list of content blocks.")
        for i, block in enumerate(value):
            if not isinstance(block, dict) or not isinstance(block.get("type"), str):
                raise ValidationError(f"Block {i} must be an object with a 'type'.")
            if block["type"] == "text" and not isinstance(block.get("text"), str):
                raise ValidationError(f"Block {i}: a text block needs a 'text' string.")
        return value


class SystemPrompt(fields.Field):
    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str) or (isinstance(value, list) and all(
                isinstance(b, dict) and b.get("type") == "text" and isinstance(b.get("text"), str)
                for b in value)):
            return value
        raise ValidationError("Must be a string or a list of text blocks.")


class MessageIn(Schema):
    class Meta:
        unknown = INCLUDE

    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant")))
    content = Content(required=True)


class ToolIn(Schema):
    class Meta:
        unknown = INCLUDE  # server tools (web search, …) carry their own fields

    name = fields.String(required=True, validate=validate.Length(min=1, max=128))
    input_schema = fields.Dict()


class CountTokensIn(Schema):
    class Meta:
        unknown = INCLUDE  # fields we do not model are forwarded

    model = StoredName(MODEL_MAX, required=True)
    messages = fields.List(fields.Nested(MessageIn), required=True,
                           validate=validate.Length(min=1))
    system = SystemPrompt()
    tools = fields.List(fields.Nested(ToolIn))
    tool_choice = fields.Dict()
    provider = StoredName(PROVIDER_MAX)


class MessagesIn(CountTokensIn):
    max_tokens = StrictInteger(required=True, validate=validate.Range(min=1))
    temperature = StrictNumber(validate=validate.Range(0, 1))
    top_p = StrictNumber(validate=validate.Range(0, 1))
    top_k = StrictInteger(validate=validate.Range(min=0))
    stop_sequences = fields.List(fields.String())
    stream = StrictBoolean()
    metadata = fields.Dict()


# built once: a schema instance costs ~0.4 ms to make
MESSAGES_IN, COUNT_TOKENS_IN = MessagesIn(), CountTokensIn()


@bp.before_request
def require_key():
    authenticate("anthropic")


@bp.post("/messages")
@limited("chat")
def messages():
    body = json_body()
    check(MESSAGES_IN, body)
    require_model(body["model"])
    if beta := request.headers.get("anthropic-beta"):
        body[BETA_KEY] = beta  # features the client opted into, for an Anthropic upstream
    relay = current_app.extensions["relay"]
    reply = relay.chat("anthropic", body, caller=g.caller,
                       client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


@bp.post("/messages/count_tokens")
@reports("chat")
def count_tokens():
    body = json_body()
    check(COUNT_TOKENS_IN, body)
    require_model(body["model"])
    tokens, estimated = count_input_tokens(current_app.extensions["relay"], "anthropic", body)
    response = jsonify(input_tokens=tokens)
    if estimated:
        response.headers["x-tollgate-token-count"] = "estimated"
    return response


def list_models():
    """GET /v1/models for the Anthropic SDK (served through openai_api, which owns the path)."""
    data = [_model(m) for m, _ in _models()]
    return jsonify(data=data, has_more=False, first_id=data[0]["id"] if data else None,
                   last_id=data[-1]["id"] if data else None)


def get_model(model):
    if any(name == model for name, _ in _models()):
        return jsonify(_model(model))
    raise ModelNotFound(f"model: {model}")


def _models():
    return allowed_models()


def _model(name):
    created = current_app.extensions["relay"].registry.created
    return {"type": "model", "id": name, "display_name": name,
            "created_at": datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}


@bp.errorhandler(GatewayError)
def gateway_error(err):
    return render_error(err)


def render_error(err):
    """An Anthropic-shaped error response for any GatewayError."""
    return error_response(err, error_body)
