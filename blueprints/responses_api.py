"""The OpenAI Responses API: /responses and its stored responses, under /v1, /api/v1 and
/api/v1/ai (errors in the OpenAI envelope, with `param`)."""

import re

from flask import Blueprint, current_app, g, jsonify, request
from marshmallow import INCLUDE, Schema, ValidationError, fields, validate

from edge.ratelimit import limited, reports
from edge.schemas import StoredName, StrictBoolean, StrictInteger, StrictNumber
from edge.views import authenticate, json_body, require_model, to_response
from edge.views import validate as check
from errors import InvalidRequest
from services import conversations
from services.names import MODEL_MAX, PROVIDER_MAX
from translation.inbound import Inbound

bp = Blueprint("responses_api", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # \uD800-\uDFFF: pairs, or lone halves


class Input(fields.Field):
    """A string, or a non-empty list of item objects."""

    def _deserialize(self, value, attr, data, **kwargs):
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            return value
        raise ValidationError("Must be a string or a non-empty list of input items.")


class Metadata(fields.Dict):
    """At most 16 string values; keys up to 64 characters, values up to 512 (OpenAI's limits)."""

    def _deserialize(self, value, attr, data, **kwargs):
        value = super()._deserialize(value, attr, data, **kwargs)
        if len(value) > 16 or any(len(k) > 64 or not isinstance(v, str) or len(v) > 512
                                  for k, v in value.items()):
            raise ValidationError("At most 16 pairs of strings (keys up to 64 characters, "
                                  "values up to 512).")
        return value


def _printable(value: str) -> None:
    if _CONTROL.search(value):
        raise ValidationError("Must not contain control characters.")


class TextConfig(Schema):
    class Meta:
        unknown = INCLUDE

    format = fields.Dict(allow_none=True)


class ResponseIn(Schema):
    class Meta:
        unknown = INCLUDE  # fields we do not model are forwarded: upstream APIs grow monthly

    model = StoredName(MODEL_MAX, required=True)
    input = Input(required=True)
    instructions = fields.String(allow_none=True)
    max_output_tokens = StrictInteger(allow_none=True, validate=validate.Range(min=1))
    temperature = StrictNumber(allow_none=True, validate=validate.Range(0, 2))
    top_p = StrictNumber(allow_none=True, validate=validate.Range(0, 1))
    stream = StrictBoolean(allow_none=True)
    store = StrictBoolean(allow_none=True)
    parallel_tool_calls = StrictBoolean(allow_none=True)
    tools = fields.List(fields.Dict(), allow_none=True)
    text = fields.Nested(TextConfig, allow_none=True)
    reasoning = fields.Dict(allow_none=True)
    metadata = Metadata(allow_none=True)
    user = fields.String(allow_none=True, validate=[validate.Length(max=256), _printable])
    previous_response_id = fields.String(
        allow_none=True, validate=validate.Regexp(conversations.RESPONSE_ID,
                                                  error="Expected an id like 'resp_123'."))
    truncation = fields.String(allow_none=True, validate=validate.OneOf(("auto", "disabled")))
    provider = StoredName(PROVIDER_MAX)


class InputTokensIn(ResponseIn):
    input = Input()


RESPONSE_IN, INPUT_TOKENS_IN = ResponseIn(), InputTokensIn()


@bp.before_request
def require_key():
    authenticate()


@bp.post("/responses")
@limited("chat")
def create_response():
    reply = conversations.create(current_app.extensions["relay"],
                                 current_app.extensions["conversations"],
                                 _inbound(_request_body()), caller=g.caller,
                                 client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)


def _inbound(body: dict) -> Inbound:
    return Inbound("responses", body, body["model"], stream=bool(body.get("stream")),
                   provider=body.get("provider"))


@bp.post("/responses/input_tokens")
@reports("chat")
def input_tokens():
    body = json_body()
    check(INPUT_TOKENS_IN, body)
    require_model(body["model"])
    inbound = conversations.with_history(current_app.extensions["conversations"], _inbound(body),
                                         g.caller.user_id)
    tokens, estimated = current_app.extensions["relay"].count_tokens(inbound)
    response = jsonify(object="response.input_tokens", input_tokens=tokens)
    if estimated:
        response.headers["x-tollgate-token-count"] = "estimated"
    return response


@bp.get("/responses/<response_id>")
def get_response(response_id):
    return jsonify(current_app.extensions["conversations"].get(g.caller.user_id, response_id))


@bp.delete("/responses/<response_id>")
def delete_response(response_id):
    current_app.extensions["conversations"].delete(g.caller.user_id, response_id)
    return jsonify(id=response_id, object="response.deleted", deleted=True)


@bp.get("/responses/<response_id>/input_items")
def list_input_items(response_id):
    items = current_app.extensions["conversations"].input_items(g.caller.user_id, response_id)
    limit = _limit(request.args.get("limit", "20"))
    order = request.args.get("order", "desc")
    if order not in ("asc", "desc"):
        raise InvalidRequest("'order' must be asc or desc.", param="order")
    items = items[::-1] if order == "desc" else items
    after = request.args.get("after")
    if after:
        ids = [item.get("id") for item in items]
        if after not in ids:
            raise InvalidRequest(f"No input item '{after[:64]}' in this response.", param="after")
        items = items[ids.index(after) + 1:]
    page = items[:limit]
    return jsonify(object="list", data=page, first_id=page[0].get("id") if page else None,
                   last_id=page[-1].get("id") if page else None, has_more=len(items) > limit)


def _request_body() -> dict:
    body = json_body()
    _valid_unicode(body)
    check(RESPONSE_IN, body)
    for name, what in UNSERVED.items():
        if body.get(name):
            raise InvalidRequest(f"'{name}' is not supported by this gateway: {what}",
                                 param=name)
    require_model(body["model"])
    return body


# Features that would need state the gateway does not keep.
UNSERVED = {"background": "responses are answered while the request is open.",
            "conversation": "continue a conversation with previous_response_id instead."}


def _valid_unicode(body: dict) -> None:
    """400 for a lone UTF-16 surrogate (an unpaired \\ud800 escape): it is no character, no
    provider takes it, and it could not be stored. Only bodies that escape surrogates are walked."""
    if _SURROGATE_ESCAPE.search(request.get_data(cache=True)):
        where = _unpaired(body, "")
        if where is not None:
            raise InvalidRequest(f"'{where or 'body'}' contains an unpaired UTF-16 surrogate.",
                                 param=where or None)


def _unpaired(value, path: str) -> str | None:
    """The path of the first string holding a lone surrogate, or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path
        return None
    items = value.items() if isinstance(value, dict) else (
        enumerate(value) if isinstance(value, list) else ())
    for key, inner in items:
        step = f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else key)
        if (found := _unpaired(inner, step)) is not None:
            return found
    return None


def _limit(value: str) -> int:
    if not value.isdigit() or not 1 <= int(value) <= 100:
        raise InvalidRequest("'limit' must be an integer from 1 to 100.", param="limit")
    return int(value)

