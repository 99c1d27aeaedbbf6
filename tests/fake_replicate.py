"""A fake Replicate HTTP API on loopback: predictions with their real lifecycle and shapes.

- `POST /v1/models/{owner}/{name}/predictions` (official models) and `POST /v1/predictions`
  (`{"version": ..., "input": ...}`) create a prediction, answered 201 with the prediction
  object (`id`, `status`, `input`, `output`, `error`, `urls.get`, `urls.cancel`, ...).
  `Prefer: wait=N` holds the answer until the prediction is done, or at most N seconds (capped
  by `fake.wait_cap`, so that tests do not sit out real minutes), then answers as it stands.
- `GET /v1/predictions/{id}` is polled: `starting` -> `processing` (for `polls` answers) ->
  `succeeded` (output: file URLs on this server, real PNGs), or `failed` (`error`) or
  `canceled`; mode "never" keeps it processing for ever. `POST .../cancel` cancels it.
- Inputs are checked against each model's schema (stricter than Replicate, which ignores
  unknown inputs: a mapping mistake shows up as a 422). Errors have Replicate's problem
  shape `{"title", "detail", "status"}`. Every request is recorded.
See https://replicate.com/docs/reference/http
"""

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests.fake_server import FakeServer
from tests.pngs import png, ratio_size

FLUX_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
PRO_RATIOS = ("1:1", "16:9", "3:2", "2:3", "4:5", "5:4", "9:16", "3:4", "4:3")
SD35_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "9:16", "9:21")
SDXL_VERSION = "7762fd07cf82c948538e41f63f77d685e02b063e37e496e96eefd46c929f9bdc"


@dataclass(frozen=True)
class Model:
    inputs: frozenset
    ratios: tuple = ()  # aspect_ratio choices (empty: the model takes width and height)
    many: bool = False  # num_outputs (1..4), output is a list
    list_output: bool = True  # output is a list of URLs (else one URL)
    official: bool = True  # reachable at /v1/models/{owner}/{name}/predictions


MODELS = {
    "black-forest-labs/flux-schnell": Model(frozenset({
        "prompt", "aspect_ratio", "num_outputs", "output_format", "output_quality", "seed",
        "go_fast", "megapixels", "num_inference_steps", "disable_safety_checker"}),
        FLUX_RATIOS, many=True),
    "black-forest-labs/flux-dev": Model(frozenset({
        "prompt", "aspect_ratio", "num_outputs", "output_format", "output_quality", "seed",
        "go_fast", "megapixels", "num_inference_steps", "guidance", "disable_safety_checker"}),
        FLUX_RATIOS, many=True),
    "black-forest-labs/flux-pro": Model(frozenset({
        "prompt", "aspect_ratio", "width", "height", "output_format", "output_quality",
        "safety_tolerance", "seed", "prompt_upsampling", "steps", "guidance", "interval"}),
        PRO_RATIOS, list_output=False),
    "black-forest-labs/flux-1.1-pro": Model(frozenset({
        "prompt", "aspect_ratio", "width", "height", "output_format", "output_quality",
        "safety_tolerance", "seed", "prompt_upsampling"}), PRO_RATIOS, list_output=False),
    "stability-ai/stable-diffusion-3.5-large": Model(frozenset({
        "prompt", "aspect_ratio", "cfg", "steps", "output_format", "output_quality",
        "negative_prompt", "seed", "prompt_strength", "image"}), SD35_RATIOS),
    "stability-ai/sdxl": Model(frozenset({
        "prompt", "negative_prompt", "width", "height", "num_outputs", "scheduler",
        "num_inference_steps", "guidance_scale", "seed", "refine", "apply_watermark"}),
        many=True, official=False),
}
VERSIONS = {SDXL_VERSION: "stability-ai/sdxl"}
TERMINAL = ("succeeded", "failed", "canceled")


@dataclass
class PredictionScript:
    """How the next prediction created behaves (defaults: it succeeds at once)."""

    mode: str = "succeed"  # succeed | fail | never | cancel (canceled by someone else)
    polls: int = 0  # answers `processing` this many times before its end
    error: str = "the model crashed"  # mode fail: the prediction's error
    status: int = 201  # another status: creating it fails with `body`
    body: object = None
    headers: dict = field(default_factory=dict)
    file_type: str = "image/png"  # the content type the output files are served with
    file_status: int = 200  # e.g. 404: the output URLs have expired
    outputs: int | None = None  # how many files it produces (default: num_outputs)
    data_urls: bool = False  # output as data: URLs instead of file URLs
    poll_delay: float = 0.0  # seconds each look at it (GET) takes to answer


