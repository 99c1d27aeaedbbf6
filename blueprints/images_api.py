"""The OpenAI images API: POST /images/generations (JSON) and /images/edits (multipart), under
/v1, /api/v1 and /api/v1/ai; and the stored images themselves at /v1/images/files/<id>."""

from flask import Blueprint, Response, abort, current_app, g, request
from marshmallow import INCLUDE, Schema, fields, validate

from edge.ratelimit import limited
from edge.schemas import StoredName, StrictInteger
from edge.views import authenticate, json_body, require_model, to_response
from edge.views import validate as check
from errors import InvalidRequest
from providers.images import SourceImage, image_type
from services.image_store import extension
from services.images import MAX_IMAGES, QUALITIES
from services.names import MODEL_MAX, PROVIDER_MAX

bp = Blueprint("images_api", __name__)
files_bp = Blueprint("image_files", __name__)
BASE_PATHS = ("/v1", "/api/v1", "/api/v1/ai")
MAX_UPLOADS = 16  # images one edit may carry (gpt-image models take up to 16)
UPLOAD_TYPES = ("image/png", "image/jpeg", "image/webp")


class ImagesIn(Schema):
    class Meta:
        unknown = INCLUDE  # newer SDK fields (background, output_format, ...) are tolerated

    model = StoredName(MODEL_MAX, required=True)
    prompt = fields.String(required=True, validate=validate.Length(min=1, max=100_000))
    n = StrictInteger(allow_none=True, validate=validate.Range(1, MAX_IMAGES))
    size = fields.String(allow_none=True, validate=validate.Length(max=32))
    quality = fields.String(allow_none=True, validate=validate.OneOf(tuple(QUALITIES)))
    response_format = fields.String(allow_none=True,
                                    validate=validate.OneOf(("url", "b64_json")))
    style = fields.String(allow_none=True, validate=validate.OneOf(("vivid", "natural")))
    user = fields.String(allow_none=True, validate=validate.Length(max=256))
    provider = StoredName(PROVIDER_MAX)
    stream = fields.Boolean(allow_none=True, validate=validate.Equal(
        False, error="Streaming partial images is not supported; leave stream unset."))


IMAGES_IN = ImagesIn()


@bp.before_request
def require_key():
    authenticate()


@bp.post("/images/generations")
@limited("images")
def generations():
    body = json_body()
    return _create(body)


@bp.post("/images/edits")
@limited("images")
def edits():
    request.max_content_length = current_app.config["IMAGE_MAX_UPLOAD_BYTES"]
    if not request.mimetype.startswith("multipart/form-data"):
        raise InvalidRequest("Send an image edit as multipart/form-data, with the image as "
                             "'image' (or several as 'image[]').", param="image")
    body = {k: v for k, v in request.form.items()}
    if isinstance(body.get("n"), str) and body["n"].strip().isdigit():
        body["n"] = int(body["n"])
    if body.get("stream") in ("true", "false"):
        body["stream"] = body["stream"] == "true"
    uploads = [_upload(f, "image") for name in ("image", "image[]")
               for f in request.files.getlist(name)]
    if not uploads:
        raise InvalidRequest("Invalid value for 'image': an image file is required.",
                             param="image")
    if len(uploads) > MAX_UPLOADS:
        raise InvalidRequest(f"Invalid value for 'image': at most {MAX_UPLOADS} images.",
                             param="image")
    mask = request.files.get("mask")
    return _create(body, uploads=uploads, mask=_upload(mask, "mask") if mask else None)


def _create(body, uploads=(), mask=None):
    check(IMAGES_IN, body)
    require_model(body["model"])
    body = {k: v for k, v in body.items() if v is not None}  # null: as if not given
    reply = current_app.extensions["images"].create(body, caller=g.caller,
                                                    public_base=public_base(), uploads=uploads,
                                                    mask=mask)
    return to_response(reply)


def _upload(storage, param: str):
    """An uploaded file as a providers.images.SourceImage; its type from its bytes."""
    data = storage.read()
    if not data:
        raise InvalidRequest(f"Invalid value for '{param}': the file is empty.", param=param)
    mime = image_type(data)
    if mime not in UPLOAD_TYPES:
        raise InvalidRequest(f"Invalid value for '{param}': upload a PNG, JPEG or WebP image.",
                             param=param)
    name = (storage.filename or "image")[-100:]
    return SourceImage(data=data, mime=mime, filename=name)


def public_base() -> str:
    """The gateway's address as the client reaches it, for `url` answers."""
    configured = current_app.config["IMAGE_PUBLIC_URL"]
    return (configured or request.url_root).rstrip("/")


@files_bp.get("/v1/images/files/<name>")
def image_file(name):
    """A stored image by its id; unknown, expired or malformed ids are all the same 404."""
    image_id = name.partition(".")[0]
    found = current_app.extensions["image_store"].load(image_id)
    if found is None:
        abort(404)
    data, mime = found
    response = Response(data, mimetype=mime)
    response.headers["Cache-Control"] = "private, max-age=86400, immutable"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response.headers["Content-Disposition"] = f'inline; filename="{image_id}.{extension(mime)}"'
    return response
