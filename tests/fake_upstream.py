"""A fake provider on loopback speaking the real wire formats, scripted per test.

It serves real HTTP (JSON and SSE with chunked encoding), records every request it receives,
and can be slow, silent, broken or failing on demand. Replies are queued with `fake.push(...)`;
with none queued it answers by echoing the last user message. The wire format follows the
path: `.../messages` is Anthropic (tests/fake_anthropic.py), `.../models/M:method` is Gemini
(tests/fake_gemini.py), `.../responses` OpenAI Responses (tests/fake_responses.py),
embeddings calls go to tests/fake_embeddings.py, images (OpenAI images API, Gemini image
models) to tests/fake_images.py, anything else is OpenAI Chat Completions
(below). GET paths registered in
`fake.files` serve those bytes (images to fetch), or redirect when the type is "redirect".
"""

import json
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from werkzeug.wrappers import Request, Response

from tests import fake_embeddings, fake_images
from tests.fake_server import FakeServer


@dataclass
class Script:
    """How to answer one request. Every field has a sensible default."""

    status: int = 200
    content: str | None = None  # the assistant text (default: an echo of the last user message)
    body: object = None  # a JSON body to send as is (errors, odd shapes)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0  # seconds before the response starts
    chunk_gap: float = 0.0  # seconds between stream chunks
    silence_after_first: float = 0.0  # seconds of silence after stream chunk `silence_at`
    silence_at: int = 0
    hold: threading.Event | None = None  # after the first chunk, wait for this to be set
    drop_after: int | None = None  # close the connection after this many stream chunks
    usage: dict | None | str = "auto"  # "auto": computed; None: never sent
    usage_on_every_chunk: bool = False
    finish_reason: str = "stop"  # OpenAI's words; mapped for the other formats
    tool_calls: list | None = None  # [(name, arguments dict), ...]: the model calls tools
    content_type: str | None = None
    raw_stream: bytes | None = None  # exact bytes to stream instead of generated chunks
    reasoning: bool = False  # Responses format: a reasoning item with a summary comes first
    reverse_order: bool = False  # embeddings: list the vectors last input first
    quote_key: bool = False  # fail quoting the key received (mid-stream after a few events)
    interim_usage: bool = False  # Gemini: usageMetadata without candidatesTokenCount on chunks
    image_count: int | None = None  # images: how many to return (default: as many as asked)
    image_urls: bool = False  # OpenAI images: answer with URLs even when b64_json was asked


@dataclass
class Received:
    method: str
    path: str
    headers: dict
    query: dict
    json: object
    stream_closed_by_peer_at: float | None = None
    stream_finished: bool = False
    form: dict = field(default_factory=dict)  # multipart fields (image edits)
    files: dict = field(default_factory=dict)  # multipart files: name -> [(filename, type, bytes)]


