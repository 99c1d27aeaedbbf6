"""Stream taps: what the relay feeds each upstream event through, and the bookkeeping they share.

A tap turns one upstream SSE event into the bytes the client gets (the event itself on the
passthrough path, re-encoded events when translating) and records, on the way, what billing
needs: the last usage seen, whether the upstream's stream completed (`finished`) or reported
an error inside it (`failed`), and the first bytes sent (`relayed`), from which output tokens
are counted when the upstream reports no usage.
"""

from errors import redact, redact_event
from translation import ir


class Tap:
    """The shared bookkeeping; subclasses implement `relay(event)` and `error_event(err)`."""

    KEEP = 1 << 20  # relayed bytes kept to estimate output tokens if upstream sends no usage
    content_type = "text/event-stream"

    def __init__(self):
        self.usage = None
        self.finished = False
        self.failed = False
        self.images = 0  # images relayed (inline image parts), charged per image
        self.relayed = bytearray()
        # what must never reach the client in an error (the provider's key; set by the exchange)
        self.secrets = ()

    def feed(self, event: bytes) -> bytes | None:
        """The bytes to send for one upstream event (None: nothing)."""
        return self._kept(self.relay(event))

    def end(self) -> bytes | None:
        """The bytes to send after the upstream ended cleanly."""
        return self._kept(self.close())

    def relay(self, event: bytes) -> bytes | None:
        raise NotImplementedError

    def close(self) -> bytes | None:
        return None

    def error_event(self, err) -> bytes:
        """An in-stream error in the client's format (a GatewayError)."""
        raise NotImplementedError

    def redacted(self, event: bytes) -> bytes:
        """An error event without anything key-like or secret: it may quote what the gateway
        sent upstream, credentials too. Content events are never passed through this."""
        return redact_event(event, *self.secrets)

    def _kept(self, out):
        if out and len(self.relayed) < self.KEEP:
            self.relayed += out
        return out


class PassthroughTap(Tap):
    """A same-format stream: each event relayed as it came; `watch` reads what billing needs."""

    def __init__(self, error_event):
        super().__init__()
        self._error_event = error_event

    def feed(self, event: bytes) -> bytes | None:
        # Tap.feed with relay() inlined: this runs for every event of every same-format stream
        out = self.watch(event)
        if out and len(self.relayed) < self.KEEP:
            self.relayed += out
        return out

    def watch(self, event: bytes) -> bytes | None:
        """Record usage/finished/failed from one event; return what to send (usually `event`)."""
        raise NotImplementedError

    def error_event(self, err) -> bytes:
        return self._error_event(err)


class TranslatingTap(Tap):
    """Upstream events -> IR events (a decoder) -> the client's events (an encoder)."""

    def __init__(self, decoder, encoder, *, tool_names=None):
        super().__init__()
        self.decoder, self.encoder = decoder, encoder
        self.content_type = encoder.content_type
        self.tool_names = tool_names or {}  # provider's tool name -> the client's

    def relay(self, event: bytes) -> bytes | None:
        return self._encode(self.decoder.feed(event))

    def close(self) -> bytes | None:
        return self._encode(self.decoder.end())

    def error_event(self, err) -> bytes:
        """The encoder knows what it already sent, so it frames the error to fit."""
        return self.encoder.error_event(err)

    def _encode(self, events) -> bytes | None:
        out = b""
        for event in events:
            if isinstance(event, ir.UsageUpdate):
                self.usage = event.usage
            elif isinstance(event, ir.ImageOut):
                self.images += 1
            elif isinstance(event, ir.End):
                self.finished = True
            elif isinstance(event, ir.Failure):
                self.failed = True
                event.error.message = redact(event.error.message, *self.secrets)
            elif isinstance(event, ir.ToolCallStart) and event.name in self.tool_names:
                event.name = self.tool_names[event.name]
            out += self.encoder.encode(event)
        return out or None
