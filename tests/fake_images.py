"""Image output for the fake upstream, in the providers' real wire formats.

- OpenAI images API: POST .../images/generations (JSON) and .../images/edits (multipart:
  `image` or `image[]`, optional `mask`), answering `data[]` with `b64_json` (gpt-image models
  always; dall-e when asked) or `url` (files the fake serves itself), errors in OpenAI's shape.
- Gemini image models (a model name with "-image" in it): generateContent and
  streamGenerateContent answer with inlineData image parts (after a line of text), and
  usageMetadata counting 1290 image tokens per image by modality, as Gemini does.

The images are real PNGs (zlib and struct), coloured after the prompt so tests can tell them
apart: `png_for(prompt)`.
"""

import base64
import hashlib
import json
import struct
import zlib

IMAGE_TOKENS = 1290  # what Gemini reports per 1024px image


def png(width: int, height: int, rgb: tuple[int, int, int]) -> bytes:
    """A real PNG of one colour."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\x00" + bytes(rgb) * width
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


def png_for(prompt: str, index: int = 0) -> bytes:
    """The fake's image for a prompt (and its index among the n asked for)."""
    digest = hashlib.sha256(f"{index}:{prompt}".encode()).digest()
    return png(4, 4, (digest[0], digest[1], digest[2]))


def handles(request) -> bool:
    path = request.path
    if path.endswith(("/images/generations", "/images/edits")):
        return True
    return ":" in path.rsplit("/", 1)[-1] and "-image" in path.rsplit("/", 1)[-1] and (
        path.endswith((":generateContent", ":streamGenerateContent")))


def answer(fake, request, payload, script, record):
    """(status, body bytes, content type) for an image call."""
    if request.path.endswith("/images/generations"):
        return openai_answer(fake, payload or {}, script, [])
    if request.path.endswith("/images/edits"):
        record.form = request.form.to_dict()
        record.files = {name: [(f.filename, f.mimetype, f.read()) for f in
                               request.files.getlist(name)] for name in request.files}
        fields = dict(record.form)
        if "n" in fields:
            fields["n"] = int(fields["n"])
        uploads = [f for name in ("image", "image[]") for f in record.files.get(name, [])]
        if not uploads:
            return 400, _openai_error("image is required", "invalid_request_error"), None
        return openai_answer(fake, fields, script, uploads)
    return gemini_answer(request, payload or {}, script)


def _openai_error(message, kind, code=None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


def openai_answer(fake, fields, script, uploads):
    prompt = fields.get("prompt")
    if not prompt:
        return 400, _openai_error("prompt is required", "invalid_request_error"), None
    model = fields.get("model", "dall-e-2")
    n = int(fields.get("n") or 1)
    count = n if script.image_count is None else script.image_count
    as_url = script.image_urls or (not model.startswith("gpt-image")
                                   and fields.get("response_format", "url") == "url")
    data = []
    for i in range(count):
        image = png_for(prompt + "".join(str(len(u[2])) for u in uploads), i)
        if as_url:
            path = f"/files/{hashlib.sha256(image).hexdigest()[:16]}.png"
            fake.files[path] = ("image/png", image)
            entry = {"url": f"{fake.url}{path}"}
        else:
            entry = {"b64_json": base64.b64encode(image).decode()}
        if model == "dall-e-3":
            entry["revised_prompt"] = f"A detailed picture of {prompt}"
        data.append(entry)
    body = {"created": 1700000000, "data": data}
    if model.startswith("gpt-image"):
        body["usage"] = {"input_tokens": 10, "output_tokens": 4160, "total_tokens": 4170}
        body["output_format"] = "png"
    return 200, body, None


def gemini_parts(payload, script) -> list[dict]:
    text = " ".join(p.get("text", "") for c in payload.get("contents") or []
                    for p in c.get("parts") or [] if "text" in p)
    uploads = sum(1 for c in payload.get("contents") or [] for p in c.get("parts") or []
                  if "inlineData" in p or "inline_data" in p)
    count = 1 if script.image_count is None else script.image_count
    return [{"inlineData": {"mimeType": "image/png",
                            "data": base64.b64encode(png_for(text + str(uploads), i)).decode()}}
            for i in range(count)]


def gemini_usage(payload, count) -> dict:
    prompt = sum(len(json.dumps(c.get("parts")).split()) for c in payload.get("contents", []))
    return {"promptTokenCount": prompt, "candidatesTokenCount": 2 + IMAGE_TOKENS * count,
            "totalTokenCount": prompt + 2 + IMAGE_TOKENS * count,
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 2},
                                        {"modality": "IMAGE", "tokenCount": IMAGE_TOKENS * count}]}


def gemini_answer(request, payload, script):
    config = payload.get("generationConfig") or {}
    modalities = config.get("responseModalities") or ["TEXT", "IMAGE"]
    images = gemini_parts(payload, script) if "IMAGE" in modalities else []
    if script.finish_reason == "content_filter":
        body = {"candidates": [{"finishReason": "IMAGE_SAFETY", "index": 0}]}
        return 200, body, None
    parts = [{"text": "Here it is."}, *images]
    usage = gemini_usage(payload, len(images)) if script.usage == "auto" else script.usage
    with_usage = {"usageMetadata": usage} if usage is not None else {}
    if not request.path.endswith(":streamGenerateContent"):
        return 200, {"candidates": [{"content": {"role": "model", "parts": parts},
                                     "finishReason": "STOP", "index": 0}],
                     **with_usage, "modelVersion": "gemini-image-fake"}, None
    chunks = [{"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
               "modelVersion": "gemini-image-fake"} for part in parts]
    chunks.append({"candidates": [{"content": {"role": "model", "parts": [{"text": ""}]},
                                   "finishReason": "STOP", "index": 0}],
                   **with_usage, "modelVersion": "gemini-image-fake"})
    events = b"".join(b"data: " + json.dumps(c).encode() + b"\r\n\r\n" for c in chunks)
    return 200, events, "text/event-stream"
