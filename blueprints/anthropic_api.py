"""The Anthropic Messages API: /v1/messages and count_tokens, under /v1 and /api/v1."""

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from edge.ratelimit import limited, reports
from edge.schemas import StoredName, StrictBoolean, StrictInteger, StrictNumber
from edge.views import authenticate, json_body, require_model, to_response
from edge.views import validate as check
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.inbound import Inbound

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
    authenticate()


def inbound(body: dict) -> Inbound:
    """The request, with the features the client opted into (anthropic-beta) beside the body:
    an Anthropic upstream gets that header as it came."""
    beta = request.headers.get("anthropic-beta")
    return Inbound("anthropic", body, body["model"], stream=bool(body.get("stream")),
                   provider=body.get("provider"), headers={"anthropic-beta": beta} if beta else {})


@bp.post("/messages")
@limited("chat")
def messages():
    body = json_body()
    check(MESSAGES_IN, body)
    require_model(body["model"])
    reply = current_app.extensions["relay"].chat(
        inbound(body), caller=g.caller, client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


@bp.post("/messages/count_tokens")
@reports("chat")
def count_tokens():
    body = json_body()
    check(COUNT_TOKENS_IN, body)
    require_model(body["model"])
    tokens, estimated = current_app.extensions["relay"].count_tokens(inbound(body))
    response = jsonify(input_tokens=tokens)
    if estimated:
        response.headers["x-tollgate-token-count"] = "estimated"
    return response
