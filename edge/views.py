"""What every API view does: resolve the caller's key, read and validate the JSON body, reply."""

import functools
import json

from flask import Response, current_app, g, jsonify, request

from edge.errors import caller_family
from edge.ratelimit import client_address
from errors import AuthenticationFailed, InvalidRequest, PermissionDenied
from extensions import db
from translation.registry import FORMATS


def presented_key() -> str | None:
    """The client's key from any of the places the official SDKs put it."""
    auth = request.headers.get("Authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip() or None
    return (request.headers.get("x-api-key") or request.headers.get("x-goog-api-key")
            or request.args.get("key") or None)


def authenticate():
    """Resolve the caller, or raise 401; 429 for an address that keeps failing.

    A key resolved lately (the key cache) is let in without reading the failure counter: the
    hot path costs no storage call, and a client with a working key is not locked out by
    guesses from an address it shares. Any other key is checked against the counter before
    the database is asked, so guesses are refused (429) before they cost a lookup."""
    keys, key = current_app.extensions["keys"], presented_key()
    caller = keys.cached(key)
    if caller is None:
        failures, address = current_app.extensions["auth_failures"], client_address()
        failures.check(address)
        caller = keys.authenticate(db.session, key)
        if caller is None:
            if key:  # a wrong key is a guess; a missing one is a misconfigured client
                failures.record(address)
            raise AuthenticationFailed("Incorrect or missing API key. Pass a valid key as "
                                       f"'{FORMATS[caller_family()].key_header}'.")
    g.caller = caller


def require_model(model: str) -> None:
    """403 unless the caller's plan allows this model."""
    if not g.caller.plan.allows(model):
        raise PermissionDenied(f"Your plan ({g.caller.plan.name}) does not include the model "
                               f"'{model}'.", param="model", code="model_not_allowed")


def json_body() -> dict:
    """The request body as a JSON object, or a clear 400/413 (Flask's own answers are HTML)."""
    raw = request.get_data(cache=True)  # raises RequestEntityTooLarge past MAX_CONTENT_LENGTH
    if not raw.strip():
        raise InvalidRequest("The request body is empty; send a JSON object.")
    try:
        body = _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except (ValueError, RecursionError) as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {_short(exc)}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    return body


def validate(schema, body: dict) -> None:
    """Check body against a marshmallow schema; the first problem becomes a 400 naming the field.

    Only the fields the body has (and the required ones) are checked: marshmallow goes through
    every declared field for each load, and a chat request sets three of eleven (17 us of 31
    saved a request). What is absent can have no bad value, and the errors are the same."""
    errors = _narrowed(schema, body).validate(body)
    if errors:
        param, message = first_error(errors)
        raise InvalidRequest(f"Invalid value for '{param}': {message}", param=param)


def _narrowed(schema, body: dict):
    """`schema` limited to the fields present in `body` and the required ones (kept per set, so
    a schema is built once per shape of request), or `schema` itself when it was made with
    options a narrowed copy would not carry."""
    names = _field_names(schema)
    if names is None:
        return schema
    present = frozenset(names[key] for key in body if key in names)
    return _schema_for(schema, present)


@functools.lru_cache(maxsize=64)
def _field_names(schema) -> dict | None:
    """{the key a field is read from: its name}, or None for a schema not to narrow."""
    if schema.many or schema.partial or schema.only is not None or schema.exclude:
        return None
    return {field.data_key or name: name for name, field in schema.load_fields.items()}


@functools.lru_cache(maxsize=512)  # bounded: a client can send any combination of fields
def _schema_for(schema, present: frozenset):
    only = tuple(name for name, field in schema.load_fields.items()  # errors in the same order
                 if field.required or name in present)
    return type(schema)(only=only, unknown=schema.unknown)


def first_error(messages, path="") -> tuple[str, str]:
    """Flatten marshmallow's nested error dict to ("messages[0].role", "Must be one of …")."""
    if isinstance(messages, dict):
        key, value = next(iter(messages.items()))
        if key == "_schema":  # marshmallow's name for "the value itself", e.g. not an object
            return first_error(value, path)
        step = f"[{key}]" if isinstance(key, int) else (f".{key}" if path else str(key))
        return first_error(value, path + step)
    if isinstance(messages, list) and messages:
        return first_error(messages[0], path) if not isinstance(messages[0], str) else (
            path, messages[0])
    return path, str(messages)


def to_response(reply) -> Response:
    """A Flask response for a relay Reply; streams are sent chunk by chunk as they come.

    Streams need no request context (billing keeps its own sessions), so they are not wrapped
    in stream_with_context, which would hide a close() that comes before the first chunk.
    """
    return Response(reply.body, status=reply.status, headers=reply.headers,
                    content_type=reply.content_type)


def _reject_constant(name):
    raise ValueError(f"{name} is not a valid JSON number")


# What json.loads(raw, parse_constant=...) does, with its decoder made once: given a keyword,
# json.loads builds a new decoder for each call, and its C scanner looks the decoder's six
# settings up by names made afresh, which CPython's attribute cache then keeps alive.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def _short(exc) -> str:
    return "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]


def allowed_models() -> list[tuple[str, str]]:
    """(model, provider name) for the models this caller's plan allows."""
    plan = g.caller.plan
    return [(m, owner) for m, owner in current_app.extensions["relay"].registry.models()
            if plan.allows(m)]


def model_list(family: str) -> Response:
    """The models this caller may use, in the list shape of the `family` format."""
    registry = current_app.extensions["relay"].registry
    embeds, draws = registry.embedding_models(), registry.image_models()
    return jsonify(FORMATS[family].model_list([
        FORMATS[family].model_entry(m, owner, registry.created, embeds=m in embeds,
                                    outputs=draws.get(m))
        for m, owner in allowed_models()]))


def one_model(family: str, segment: str) -> Response:
    """One model this caller may use, in the `family` format's shape; else its 404."""
    fmt, registry = FORMATS[family], current_app.extensions["relay"].registry
    name = fmt.model_id(segment)
    for model, owner in allowed_models():
        if model == name:
            return jsonify(fmt.model_entry(model, owner, registry.created,
                                           embeds=model in registry.embedding_models(),
                                           outputs=registry.image_models().get(model)))
    raise fmt.model_missing(name)
