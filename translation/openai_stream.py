"""OpenAI Chat Completions streams: decode upstream chunks into IR events, encode IR events, and
watch a passthrough stream."""

import json
import time

from errors import failed_mid_stream
from translation import ir
from translation.content import new_call_id
from translation.format import StreamDecoder as Decoder
from translation.format import StreamEncoder as Encoder
from translation.openai import (
    DONE,
    FINISH_FROM_IR,
    FINISH_TO_IR,
    completion_id,
    error_event,
    image_entry,
    usage_from,
    usage_to,
)
from translation.sse import data_json, encode_event, event_data, json_data
from translation.taps import PassthroughTap as Watcher


class StreamDecoder(Decoder):
    """Upstream chat completion chunks -> IR events.

    Tool-call fragments are routed by id when present, else by index, else to the current call:
    some OpenAI-compatible servers omit one or the other.
    """

    def __init__(self):
        self.started = False
        self.finished = False
        self.calls = {}  # ("id", id) or ("index", n) -> our tool-call index
        self.count = 0
        self.current = None

    def feed(self, event: bytes) -> list:
        data = event_data(event)
        if not data:
            return []
        if data == b"[DONE]":
            self.finished = True
            return [ir.End()]
        try:
            chunk = data_json(data)
        except ValueError:
            return []
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            return [ir.Failure(stream_error(chunk["error"]))]
        out = []
        if not self.started:
            self.started = True
            out.append(ir.Start(id=chunk.get("id") or "", model=chunk.get("model") or ""))
        for choice in chunk.get("choices") or []:
            if isinstance(choice, dict) and choice.get("index", 0) == 0:
                out.extend(self._choice(choice))
        usage = usage_from(chunk.get("usage"))
        if usage is not None:
            out.append(ir.UsageUpdate(usage))
        return out

    def _choice(self, choice) -> list:
        delta, out = choice.get("delta") or {}, []
        if delta.get("content"):
            out.append(ir.TextDelta(delta["content"]))
        for fragment in delta.get("tool_calls") or []:
            out.extend(self._tool_fragment(fragment))
        reason = choice.get("finish_reason")
        if reason:
            out.append(ir.Finish(FINISH_TO_IR.get(reason, ir.STOP)))
        return out

    def _tool_fragment(self, fragment) -> list:
        function = fragment.get("function") or {}
        call_id, position = fragment.get("id"), fragment.get("index")
        if call_id:
            index = self.calls.get(("id", call_id))
        elif position is not None:
            index = self.calls.get(("index", position))
        else:
            index = self.current
        out = []
        if index is None:
            index = self.count
            self.count += 1
            if call_id:
                self.calls[("id", call_id)] = index
            if position is not None:
                self.calls[("index", position)] = index
            out.append(ir.ToolCallStart(index, call_id or new_call_id(),
                                        function.get("name") or ""))
        self.current = index
        if function.get("arguments"):
            out.append(ir.ToolCallDelta(index, function["arguments"]))
        return out


def stream_error(payload):
    return failed_mid_stream(payload.get("message") if isinstance(payload, dict) else str(payload))


class StreamEncoder(Encoder):
    """IR events -> chat completion chunks for an OpenAI client; the usage chunk only if asked."""

    content_type = "text/event-stream"

    def __init__(self, req: ir.ChatRequest, *, price=None):
        self.model = req.model
        self.include_usage = req.include_usage
        self.price = price  # Usage -> credits, shown in the usage chunk as the passthrough does
        self.id = ""
        self.created = int(time.time())
        self.started = False
        self.usage = None
        self.images = 0  # images sent so far (their index in delta.images)

    def encode(self, event) -> bytes:
        out = b""
        if not self.started and not isinstance(event, ir.Failure | ir.UsageUpdate):
            self.started = True
            self.id = completion_id(getattr(event, "id", "") or "gateway")
            out += self._chunk({"role": "assistant", "content": ""})
        if isinstance(event, ir.TextDelta):
            out += self._chunk({"content": event.text})
        elif isinstance(event, ir.ToolCallStart):
            out += self._chunk({"tool_calls": [{"index": event.index, "id": event.id,
                                                "type": "function", "function": {
                                                    "name": event.name, "arguments": ""}}]})
        elif isinstance(event, ir.ToolCallDelta):
            out += self._chunk({"tool_calls": [{"index": event.index,
                                                "function": {"arguments": event.arguments}}]})
        elif isinstance(event, ir.ImageOut):
            out += self._chunk({"images": [image_entry(event.mime, event.data, self.images)]})
            self.images += 1
        elif isinstance(event, ir.Finish):
            out += self._chunk({}, FINISH_FROM_IR.get(event.stop_reason, "stop"))
        elif isinstance(event, ir.UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, ir.End):
            if self.include_usage and self.usage is not None:
                extra = {"credits_consumed": float(self.price(self.usage))} if self.price else {}
                out += self._chunk(None, usage=usage_to(self.usage), **extra)
            out += DONE
        elif isinstance(event, ir.Failure):
            out += self.error_event(event.error)
        return out

    def error_event(self, err) -> bytes:
        return error_event(err)

    def _chunk(self, delta, finish=None, usage=None, **extra) -> bytes:
        body = {"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                "model": self.model,
                "choices": [] if delta is None else [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        if self.include_usage:
            body["usage"] = usage
        body.update(extra)
        return encode_event(json_data(body))


class PassthroughTap(Watcher):
    """Watches a passthrough chat stream without re-encoding it.

    Records the last usage seen (some servers repeat it on every chunk: the last one wins),
    whether `[DONE]` arrived, and drops the usage-only chunk the client did not ask for; the
    one it asked for gets the credits the answer cost (`price`: Usage -> credits).
    """

    def __init__(self, forward_usage_chunk: bool, price=None):
        super().__init__(error_event)
        self.forward_usage_chunk = forward_usage_chunk
        self.price = price

    def watch(self, event: bytes) -> bytes | None:
        if not _may_carry_usage(event) and b'"error"' not in event:
            # the common case: a content chunk, relayed without parsing or even unframing
            if b"[DONE]" in event and event_data(event) == b"[DONE]":
                self.finished = True
            return event
        data = event_data(event)
        try:
            chunk = data_json(data)
        except ValueError:
            return self.redacted(event) if b"error" in data else event
        if not isinstance(chunk, dict):
            return event
        if "error" in chunk:  # it may quote what the gateway sent upstream, its key too
            self.failed = True
            return self.redacted(event)
        usage = usage_from(chunk.get("usage"))
        if usage is None or chunk.get("choices"):
            if usage is not None:
                self.usage = usage
            return event
        self.usage = usage  # the usage-only chunk after the finish chunk
        if not self.forward_usage_chunk:
            return None
        if self.price is None:
            return event
        chunk["credits_consumed"] = float(self.price(usage))
        return encode_event(json.dumps(chunk).encode())


def _may_carry_usage(data: bytes) -> bool:
    return b'"usage"' in data and b'"usage":null' not in data and b'"usage": null' not in data
