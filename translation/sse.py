"""Server-Sent Events framing, byte-exact: split a byte stream into whole events, untouched."""

import re

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")


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