class FakeUpstream(FakeServer):
    """scripts: Script, received: Received."""

    def __init__(self):
        super().__init__()
        self.sent_streams: list[bytes] = []
        self.files: dict[str, tuple[str, bytes]] = {}  # GET path -> (content type, bytes)
        self.in_flight = self.most_in_flight = 0  # requests being answered at once (at most)

    # ---- WSGI ---------------------------------------------------------------------------
    def wsgi(self, environ, start_response):
        request = Request(environ)
        try:
            payload = request.get_json(silent=True)
        except Exception:
            payload = None
        record = Received(request.method, request.path, dict(request.headers),
                          request.args.to_dict(), payload)
        with self.lock:
            self.received.append(record)
            script = self.scripts.popleft() if self.scripts else Script()
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            if script.delay:
                time.sleep(script.delay)
            response = self._respond(request, payload, script, record, environ)
        finally:
            with self.lock:
                self.in_flight -= 1
        return response(environ, start_response)

    def _respond(self, request, payload, script, record, environ):
        fmt = wire_format(request.path)
        if request.method == "GET" and request.path in self.files:
            mime, data = self.files[request.path]
            if mime == "redirect":
                return Response(status=302, headers={"Location": data})
            return Response(data, content_type=mime)
        if request.method == "GET" and not request.path.endswith("/models"):
            return Response(json.dumps({"error": "no such file"}), status=404,
                            content_type="application/json")
        if request.path.endswith("/models") and request.method == "GET":
            return Response(json.dumps({"object": "list", "data": []}),
                            content_type="application/json")
        if script.quote_key:
            return self._quote_key(request, payload, script, record, environ, fmt)
        if script.status != 200 or script.body is not None:
            return Response(json.dumps(script.body if script.body is not None
                                       else fmt.error_body(script.status)),
                            status=script.status, headers=script.headers,
                            content_type=script.content_type or "application/json")
        if fake_images.handles(request):
            status, body, content_type = fake_images.answer(self, request, payload, script,
                                                            record)
            data = body if isinstance(body, bytes) else json.dumps(body)
            return Response(data, status=status, headers=script.headers,
                            content_type=content_type or "application/json")
        if fake_embeddings.handles(request.path):
            status, body = fake_embeddings.answer(request.path, payload or {}, script)
            return Response(json.dumps(body), status=status, headers=script.headers,
                            content_type=script.content_type or "application/json")
        if request.path.endswith(("/count_tokens", ":countTokens", "/input_tokens")):
            return Response(json.dumps(fmt.count(payload)), content_type="application/json")
        if fmt.is_stream(request, payload):
            chunks = self._stream(fmt.stream_events(request, payload, script), script, record,
                                  environ.get("werkzeug.socket"))
            content_type = fmt.stream_content_type(request)
            return Response(chunks, headers=script.headers,
                            content_type=script.content_type or content_type)
        return Response(json.dumps(fmt.completion(payload, script)), headers=script.headers,
                        content_type=script.content_type or "application/json")

    def _quote_key(self, request, payload, script, record, environ, fmt):
        """An error that quotes the credential the gateway sent, as some servers' errors do."""
        message = f"the key {received_key(request)} was rejected for this request"
        if not fmt.is_stream(request, payload):
            body = fmt.error_body(400)
            body["error"]["message"] = message
            return Response(json.dumps(body), status=400, content_type="application/json")
        events = fmt.stream_events(request, payload, script)
        events = events[:len(events) // 2] + [fmt.error_event(message)]  # some content first
        return Response(self._stream(events, script, record, environ.get("werkzeug.socket")),
                        content_type=fmt.stream_content_type(request))

    def _stream(self, events, script, record, sock):
        events = [script.raw_stream] if script.raw_stream is not None else events
        sent = bytearray()
        self.sent_streams.append(sent)
        try:
            for i, event in enumerate(events):
                if script.drop_after is not None and i >= script.drop_after:
                    _drop(sock)
                    return
                sent += event
                yield event
                if i == 0 and script.hold is not None:
                    script.hold.wait(30)
                if i == script.silence_at and script.silence_after_first:
                    if _wait_for_hangup(sock, script.silence_after_first):
                        record.stream_closed_by_peer_at = time.monotonic()
                        return
                if script.chunk_gap:
                    if _wait_for_hangup(sock, script.chunk_gap):
                        record.stream_closed_by_peer_at = time.monotonic()
                        return
            record.stream_finished = True
        except (BrokenPipeError, ConnectionResetError, GeneratorExit):
            record.stream_closed_by_peer_at = record.stream_closed_by_peer_at or time.monotonic()
            raise


def received_key(request) -> str:
    """The credential a request carried, wherever its wire format puts it."""
    auth = request.headers.get("Authorization", "")
    return (auth.removeprefix("Bearer ") or request.headers.get("x-api-key")
            or request.headers.get("x-goog-api-key") or "")


def _wait_for_hangup(sock, seconds) -> bool:
    """Sleep up to `seconds`; True as soon as the peer closes the connection."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if sock is None:
            time.sleep(left)
            return False
        readable, _, _ = select.select([sock], [], [], min(left, 0.02))
        if readable:
            try:
                if sock.recv(1, socket.MSG_PEEK) == b"":
                    return True
            except OSError:
                return True
            time.sleep(0.02)
    return False


def _drop(sock):
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


# ---- OpenAI wire format ---------------------------------------------------------------------
def error_body(status):
    kinds = {400: "invalid_request_error", 401: "invalid_request_error",
             404: "invalid_request_error", 429: "rate_limit_error", 500: "server_error",
             503: "server_error"}
    return {"error": {"message": f"fake upstream error {status}", "param": None, "code": None,
                      "type": kinds.get(status, "error")}}


def error_event(message) -> bytes:
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def last_user_text(payload) -> str:
    for message in reversed((payload or {}).get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def echo_reply(script, user_text: str) -> str:
    """What every fake wire format answers: the script's text, else an echo of the user (none
    when the model calls tools instead)."""
    if script.content is not None:
        return script.content
    return "" if script.tool_calls else f"echo: {user_text}"


def reply_text(payload, script) -> str:
    return echo_reply(script, last_user_text(payload))


def usage_for(payload, script, text) -> dict | None:
    if script.usage != "auto":
        return script.usage
    messages = (payload or {}).get("messages", [])
    prompt = sum(len(str(m.get("content", "")).split()) for m in messages)
    completion = len(text.split())
    return {"prompt_tokens": prompt + 3, "completion_tokens": completion,
            "total_tokens": prompt + 3 + completion}


def call_id(i) -> str:
    return f"call_fake{i}"


def finish_reason(script) -> str:
    return "tool_calls" if script.tool_calls and script.finish_reason == "stop" \
        else script.finish_reason


def completion(payload, script) -> dict:
    text = reply_text(payload, script)
    message = {"role": "assistant", "content": text or None, "refusal": None}
    if script.tool_calls:
        message["tool_calls"] = [{"id": call_id(i), "type": "function", "function": {
            "name": name, "arguments": json.dumps(args)}}
            for i, (name, args) in enumerate(script.tool_calls)]
    body = {"id": "chatcmpl-fake", "object": "chat.completion", "created": 1760000000,
            "model": (payload or {}).get("model", "unknown"), "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "finish_reason": finish_reason(script), "logprobs": None,
                         "message": message}]}
    usage = usage_for(payload, script, text)
    if usage is not None:
        body["usage"] = usage
    return body


def stream_events(payload, script) -> list[bytes]:
    """The chunks of a chat completion stream, exactly as OpenAI frames them."""
    text = reply_text(payload, script)
    model = payload.get("model", "unknown")
    include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
    usage = usage_for(payload, script, text)

    def chunk(delta, finish=None, choices=True, usage_value=None):
        body = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 1760000000,
                "model": model, "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None,
                             "finish_reason": finish}] if choices else []}
        if include_usage or script.usage_on_every_chunk:
            body["usage"] = usage_value
        return b"data: " + json.dumps(body).encode() + b"\n\n"

    every = usage if script.usage_on_every_chunk else None
    events = [chunk({"role": "assistant", "content": ""}, usage_value=every)]
    if text:
        for i, word in enumerate(text.split(" ")):
            events.append(chunk({"content": word if i == 0 else " " + word}, usage_value=every))
    for i, (name, args) in enumerate(script.tool_calls or []):
        events.append(chunk({"tool_calls": [{"index": i, "id": call_id(i), "type": "function",
                                             "function": {"name": name, "arguments": ""}}]}))
        for piece in halves(json.dumps(args)):  # argument fragments, as OpenAI streams them
            events.append(chunk({"tool_calls": [{"index": i, "function": {"arguments": piece}}]}))
    events.append(chunk({}, finish=finish_reason(script), usage_value=every))
    if include_usage and usage is not None and not script.usage_on_every_chunk:
        events.append(chunk(None, choices=False, usage_value=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def halves(text: str) -> list[str]:
    middle = len(text) // 2
    return [text[:middle], text[middle:]]


class _OpenAIWire:
    """The OpenAI format behind the interface every fake wire format offers."""

    error_body = staticmethod(error_body)
    error_event = staticmethod(error_event)
    completion = staticmethod(completion)

    @staticmethod
    def is_stream(request, payload) -> bool:
        return isinstance(payload, dict) and bool(payload.get("stream"))

    @staticmethod
    def stream_events(request, payload, script) -> list[bytes]:
        return stream_events(payload, script)

    @staticmethod
    def stream_content_type(request) -> str:
        return "text/event-stream"

    @staticmethod
    def count(payload) -> dict:
        return {}


def wire_format(path: str):
    """The fake wire format a request path belongs to."""
    from tests import fake_anthropic, fake_gemini, fake_responses

    if path.endswith(("/responses", "/responses/input_tokens")):
        return fake_responses
    if path.endswith(("/messages", "/messages/count_tokens")):
        return fake_anthropic
    if ":" in path.rsplit("/", 1)[-1]:
        return fake_gemini
    return _OpenAIWire
