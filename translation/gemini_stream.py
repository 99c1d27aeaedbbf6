"""Gemini streams: decode upstream SSE chunks into IR events; encode IR events as SSE or as the
JSON array Gemini streams when the client did not ask for `alt=sse`; watch a passthrough stream,
re-framed as that array when the client wants one."""

import json
from dataclasses import replace

from errors import failed_mid_stream
from translation import ir
from translation.content import load_arguments
from translation.format import StreamDecoder as Decoder
from translation.format import StreamEncoder as Encoder
from translation.gemini import (
    FINISH_FROM_IR,
    error_body,
    error_event,
    finish_to_ir,
    images_in,
    parts_to_ir,
    usage_from,
    usage_to,
)
from translation.sse import data_json, encode_event, event_data, json_data
from translation.taps import PassthroughTap as Watcher


class StreamDecoder(Decoder):
    """Upstream streamGenerateContent (alt=sse) chunks -> IR events.

    Function calls arrive whole, each becoming a start and one argument fragment. The stream
    has no terminator: it is complete when a finishReason came before the connection closed.
    A chunk's usage is yielded first, so an encoder starting its answer already knows it.
    """

    def __init__(self):
        self.started = False
        self.calls = 0
        self.finish = None
        self.finished = False
        self.images = 0  # images so far: the usage of each chunk carries them

    def feed(self, event: bytes) -> list:
        data = event_data(event) or event.strip()  # errors may come as bare JSON lines
        try:
            chunk = data_json(data)
        except ValueError:
            return []
        if isinstance(chunk, list) and chunk:
            chunk = chunk[0]
        if not isinstance(chunk, dict):
            return []
        if "error" in chunk:
            message = (chunk["error"] or {}).get("message") if isinstance(chunk["error"], dict) \
                else chunk["error"]
            return [ir.Failure(failed_mid_stream(message))]
        events = self._candidate(chunk)
        usage = usage_from(chunk.get("usageMetadata"))
        if usage is not None:
            usage = replace(usage, images=self.images)
        out = [ir.UsageUpdate(usage)] if usage is not None else []  # before Start: see above
        if not self.started:
            self.started = True
            out.append(ir.Start(id=chunk.get("responseId") or "",
                                model=chunk.get("modelVersion") or ""))
        return out + events

    def _candidate(self, chunk) -> list:
        candidates = chunk.get("candidates") or []
        if not candidates:
            if (chunk.get("promptFeedback") or {}).get("blockReason"):
                self.finish = ir.Finish(ir.CONTENT_FILTER)
                return [self.finish]
            return []
        candidate, out = candidates[0], []
        for part in parts_to_ir((candidate.get("content") or {}).get("parts")):
            if isinstance(part, ir.Text):
                out.append(ir.TextDelta(part.text))
            elif isinstance(part, ir.Image):
                out.append(ir.ImageOut(part.mime, part.data))
                self.images += 1
            else:
                out.append(ir.ToolCallStart(self.calls, part.id, part.name, part.signature))
                out.append(ir.ToolCallDelta(self.calls, part.arguments))
                self.calls += 1
        if candidate.get("finishReason"):
            self.finish = ir.Finish(finish_to_ir(candidate["finishReason"], self.calls > 0))
            out.append(self.finish)
        return out

    def end(self) -> list:
        """The connection closed: that is the end, if the answer had finished."""
        if self.finish is not None and not self.finished:
            self.finished = True
            return [ir.End()]
        return []


