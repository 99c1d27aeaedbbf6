"""The stream tap that translates: upstream events -> IR events -> the client's events."""

from errors import redact
from translation import ir


class TranslatingTap:
    """A relay_events tap (feed/end, usage/finished/failed) that re-encodes every event.

    `relayed` keeps the first bytes sent to the client, in its format, so that output tokens
    can be estimated when the upstream reports no usage.
    """

    KEEP = 1 << 20

    def __init__(self, decoder, encoder, *, tool_names=None, secrets=()):
        self.decoder, self.encoder = decoder, encoder
        self.secrets = secrets  # the provider's key: never in an error message we pass on
        self.tool_names = tool_names or {}  # provider's tool name -> the client's
        self.usage = None
        self.finished = False
        self.failed = False
        self.relayed = bytearray()

    def feed(self, event: bytes) -> bytes | None:
        return self._encode(self.decoder.feed(event))

    def end(self) -> bytes | None:
        return self._encode(self.decoder.end())

    def error_event(self, err) -> bytes:
        """An in-stream error in the client's format (the encoder knows what it already sent)."""
        return self.encoder.error_event(err)

    def _encode(self, events) -> bytes | None:
        out = b""
        for event in events:
            if isinstance(event, ir.UsageUpdate):
                self.usage = event.usage
            elif isinstance(event, ir.End):
                self.finished = True
            elif isinstance(event, ir.Failure):
                self.failed = True
                event.error.message = redact(event.error.message, *self.secrets)
            elif isinstance(event, ir.ToolCallStart) and event.name in self.tool_names:
                event.name = self.tool_names[event.name]
            out += self.encoder.encode(event)
        if out and len(self.relayed) < self.KEEP:
            self.relayed += out
        return out or None
