"""Server-Sent Events framing, byte-exact: split a byte stream into whole events, untouched;
and the JSON in events, read and written for every event of every translated stream."""

import json
import re
from json.encoder import c_make_encoder, encode_basestring

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_SCAN = json.JSONDecoder().scan_once  # json.loads' own scanner (C), its wrappers left out
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# json.dumps makes an encoder for each call given options, and its encode() a C encoder for
# each call; this one is made once (with no check for circular references: what goes into an
# event was parsed from JSON or built here, so it has none).
_ENCODE = (c_make_encoder(None, _ENCODER.default, encode_basestring, None, ":", ",", False,
                          False, True) if c_make_encoder is not None else None)


def data_json(data: bytes):
    """json.loads of an event's payload (UTF-8, as SSE is), in half the CPU for the usual one:
    a JSON object alone. Anything else (a BOM, whitespace around it, something after it, bytes
    that are not UTF-8) goes to json.loads itself, so what it accepts and the errors it raises
    (ValueError) stay json's."""
    try:
        text = data.decode()
        if text[:1] == "{":
            value, end = _SCAN(text, 0)
            if end == len(text):
                return value
    except (UnicodeDecodeError, StopIteration):
        pass
    return json.loads(data)


def json_data(value) -> bytes:
    """An event's JSON payload: compact, and non-ASCII as UTF-8, as the providers send theirs;
    the same text json.dumps(value, ensure_ascii=False, separators=(",", ":")) gives."""
    if _ENCODE is None:  # Python without json's C accelerator
        return _ENCODER.encode(value).encode()
    return "".join(_ENCODE(value, 0)).encode()


class EventSplitter:
    """Feed raw bytes as they arrive; get back complete events, each with its own terminator."""

    def __init__(self):
        self._buf = b""

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buf + data if self._buf else data
        if b"\r" not in buf:  # "\n\n" the only boundary (OpenAI's, Anthropic's framing)
            end = buf.find(b"\n\n") + 2  # 1: none
            if end == len(buf) and end > 1:  # one whole event: a slow stream's usual read
                self._buf = b""
                return [buf]
            events, start = [], 0
            while end > 1:
                events.append(buf[start:end])
                start = end
                end = buf.find(b"\n\n", start) + 2
            self._buf = buf[start:]
            return events
        events, start = [], 0
        for match in _BOUNDARY.finditer(buf):
            events.append(buf[start:match.end()])
            start = match.end()
        self._buf = buf[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event that has not ended yet."""
        return self._buf


def split_events(data: bytes) -> list[bytes]:
    """Whole events of a recorded stream, whichever line ends it used (Google's are CRLF)."""
    return [e for e in _BOUNDARY.split(data) if e]


def event_data(event: bytes) -> bytes:
    """The joined `data:` payload of one event (b"" when it has none, as with comments)."""
    if event.startswith(b"data: ") and event.find(b"\n") == len(event) - 2 \
            and event.endswith(b"\n\n") and b"\r" not in event:
        return event[6:-2]  # the usual event: one data line, "\n\n" after it
    parts = []
    for line in event.splitlines():
        if line.startswith(b"data:"):
            value = line[5:]
            parts.append(value[1:] if value.startswith(b" ") else value)
    return b"\n".join(parts)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One event in the canonical framing."""
    head = f"event: {event}\n".encode() if event else b""
    return head + b"data: " + data + b"\n\n"
