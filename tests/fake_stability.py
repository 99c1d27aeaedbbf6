"""A fake Stability AI Stable Image API (v2beta) on loopback, speaking its real wire format.

`POST /v2beta/stable-image/generate/{core,ultra,sd3}` takes multipart/form-data (prompt,
aspect_ratio, output_format, seed, negative_prompt, style_preset; sd3: model, mode) and answers
by the Accept header: `image/*` -> the image's bytes with `finish-reason` and `seed` headers,
`application/json` -> `{"image": base64, "finish_reason", "seed"}`. Errors have Stability's
shape `{"id", "name", "errors": [...]}`; a prompt with a word of `fake.banned` is refused by
"content moderation" (403). Every request is recorded with its parsed form fields. Scripts
(`fake.push`) make the next requests fail, filter their output or wait.
See https://platform.stability.ai/docs/api-reference#tag/Generate
"""

import base64
import json
import threading
import uuid
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeServer
from tests.pngs import png, ratio_size

ENDPOINTS = ("core", "ultra", "sd3")
ASPECT_RATIOS = ("16:9", "1:1", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")
SD3_MODELS = ("sd3.5-large", "sd3.5-large-turbo", "sd3.5-medium", "sd3.5-flash")
OUTPUT_FORMATS = {"core": ("png", "jpeg", "webp"), "ultra": ("png", "jpeg", "webp"),
                  "sd3": ("png", "jpeg")}
FIELDS = {"prompt", "aspect_ratio", "output_format", "seed", "negative_prompt", "style_preset",
          "model", "mode", "image", "strength", "cfg_scale"}
MAX_SEED = 4294967294


@dataclass
class StabilityScript:
    """How to answer one generate request (defaults: a normal success)."""

    status: int = 200
    body: object = None  # an error body sent with `status`
    headers: dict = field(default_factory=dict)
    finish_reason: str = "SUCCESS"  # CONTENT_FILTERED: a blurred image, as the real API sends
    wait: threading.Event | None = None  # hold the answer until this is set
    answer_json: bool = False  # the JSON answer whatever the Accept header says


@dataclass
class StabilityReceived:
    method: str
    path: str
    headers: dict
    form: dict  # the multipart fields (files as (filename, bytes))
    content_type: str


class FakeStability(FakeServer):
    """scripts: StabilityScript, received: StabilityReceived."""

    def __init__(self):
        super().__init__()
        self.banned = ("forbidden",)  # prompts with these words fail content moderation
        self.barrier: threading.Barrier | None = None  # calls that must arrive together

    def wsgi(self, environ, start_response):
        request = Request(environ)
        form = {k: v for k, v in request.form.items()}
        form.update({k: (f.filename, f.read()) for k, f in request.files.items()})
        record = StabilityReceived(request.method, request.path, dict(request.headers), form,
                                   request.content_type or "")
        with self.lock:
            self.received.append(record)
            script = self.scripts.popleft() if self.scripts else StabilityScript()
        if self.barrier is not None:
            self.barrier.wait()  # raises BrokenBarrierError when the calls came one by one
        if script.wait is not None:
            script.wait.wait(10)
        return self._answer(request, record, script)(environ, start_response)

    def _answer(self, request, record, script):
        endpoint = request.path.removeprefix("/v2beta/stable-image/generate/")
        if request.method != "POST" or endpoint not in ENDPOINTS:
            return error(404, "not_found", f"{request.path}: no such endpoint")
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return error(401, "unauthorized", "authorization: missing or malformed")
        if script.status != 200:
            return Response(json.dumps(script.body or _error_body(
                "server_error", f"scripted HTTP {script.status}")), status=script.status,
                headers=script.headers, content_type="application/json")
        if not record.content_type.startswith("multipart/form-data"):
            return error(400, "bad_request", "content-type: must be multipart/form-data")
        problem = self._invalid(endpoint, record.form)
        if problem:
            return error(400, "bad_request", problem)
        prompt = record.form["prompt"]
        if any(word in prompt.lower() for word in self.banned):
            return error(403, "content_moderation",
                         "Your request was flagged by our content moderation system, as a "
                         "result your request was denied and you were not charged.")
        accept = request.headers.get("accept", "image/*")
        if not accept.startswith(("image/", "application/json")):
            return error(400, "bad_request", "accept: must be image/* or application/json")
        ratio = record.form.get("aspect_ratio", "1:1")
        seed = int(record.form.get("seed") or 0) or (uuid.uuid4().int % MAX_SEED)
        with self.lock:
            number = len(self.received)
        image = png(*ratio_size(ratio), seed=f"{prompt}|{number}")
        headers = {"finish-reason": script.finish_reason, "seed": str(seed),
                   "x-request-id": uuid.uuid4().hex, **script.headers}
        if accept.startswith("application/json") or script.answer_json:
            body = {"image": base64.b64encode(image).decode(),
                    "finish_reason": script.finish_reason, "seed": seed}
            return Response(json.dumps(body), headers=headers,
                            content_type="application/json; type=image/png")
        return Response(image, headers=headers, content_type="image/png")

    @staticmethod
    def _invalid(endpoint: str, form: dict) -> str | None:
        """What the real API would refuse in these fields, or None."""
        unknown = set(form) - FIELDS
        if unknown:
            return f"{sorted(unknown)[0]}: unknown field"
        prompt = form.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return "prompt: cannot be empty"
        if len(prompt) > 10000:
            return "prompt: must be at most 10000 characters"
        if form.get("aspect_ratio", "1:1") not in ASPECT_RATIOS:
            return f"aspect_ratio: must be one of {', '.join(ASPECT_RATIOS)}"
        if form.get("output_format", "png") not in OUTPUT_FORMATS[endpoint]:
            return f"output_format: must be one of {', '.join(OUTPUT_FORMATS[endpoint])}"
        seed = form.get("seed", "0")
        if not seed.isdigit() or int(seed) > MAX_SEED:
            return f"seed: must be an integer from 0 to {MAX_SEED}"
        if endpoint == "sd3" and form.get("model", "sd3.5-large") not in SD3_MODELS:
            return f"model: must be one of {', '.join(SD3_MODELS)}"
        if endpoint != "sd3" and ("model" in form or "mode" in form):
            return "model: not a parameter of this endpoint"
        return None


def _error_body(name: str, message: str) -> dict:
    return {"id": uuid.uuid4().hex, "name": name, "errors": [message]}


def error(status: int, name: str, message: str) -> Response:
    """An error in Stability's shape."""
    return Response(json.dumps(_error_body(name, message)), status=status,
                    content_type="application/json")
