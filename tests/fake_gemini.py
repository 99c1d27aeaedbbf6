"""The Gemini generateContent wire format for the fake upstream: JSON, SSE and JSON arrays."""

import json

from tests.fake_upstream import echo_reply

STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE"}
FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP",
          "content_filter": "SAFETY"}


def error_body(status):
    return {"error": {"code": status, "message": f"fake upstream error {status}",
                      "status": STATUS_NAMES.get(status, "UNKNOWN")}}


def error_event(message) -> bytes:
    body = {"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}
    return b"data: " + json.dumps(body).encode() + b"\r\n\r\n"


def last_user_text(payload) -> str:
    for content in reversed((payload or {}).get("contents") or []):
        if content.get("role", "user") == "user":
            return " ".join(p["text"] for p in content.get("parts", []) if "text" in p)
    return ""


def reply_text(payload, script) -> str:
    return echo_reply(script, last_user_text(payload))


def words(payload) -> int:
    return sum(len(json.dumps(c.get("parts")).split()) for c in payload.get("contents", []))


def usage_for(payload, script, text) -> dict | None:
    if script.usage != "auto":
        return script.usage
    prompt, output = words(payload) + 3, len(text.split())
    return {"promptTokenCount": prompt, "candidatesTokenCount": output,
            "totalTokenCount": prompt + output}


def call_parts(script) -> list[dict]:
    return [{"functionCall": {"name": name, "args": args}, "thoughtSignature": f"sig{i}"}
            for i, (name, args) in enumerate(script.tool_calls or [])]


def completion(payload, script) -> dict:
    text = reply_text(payload, script)
    parts = ([{"text": text}] if text else []) + call_parts(script)
    body = {"candidates": [{"content": {"role": "model", "parts": parts}, "index": 0,
                            "finishReason": FINISH.get(script.finish_reason, "STOP")}],
            "modelVersion": "gemini-fake-001", "responseId": "resp_fake"}
    usage = usage_for(payload, script, text)
    if usage is not None:
        body["usageMetadata"] = usage
    return body


def is_stream(request, payload) -> bool:
    return request.path.endswith(":streamGenerateContent")


def stream_content_type(request) -> str:
    return "text/event-stream" if request.args.get("alt") == "sse" else "application/json"


def count(payload) -> dict:
    inner = payload.get("generateContentRequest") or payload
    return {"totalTokens": words(inner) + len(json.dumps(inner.get("systemInstruction")).split())}


def stream_events(request, payload, script) -> list[bytes]:
    """Text word by word, function calls whole in one chunk, finishReason and usage last."""
    text = reply_text(payload, script)
    usage = usage_for(payload, script, text)

    def chunk(parts, finish=None, with_usage=False):
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body = {"candidates": [candidate], "modelVersion": "gemini-fake-001",
                "responseId": "resp_fake"}
        if with_usage and usage is not None:
            body["usageMetadata"] = usage
        elif script.interim_usage and usage is not None:  # as Gemini does: the prompt so far
            body["usageMetadata"] = {"promptTokenCount": usage["promptTokenCount"],
                                     "totalTokenCount": usage["promptTokenCount"]}
        return body

    bodies = [chunk([{"text": w if i == 0 else " " + w}])
              for i, w in enumerate(text.split(" ")) if text]
    if script.tool_calls:
        bodies.append(chunk(call_parts(script)))
    bodies.append(chunk([{"text": ""}], finish=FINISH.get(script.finish_reason, "STOP"),
                        with_usage=True))
    if request.args.get("alt") == "sse":
        return [b"data: " + json.dumps(b).encode() + b"\r\n\r\n" for b in bodies]
    pieces = [("[" if i == 0 else ",\r\n") + json.dumps(b) for i, b in enumerate(bodies)]
    return [p.encode() for p in pieces] + [b"]"]
