"""The playground: chat with any model the user's plan allows, streamed, from the browser.

It calls the same pipeline as the API (plan, rate limits, credit hold, ledger) on behalf of the
logged-in user: the caller is the user's session (key id 0), not a key the user pastes."""

from flask import current_app, g, render_template, request
from marshmallow import Schema, fields, validate

from edge.pages import login_required, page_blueprint
from edge.ratelimit import limited
from edge.views import json_body, require_model, to_response
from edge.views import validate as check
from extensions import db
from services.keys import Caller
from services.usage import PLAYGROUND_KEY
from translation.inbound import Inbound

bp = page_blueprint("playground", __name__, url_prefix="/playground")
MAX_TURNS = 100


class TurnIn(Schema):
    role = fields.String(required=True, validate=validate.OneOf(("user", "assistant")))
    content = fields.String(required=True, validate=validate.Length(max=200_000))


class PlaygroundChatIn(Schema):
    model = fields.String(required=True, validate=validate.Length(min=1, max=256))
    messages = fields.List(fields.Nested(TurnIn), required=True,
                           validate=validate.Length(min=1, max=MAX_TURNS))
    system = fields.String(load_default="", validate=validate.Length(max=50_000))
    temperature = fields.Float(allow_none=True, validate=validate.Range(0, 2))
    max_tokens = fields.Integer(allow_none=True, strict=True,
                                validate=validate.Range(1, 1_000_000))


PLAYGROUND_CHAT_IN = PlaygroundChatIn()


@bp.before_request
def act_for_user():
    """The logged-in user as the pipeline's caller: their plan, their credits."""
    user = g.user
    if user is not None:
        plan = current_app.extensions["keys"].plans.for_user(user.plan, user.plan_overrides)
        g.caller = Caller(key_id=PLAYGROUND_KEY, user_id=user.id, user_name=user.name,
                          plan=plan, is_admin=user.is_admin)


@bp.get("")
@login_required
def page():
    registry = current_app.extensions["relay"].registry
    draws = registry.image_models()  # the playground chats: no embedding or image-only models
    models = [m for m, _ in registry.models()
              if g.caller.plan.allows(m) and m not in registry.embedding_models()
              and "text" in draws.get(m, ("text",))]
    return render_template("playground.html", models=models)


@bp.post("/api/chat")
@login_required
@limited("chat")
def chat():
    body = json_body()
    check(PLAYGROUND_CHAT_IN, body)
    require_model(body["model"])
    messages = [{"role": t["role"], "content": t["content"]} for t in body["messages"]]
    if body.get("system", "").strip():
        messages.insert(0, {"role": "system", "content": body["system"]})
    request_body = {"model": body["model"], "messages": messages, "stream": True,
                    "stream_options": {"include_usage": True}}
    for name in ("temperature", "max_tokens"):
        if body.get(name) is not None:
            request_body[name] = body[name]
    inbound = Inbound("openai", request_body, body["model"], stream=True)
    # Hand back the pooled connection the user's session lookup took before the hold takes one
    # (the API's key lookup does the same): a pool has no overflow, a request must not wait on
    # itself.
    db.session.close()
    reply = current_app.extensions["relay"].chat(
        inbound, caller=g.caller, client_socket=request.environ.get("gunicorn.socket"))
    return to_response(reply)