class StreamEncoder(Encoder):
    """IR events -> GenerateContentResponse chunks, as SSE (`alt=sse`) or one JSON array.

    Function calls are sent whole, as Gemini does: argument fragments are gathered until the
    call is complete. finishReason and the usage go on the last chunk.
    """

    def __init__(self, req: ir.ChatRequest, *, sse: bool = True):
        self.model = req.model
        self.sse = sse
        self.content_type = "text/event-stream" if sse else "application/json"
        self.id = ""
        self.sent = 0
        self.call = None  # [ToolCallStart, argument pieces] of the call being gathered
        self.finish = None
        self.usage = None
        self.closed = False

    def encode(self, event) -> bytes:
        if isinstance(event, ir.Start):
            self.id = event.id
        elif isinstance(event, ir.TextDelta):
            return self._flush_call() + self._chunk([{"text": event.text}])
        elif isinstance(event, ir.ImageOut):
            return self._flush_call() + self._chunk(
                [{"inlineData": {"mimeType": event.mime, "data": event.data}}])
        elif isinstance(event, ir.ToolCallStart):
            out = self._flush_call()
            self.call = [event, []]
            return out
        elif isinstance(event, ir.ToolCallDelta) and self.call:
            self.call[1].append(event.arguments)  # joined once, when the call is sent
        elif isinstance(event, ir.Finish):
            self.finish = event
        elif isinstance(event, ir.UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, ir.End):
            return self._last()
        elif isinstance(event, ir.Failure):
            return self.error_event(event.error)
        return b""

    def error_event(self, err) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        body = json.dumps(error_body(err)).encode()
        if self.sse:
            return encode_event(body)
        return (b"[" if not self.sent else b",\r\n") + body + b"]"

    def _flush_call(self) -> bytes:
        if not self.call:
            return b""
        start, pieces = self.call
        self.call = None
        part = {"functionCall": {"id": start.id, "name": start.name,
                                 "args": load_arguments("".join(pieces))}}
        if start.signature:
            part["thoughtSignature"] = start.signature
        return self._chunk([part])

    def _last(self) -> bytes:
        out = b""
        if self.call:
            out = self._flush_call()
        finish = FINISH_FROM_IR.get((self.finish or ir.Finish(ir.STOP)).stop_reason, "STOP")
        out += self._chunk([], finish=finish, usage=self.usage)
        if not self.sse:
            out += b"]"
        self.closed = True
        return out

    def _chunk(self, parts, *, finish=None, usage=None) -> bytes:
        candidate = {"content": {"role": "model", "parts": parts}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        body = {"candidates": [candidate], "modelVersion": self.model, "responseId": self.id}
        if usage is not None:
            body["usageMetadata"] = usage_to(usage)
        data = json_data(body)
        self.sent += 1
        if self.sse:
            return encode_event(data)
        return (b"[" if self.sent == 1 else b",\r\n") + data


class PassthroughTap(Watcher):
    """Watches a passthrough SSE stream: the last usageMetadata, and whether a finishReason came."""

    def __init__(self):
        super().__init__(error_event)

    def watch(self, event: bytes) -> bytes | None:
        image = b'"inlineData"' in event or b'"inline_data"' in event  # charged per image
        if image or b'"usageMetadata"' in event or b'"finishReason"' in event \
                or b'"error"' in event:
            data = event_data(event)  # one parse, also of a chunk carrying a large image
            try:
                chunk = data_json(data)
            except ValueError:
                return self.redacted(event) if b"error" in data else event
            if isinstance(chunk, dict) and "error" in chunk:  # it may quote the gateway's key
                self.failed = True
                return self.redacted(event)
            if isinstance(chunk, dict):
                if image:
                    self.images += images_in(chunk)
                self.usage = usage_from(chunk.get("usageMetadata")) or self.usage
                self.finished = self.finished or any(
                    c.get("finishReason") for c in chunk.get("candidates") or [])
        return event


class ArrayTap(PassthroughTap):
    """A passthrough stream for a client that asked for the JSON array (no `alt=sse`): each
    upstream SSE chunk becomes an element as it arrives, its JSON untouched."""

    content_type = "application/json"

    def __init__(self):
        super().__init__()
        self.sent = 0
        self.closed = False

    def feed(self, event: bytes) -> bytes | None:
        return self._kept(self._element(event))

    def _element(self, event: bytes) -> bytes | None:
        event = None if self.closed else self.watch(event)  # error events come back redacted
        if event is None:
            return None
        data = event_data(event).strip()
        if not data and event.lstrip().startswith(b"{"):
            data = event.strip()  # errors may come as bare JSON
        if not data:
            return None  # comments and keep-alives have no place in the array
        self.sent += 1
        return (b"[" if self.sent == 1 else b",\r\n") + data

    def close(self) -> bytes | None:
        """The array's end; a stream that ended unfinished gets it with its error event."""
        if self.closed or not (self.finished or self.failed):
            return None
        self.closed = True
        return b"]" if self.sent else b"[]"

    def error_event(self, err) -> bytes:
        if self.closed:
            return b""
        self.closed = True
        return (b"[" if not self.sent else b",\r\n") + json.dumps(error_body(err)).encode() + b"]"