@dataclass
class Prediction:
    id: str
    model: str
    version: str | None
    input: dict
    script: PredictionScript
    status: str = "starting"
    left: int = 0
    output: object = None
    error: str | None = None
    created_at: str = field(default_factory=lambda: _now())
    completed_at: str | None = None
    done: threading.Event = field(default_factory=threading.Event)


@dataclass
class ReplicateReceived:
    method: str
    path: str
    headers: dict
    json: object


class FakeReplicate(FakeServer):
    """scripts: PredictionScript, received: ReplicateReceived."""

    def __init__(self):
        super().__init__()
        self.predictions: dict[str, Prediction] = {}
        self.files: dict[str, tuple[str, int, bytes]] = {}  # path -> (type, status, bytes)
        self.links_base = None  # the base of the urls.get / urls.cancel links (None: this server)
        self.wait_cap = 0.1  # the longest a `Prefer: wait` is honoured here, in seconds
        self.barrier: threading.Barrier | None = None  # creations that must arrive together

    def created(self) -> list[ReplicateReceived]:
        """The prediction-creating requests received, in order."""
        return [r for r in self.received if r.method == "POST"
                and r.path.endswith("/predictions")]

    def cancels(self) -> list[str]:
        """Ids of the predictions a cancel was asked for."""
        return [r.path.split("/")[-2] for r in self.received if r.path.endswith("/cancel")]

    # ---- WSGI -------------------------------------------------------------------------------
    def wsgi(self, environ, start_response):
        request = Request(environ)
        payload = request.get_json(silent=True)
        record = ReplicateReceived(request.method, request.path, dict(request.headers), payload)
        with self.lock:
            self.received.append(record)
        return self._route(request, payload)(environ, start_response)

    def _route(self, request, payload):
        path, method = request.path, request.method
        if path.startswith("/files/") and method == "GET":
            if path not in self.files:
                return problem(404, "Not found", "The requested file does not exist.")
            mime, status, data = self.files[path]
            return Response(data, status=status, content_type=mime)
        token = request.headers.get("authorization", "")
        if not token.startswith(("Bearer ", "Token ")) or len(token.split()) != 2:
            return problem(401, "Unauthenticated", "You did not pass a valid authentication "
                           "token")
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/predictions":
            return self._create(request, payload, None)
        if (method == "POST" and len(parts) == 5 and parts[:2] == ["v1", "models"]
                and parts[4] == "predictions"):
            return self._create(request, payload, f"{parts[2]}/{parts[3]}")
        if len(parts) >= 3 and parts[:2] == ["v1", "predictions"]:
            prediction = self.predictions.get(parts[2])
            if prediction is None:
                return problem(404, "Not found", "The requested resource could not be found.")
            if method == "GET" and len(parts) == 3:
                time.sleep(prediction.script.poll_delay)
                self._advance(prediction)
                return self._json(prediction, 200)
            if method == "POST" and parts[3:] == ["cancel"]:
                with self.lock:
                    if prediction.status not in TERMINAL:
                        self._finish(prediction, "canceled")
                return self._json(prediction, 200)
        return problem(404, "Not found", "The requested resource could not be found.")

    def _create(self, request, payload, model_name):
        with self.lock:
            script = self.scripts.popleft() if self.scripts else PredictionScript()
        if self.barrier is not None:
            self.barrier.wait()  # raises BrokenBarrierError when the calls came one by one
        if script.status != 201:
            return Response(json.dumps(script.body or {
                "title": "Internal server error", "detail": "scripted failure",
                "status": script.status}), status=script.status, headers=script.headers,
                content_type="application/problem+json")
        if not isinstance(payload, dict) or not isinstance(payload.get("input"), dict):
            return problem(422, "Input validation failed", "- input: input is required")
        version = payload.get("version")
        if model_name is None:
            if not isinstance(version, str):
                return problem(422, "Input validation failed", "- version: version is required")
            model_name = VERSIONS.get(version.rsplit(":", 1)[-1])
            if model_name is None:
                return problem(422, "Invalid version or not permitted",
                               "The specified version does not exist (or perhaps you don't "
                               "have permission to use it?)")
        model = MODELS.get(model_name)
        if model is None or (version is None and not model.official):
            return problem(404, "Not found", "The requested resource could not be found.")
        invalid = _invalid(model, payload["input"])
        if invalid:
            return problem(422, "Input validation failed", f"- input.{invalid}")
        prediction = Prediction(uuid.uuid4().hex[:26], model_name, version, payload["input"],
                                script, left=script.polls)
        with self.lock:
            self.predictions[prediction.id] = prediction
        wait = _prefer_wait(request.headers.get("prefer", ""))
        if wait is not None:
            if script.mode in ("succeed", "fail") and script.polls == 0:
                self._advance(prediction)
            else:
                prediction.done.wait(min(wait, self.wait_cap))
        return self._json(prediction, 201)

    def _advance(self, prediction: Prediction) -> None:
        """One step of the lifecycle, taken at each look at the prediction."""
        with self.lock:
            if prediction.status in TERMINAL:
                return
            script = prediction.script
            if script.mode == "never" or prediction.left > 0:
                prediction.left -= 1
                prediction.status = "processing"
            elif script.mode == "succeed":
                prediction.output = self._outputs(prediction)
                self._finish(prediction, "succeeded")
            elif script.mode == "fail":
                prediction.error = script.error
                self._finish(prediction, "failed")
            else:
                self._finish(prediction, "canceled")

    def _finish(self, prediction: Prediction, status: str) -> None:
        prediction.status, prediction.completed_at = status, _now()
        prediction.done.set()

    def _outputs(self, prediction: Prediction):
        model, inputs, script = MODELS[prediction.model], prediction.input, prediction.script
        count = script.outputs if script.outputs is not None else int(
            inputs.get("num_outputs", 1))
        if model.ratios:
            size = ratio_size(inputs.get("aspect_ratio", "1:1"))
        else:
            size = (int(inputs.get("width", 1024)) // 16, int(inputs.get("height", 1024)) // 16)
        urls = []
        for i in range(count):
            # the fake encodes PNG only: other output_format values still get a PNG file
            data = png(*size, seed=f"{prediction.id}|{i}")
            if script.data_urls:
                urls.append(f"data:image/png;base64,{base64.b64encode(data).decode()}")
                continue
            path = f"/files/{prediction.id}/out-{i}.png"
            self.files[path] = (script.file_type, script.file_status, data)
            urls.append(self.url + path)
        return urls if model.list_output else (urls[0] if urls else None)

    def _json(self, prediction: Prediction, status: int) -> Response:
        base = f"{self.links_base or self.url + '/v1'}/predictions/{prediction.id}"
        body = {"id": prediction.id, "model": prediction.model,
                "version": prediction.version or "hidden", "input": prediction.input,
                "logs": "", "output": prediction.output, "data_removed": False,
                "error": prediction.error, "status": prediction.status,
                "created_at": prediction.created_at, "completed_at": prediction.completed_at,
                "urls": {"get": base, "cancel": f"{base}/cancel",
                         "web": f"https://replicate.com/p/{prediction.id}"}}
        if prediction.status == "succeeded":
            body["metrics"] = {"predict_time": 0.01}
        return Response(json.dumps(body), status=status, content_type="application/json")


def _invalid(model: Model, inputs: dict) -> str | None:
    unknown = set(inputs) - model.inputs
    if unknown:
        return f"{sorted(unknown)[0]}: Additional property {sorted(unknown)[0]} is not allowed"
    if not isinstance(inputs.get("prompt"), str) or not inputs["prompt"]:
        return "prompt: prompt is required"
    if "aspect_ratio" in inputs and inputs["aspect_ratio"] not in model.ratios:
        return (f"aspect_ratio: aspect_ratio must be one of the following: "
                f"{', '.join(model.ratios)}")
    if "num_outputs" in inputs:
        n = inputs["num_outputs"]
        if not isinstance(n, int) or not 1 <= n <= 4:
            return "num_outputs: Must be between 1 and 4"
    if inputs.get("output_format", "webp") not in ("webp", "jpg", "png"):
        return "output_format: output_format must be one of the following: webp, jpg, png"
    for side in ("width", "height"):
        if side in inputs and not model.ratios:
            value = inputs[side]
            if not isinstance(value, int) or not 128 <= value <= 2048 or value % 8:
                return f"{side}: Must be a multiple of 8 from 128 to 2048"
    return None


def _prefer_wait(header: str) -> float | None:
    """Seconds a `Prefer: wait` or `Prefer: wait=N` header asks to wait (None: async)."""
    for item in header.split(","):
        name, _, value = item.strip().partition("=")
        if name.strip() == "wait":
            return float(value) if value.strip().isdigit() else 60.0
    return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())


def problem(status: int, title: str, detail: str) -> Response:
    """An error in Replicate's problem shape."""
    return Response(json.dumps({"title": title, "detail": detail, "status": status}),
                    status=status, content_type="application/problem+json")
