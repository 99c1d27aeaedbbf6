"""The OpenAI-compatible API: chat completions and models, under /v1, /api/v1 and /api/v1/ai."""

from flask import Blueprint, current_app, g, request
from marshmallow import INCLUDE, Schema, fields, validate

from edge.errors import sdk_family
from edge.ratelimit import limited, reports
from edge.schemas import StopSequences, StoredName, StrictBoolean, StrictInteger, StrictNumber
from edge.views import authenticate, json_body, model_list, one_model, require_model, to_response
from edge.views import validate as check
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.inbound import Inbound

bp = Blueprint("openai_api", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")
ROLES = ("system", "developer", "user", "assistant", "tool")


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
