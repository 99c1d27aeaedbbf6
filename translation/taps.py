"""Stream taps: what the relay feeds each upstream event through, and the bookkeeping they share.

A tap turns one upstream SSE event into the bytes the client gets (the event itself on the
passthrough path, re-encoded events when translating) and records, on the way, what billing
needs: the last usage seen, whether the upstream's stream completed (`finished`) or reported
an error inside it (`failed`), and the output text relayed, from which output tokens are
counted when the upstream reports no usage or the stream is cut. That count is kept as the
stream goes: relayed bytes are gathered (whole events) and, every FOLD bytes, their text is
counted and they are dropped, so a stream holds at most FOLD bytes however long it runs.
"""

from errors import redact, redact_event
from translation import ir


class Tap:
    """The shared bookkeeping; subclasses implement `relay(event)` and `error_event(err)`."""

    FOLD = 64 * 1024  # relayed bytes gathered before their output text is counted
    KEEP = 1 << 20  # without `text_of`: relayed bytes kept (no count as the stream goes)
    content_type = "text/event-stream"

    def __init__(self):
        self.usage = None
        self.finished = False
        self.failed = False
        self.images = 0  # images relayed (inline image parts), charged per image
        self.relayed = bytearray()  # relayed bytes whose text is not counted yet
        self.counted = 0  # characters of output text in the relayed bytes already dropped
        # what must never reach the client in an error (the provider's key; set by the exchange)
        self.secrets = ()
        # the client format's output_text_of_events (set by the exchange)
        self.text_of = None

    def output_chars(self, text_of) -> int:
        """Characters of output text relayed so far (the stream's whole output)."""
        return self.counted + (len(text_of(bytes(self.relayed))) if self.relayed else 0)

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
        if out:
            self.relayed += out
            if len(self.relayed) >= self.FOLD:
                self._fold()
        return out

    def _fold(self) -> None:
        """Count the gathered bytes' output text and drop them (they are whole events)."""
        if self.text_of is None:
            if len(self.relayed) > self.KEEP:
                del self.relayed[self.KEEP:]
            return
        self.counted += len(self.text_of(bytes(self.relayed)))
        self.relayed.clear()


class PassthroughTap(Tap):
    """A same-format stream: each event relayed as it came; `watch` reads what billing needs."""

    def __init__(self, error_event):
        super().__init__()
        self._error_event = error_event

    def feed(self, event: bytes) -> bytes | None:
        # Tap.feed with relay() inlined: this runs for every event of every same-format stream
        out = self.watch(event)
        if out:
            self.relayed += out
            if len(self.relayed) >= self.FOLD:
                self._fold()
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
            if type(event) is ir.TextDelta:  # most events: text, with nothing to note
                out += self.encoder.encode(event)
                continue
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
