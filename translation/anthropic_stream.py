"""Anthropic Messages streams: decode upstream events into IR events, encode IR events, and
watch a passthrough stream."""


from errors import failed_mid_stream
from translation import ir
from translation.anthropic import (
    STOP_FROM_IR,
    STOP_TO_IR,
    error_body,
    error_event,
    event_name,
    message_id,
    usage_from,
    usage_to,
)
from translation.content import safe_id
from translation.format import StreamDecoder as Decoder
from translation.format import StreamEncoder as Encoder
from translation.ir import Usage
from translation.sse import data_json, encode_event, event_data, json_data
from translation.taps import PassthroughTap as Watcher


class RunningUsage:
    """Usage across a Messages stream: message_start's, then message_delta's running totals."""

    def __init__(self):
        self.fields = {}
        self.usage = None

    def update_usage(self, usage) -> None:
        """message_delta usage holds running totals: replace the fields it has, never add."""
        if isinstance(usage, dict):
            self.fields.update({k: v for k, v in usage.items() if v is not None})
            self.usage = usage_from(self.fields)


class StreamDecoder(Decoder):
    """Upstream Messages events -> IR events. Tool calls are numbered apart from text blocks."""

    def __init__(self):
        self.usage = RunningUsage()
        self.blocks = {}  # Anthropic block index -> our tool-call index
        self.finished = False

    def feed(self, event: bytes) -> list:
        name = event_name(event)
        if name in ("", "ping"):
            return []
        try:
            data = data_json(event_data(event))
        except ValueError:
            return []
        handler = getattr(self, "_" + name, None)
        return handler(data) if handler else []

    def _message_start(self, data) -> list:
        message = data.get("message") or {}
        self.usage.update_usage(message.get("usage"))
        # usage first: an encoder may send its own start at once, input usage included
        return self._usage() + [ir.Start(id=message.get("id") or "", model=message.get("model")
                                         or "")]

    def _content_block_start(self, data) -> list:
        block = data.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = len(self.blocks)
            self.blocks[data.get("index")] = index
            return [ir.ToolCallStart(index, block.get("id") or "", block.get("name") or "")]
        if block.get("type") == "text" and block.get("text"):
            return [ir.TextDelta(block["text"])]
        return []

    def _content_block_delta(self, data) -> list:
        delta = data.get("delta") or {}
        if delta.get("type") == "text_delta" and delta.get("text"):
            return [ir.TextDelta(delta["text"])]
        if delta.get("type") == "input_json_delta" and data.get("index") in self.blocks:
            fragment = delta.get("partial_json")
            if isinstance(fragment, str) and fragment:  # the first fragment is often ""
                return [ir.ToolCallDelta(self.blocks[data["index"]], fragment)]
        return []

    def _message_delta(self, data) -> list:
        self.usage.update_usage(data.get("usage"))
        delta = data.get("delta") or {}
        out = []
        if delta.get("stop_reason"):
            out.append(ir.Finish(STOP_TO_IR.get(delta["stop_reason"], ir.STOP),
                                 delta.get("stop_sequence")))
        return out + self._usage()

    def _message_stop(self, data) -> list:
        self.finished = True
        return [ir.End()]

    def _error(self, data) -> list:
        error = data.get("error") or {}
        return [ir.Failure(failed_mid_stream(error.get("message")))]

    def _usage(self) -> list:
        return [ir.UsageUpdate(self.usage.usage)] if self.usage.usage is not None else []


class StreamEncoder(Encoder):
    """IR events -> the full Messages event sequence an Anthropic client expects.

    message_start goes out as soon as the upstream starts (with the input usage known by then);
    the stop reason waits for the end of the upstream stream, because OpenAI upstreams send
    usage after their finish chunk and message_delta must carry it.
    """

    content_type = "text/event-stream"

    def __init__(self, req: ir.ChatRequest):
        self.model = req.model
        self.id = ""
        self.started = False
        self.open_block = None  # ("text", index) or ("tool", index)
        self.next_block = 0
        self.finish = None
        self.usage = Usage()

    def encode(self, event) -> bytes:
        if type(event) is ir.TextDelta:  # most events: before the checks the others need
            out = self._start()
            if not self.open_block or self.open_block[0] != "text":
                out += self._open({"type": "text", "text": ""}, "text")
            return out + self._event("content_block_delta", index=self.open_block[1],
                                     delta={"type": "text_delta", "text": event.text})
        if isinstance(event, ir.Start):
            self.id = event.id
            return self._start()
        if isinstance(event, ir.UsageUpdate):
            self.usage = event.usage
            return b""
        if isinstance(event, ir.Failure):
            return self.error_event(event.error)
        out = self._start()
        if isinstance(event, ir.ToolCallStart):
            out += self._open({"type": "tool_use", "id": safe_id(event.id), "name": event.name,
                               "input": {}}, "tool")
        elif isinstance(event, ir.ToolCallDelta) and self.open_block:
            out += self._event("content_block_delta", index=self.open_block[1],
                               delta={"type": "input_json_delta", "partial_json": event.arguments})
        elif isinstance(event, ir.Finish):
            out += self._close()
            self.finish = event
        elif isinstance(event, ir.End):
            out += self._close() + self._stop()
        return out

    def error_event(self, err) -> bytes:
        return self._event("error", **{"error": error_body(err)["error"]})

    def _start(self) -> bytes:
        if self.started:
            return b""
        self.started = True
        return self._event("message_start", message={
            "id": message_id(self.id), "type": "message", "role": "assistant",
            "model": self.model, "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": usage_to(self.usage)})

    def _open(self, block, kind) -> bytes:
        out = self._close()
        self.open_block = (kind, self.next_block)
        self.next_block += 1
        return out + self._event("content_block_start", index=self.open_block[1],
                                 content_block=block)

    def _close(self) -> bytes:
        if not self.open_block:
            return b""
        index, self.open_block = self.open_block[1], None
        return self._event("content_block_stop", index=index)

    def _stop(self) -> bytes:
        finish = self.finish or ir.Finish(ir.STOP)
        reason = STOP_FROM_IR.get(finish.stop_reason, "end_turn")
        delta = {"stop_reason": reason,
                 "stop_sequence": finish.stop_sequence if reason == "stop_sequence" else None}
        return (self._event("message_delta", delta=delta, usage=usage_to(self.usage))
                + self._event("message_stop"))

    @staticmethod
    def _event(name, **fields) -> bytes:
        return encode_event(json_data({"type": name, **fields}), name)


class PassthroughTap(Watcher):
    """Watches a passthrough Messages stream: usage from message_start and message_delta."""

    def __init__(self):
        super().__init__(error_event)
        self.running = RunningUsage()

    def watch(self, event: bytes) -> bytes | None:
        name = event_name(event)
        if name == "error":  # it may quote what the gateway sent upstream, its key too
            self.failed = True
            return self.redacted(event)
        if name in ("message_start", "message_delta"):
            try:
                data = data_json(event_data(event))
            except ValueError:
                return event
            usage = (data.get("message") or {}).get("usage") if name == "message_start" \
                else data.get("usage")
            self.running.update_usage(usage)
            self.usage = self.running.usage
        elif name == "message_stop":
            self.finished = True
        return event
