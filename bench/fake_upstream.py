"""A fast fake OpenAI-compatible upstream for the benchmark (not the scripted one in tests/).

POST /v1/chat/completions answers with a fixed, realistic chat completion (with usage), or with
`"stream": true` a realistic SSE stream: a role chunk, 20 content chunks, a finish chunk, a usage
chunk when `stream_options.include_usage` is true, then `data: [DONE]`. POST /v1/embeddings
answers 16 base64 vectors of 1536 dimensions (what the official SDKs ask for by default), one per
input. Bodies are built once at import, so a request costs little more than reading the JSON it
came with.

An optional pause between stream chunks (to show the gateway relays without buffering) comes from
the query string `?chunk_delay_ms=N`, else from the environment BENCH_CHUNK_DELAY_MS (default 0).
BENCH_STREAM_CHUNKS sets how many content chunks a stream has (default 20, the words cycling).

Served by gunicorn's gevent worker, as bench/run.py does:

    gunicorn -k gevent -w 1 --chdir bench -b 127.0.0.1:9000 fake_upstream:app
"""

import base64
import json
import os
import struct
from urllib.parse import parse_qs

import gevent

MODEL = "bench-model"
CREATED = 1_767_225_600
COMPLETION_ID = "chatcmpl-bench0000000000000000000001"
FINGERPRINT = "fp_bench0001"
WORDS = ("Sure", "!", " Here", " is", " a", " short", " answer", " about", " API", " gateways",
         ":", " they", " route", ",", " meter", " and", " secure", " model", " calls", ".")
TEXT = "".join(WORDS)
USAGE = {"prompt_tokens": 58, "completion_tokens": len(WORDS), "total_tokens": 58 + len(WORDS),
         "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
         "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                       "accepted_prediction_tokens": 0,
                                       "rejected_prediction_tokens": 0}}
DEFAULT_DELAY_MS = float(os.environ.get("BENCH_CHUNK_DELAY_MS", "0") or 0)
STREAM_CHUNKS = int(os.environ.get("BENCH_STREAM_CHUNKS") or 0) or len(WORDS)


def _dumps(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _completion() -> bytes:
    return _dumps({
        "id": COMPLETION_ID, "object": "chat.completion", "created": CREATED, "model": MODEL,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": TEXT,
                                             "refusal": None, "annotations": []},
                     "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE, "service_tier": "default", "system_fingerprint": FINGERPRINT,
    })


def _chunk(delta: dict, finish=None, *, with_usage_field: bool) -> dict:
    chunk = {"id": COMPLETION_ID, "object": "chat.completion.chunk", "created": CREATED,
             "model": MODEL, "service_tier": "default", "system_fingerprint": FINGERPRINT,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if with_usage_field:  # OpenAI sends "usage": null on every chunk once usage is asked for
        chunk["usage"] = None
    return chunk


def _stream_events(include_usage: bool) -> list[bytes]:
    chunks = [_chunk({"role": "assistant", "content": "", "refusal": None},
                     with_usage_field=include_usage)]
    chunks += [_chunk({"content": WORDS[i % len(WORDS)]}, with_usage_field=include_usage)
               for i in range(STREAM_CHUNKS)]
    chunks.append(_chunk({}, "stop", with_usage_field=include_usage))
    if include_usage:
        usage_chunk = _chunk({}, with_usage_field=False)
        usage_chunk["choices"], usage_chunk["usage"] = [], USAGE
        chunks.append(usage_chunk)
    return [b"data: " + _dumps(c) + b"\n\n" for c in chunks] + [b"data: [DONE]\n\n"]


EMBEDDING_INPUTS, EMBEDDING_DIMENSIONS = 16, 1536


def _embeddings() -> bytes:
    vectors = [[((i * 7 + d * 13) % 257 - 128) / 256 for d in range(EMBEDDING_DIMENSIONS)]
               for i in range(EMBEDDING_INPUTS)]
    return _dumps({"object": "list", "model": "bench-embedding", "data": [
        {"object": "embedding", "index": i,
         "embedding": base64.b64encode(struct.pack(f"<{len(v)}f", *v)).decode()}
        for i, v in enumerate(vectors)], "usage": {"prompt_tokens": 160, "total_tokens": 160}})


COMPLETION = _completion()
EMBEDDINGS = _embeddings()
STREAMS = {False: _stream_events(False), True: _stream_events(True)}
JSON_HEADERS = [("Content-Type", "application/json"), ("Content-Length", str(len(COMPLETION)))]
SSE_HEADERS = [("Content-Type", "text/event-stream; charset=utf-8"),
               ("Cache-Control", "no-cache")]


def _error(start_response, status: str, message: str):
    body = _dumps({"error": {"message": message, "type": "invalid_request_error",
                             "param": None, "code": None}})
    start_response(status, [("Content-Type", "application/json"),
                            ("Content-Length", str(len(body)))])
    return [body]


def _paced(events: list[bytes], delay: float):
    for i, event in enumerate(events):
        if i:
            gevent.sleep(delay)
        yield event


def embeddings(environ, start_response):
    try:
        body = json.loads(environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0)))
        inputs = body["input"]
    except (ValueError, KeyError, TypeError):
        return _error(start_response, "400 Bad Request", "expected an embeddings request")
    if not isinstance(inputs, list) or len(inputs) != EMBEDDING_INPUTS:
        return _error(start_response, "400 Bad Request", f"send {EMBEDDING_INPUTS} inputs")
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(EMBEDDINGS)))])
    return [EMBEDDINGS]


def app(environ, start_response):
    """The WSGI application."""
    if environ["PATH_INFO"] == "/v1/embeddings" and environ["REQUEST_METHOD"] == "POST":
        return embeddings(environ, start_response)
    if environ["PATH_INFO"] != "/v1/chat/completions":
        return _error(start_response, "404 Not Found", "no such endpoint")
    if environ["REQUEST_METHOD"] != "POST":
        return _error(start_response, "405 Method Not Allowed", "use POST")
    if not environ.get("HTTP_AUTHORIZATION", "").startswith("Bearer "):
        return _error(start_response, "401 Unauthorized", "missing API key")
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = json.loads(environ["wsgi.input"].read(length))
        model, messages = body["model"], body["messages"]
    except (ValueError, KeyError, TypeError):
        return _error(start_response, "400 Bad Request", "expected a chat completion request")
    if not isinstance(model, str) or not isinstance(messages, list) or not messages:
        return _error(start_response, "400 Bad Request", "model and messages are required")
    if not body.get("stream"):
        start_response("200 OK", JSON_HEADERS)
        return [COMPLETION]
    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    events = STREAMS[include_usage]
    query = parse_qs(environ.get("QUERY_STRING", ""))
    delay_ms = float(query["chunk_delay_ms"][0]) if "chunk_delay_ms" in query else DEFAULT_DELAY_MS
    start_response("200 OK", SSE_HEADERS)
    return _paced(events, delay_ms / 1000) if delay_ms > 0 else events
