"""OpenAI Responses streams: the event grammar written from IR events, read back into them,
and the tap that watches a passthrough stream.

An encoded stream is the full sequence the official SDK reconstructs state from: created,
in_progress, then per output item added / (content part added, text deltas, text done, part
done | argument deltas, arguments done) / done, and a terminal completed or incomplete whose
response is what the non-streaming call returns. Every event has a `sequence_number`, from 0.
"""

import json
import time

from errors import UpstreamError, failed_mid_stream
from translation import ir
from translation.content import new_call_id
from translation.format import StreamDecoder as Decoder
from translation.format import StreamEncoder as Encoder
from translation.openai import error_body
from translation.responses_objects import (
    TERMINAL,
    call_item,
    error_code,
    message_item,
    new_id,
    output_text,
    response_object,
    status_of,
    stop_to_ir,
    usage_from,
)
from translation.sse import data_json, encode_event, event_data, json_data
from translation.taps import PassthroughTap as Watcher


def _event(kind: str, seq: int, **fields) -> bytes:
    data = {"type": kind, "sequence_number": seq, **fields}
    return encode_event(json_data(data), kind)


def error_only_event(err, seq: int) -> bytes:
    """An `error` event. The nested `error` object is what makes the SDK raise on it."""
    body = error_body(err)["error"]
    return _event("error", seq, code=body["code"] or error_code(err), message=err.message,
                  param=body["param"], error=body)


def error_event(err) -> bytes:
    """An in-stream `error` event when nothing is known of the stream (the taps know more)."""
    return error_only_event(err, 0)


class StreamEncoder(Encoder):
    """IR events -> Responses events for a Responses client."""

    content_type = "text/event-stream"

    def __init__(self, req: ir.ChatRequest, *, price=None):
        self.req, self.price = req, price
        self.id = new_id("resp")
        self.created = int(time.time())
        self.seq = 0
        self.output: list[dict] = []
        self.open: int | None = None  # output index of the item still streaming
        self.pending: list[str] = []  # its text or arguments streamed since last written in
        self.calls: dict[int, int] = {}  # IR tool-call index -> output index
        self.stop_reason = ir.STOP
        self.usage = None
        self.started = False
        self.ended = False

    def _emit(self, kind: str, **fields) -> bytes:
        out = _event(kind, self.seq, **fields)
        self.seq += 1
        return out

    def encode(self, event) -> bytes:
        out = b""
        if not self.started and not isinstance(event, ir.Failure | ir.UsageUpdate):
            out += self._start()
        if isinstance(event, ir.TextDelta):
            out += self._text(event.text)
        elif isinstance(event, ir.ToolCallStart):
            out += self._close()
            index = len(self.output)
            self.calls[event.index] = index
            self.output.append(call_item(new_id("fc"), event.id, event.name, "", "in_progress"))
            self.open = index
            out += self._emit("response.output_item.added", output_index=index,
                              item=dict(self.output[index]))
        elif isinstance(event, ir.ToolCallDelta) and event.index in self.calls:
            index = self.calls[event.index]
            if index == self.open:
                self.pending.append(event.arguments)
            else:
                self.output[index]["arguments"] += event.arguments
            out += self._emit("response.function_call_arguments.delta",
                              item_id=self.output[index]["id"], output_index=index,
                              delta=event.arguments)
        elif isinstance(event, ir.Finish):
            self.stop_reason = event.stop_reason
            out += self._close()
        elif isinstance(event, ir.UsageUpdate):
            self.usage = event.usage
        elif isinstance(event, ir.End):
            out += self._close() + self._terminal()
        elif isinstance(event, ir.Failure):
            out += self.error_event(event.error)
        return out

    def _start(self) -> bytes:
        self.started = True
        skeleton = self._response("in_progress")
        return (self._emit("response.created", response=skeleton)
                + self._emit("response.in_progress", response=skeleton))

    def _response(self, status, **extra) -> dict:
        self._write_pending()
        return response_object(self.id, self.created, self.req, [dict(i) for i in self.output],
                               status=status, **extra)

    def _text(self, text: str) -> bytes:
        out = b""
        if self.open is None or self.output[self.open]["type"] != "message":
            out += self._close()
            index = self.open = len(self.output)
            item = message_item(new_id("msg"), None, "in_progress")
            self.output.append(item)
            out += self._emit("response.output_item.added", output_index=index,
                              item={**item, "content": []})
            item["content"] = [output_text("")]
            out += self._emit("response.content_part.added", item_id=item["id"],
                              output_index=index, content_index=0, part=output_text(""))
        item = self.output[self.open]
        self.pending.append(text)  # not `text += ...` per delta: that copies all the text so far
        return out + self._emit("response.output_text.delta", item_id=item["id"],
                                output_index=self.open, content_index=0, delta=text,
                                logprobs=[])

    def _write_pending(self) -> None:
        """Join what the open item streamed since last time into it."""
        if self.open is None or not self.pending:
            return
        item, text = self.output[self.open], "".join(self.pending)
        self.pending.clear()
        if item["type"] == "message":
            item["content"][0]["text"] += text
        else:
            item["arguments"] += text

    def _close(self, status: str = "completed") -> bytes:
        """Finish the item still open: its .done events, then output_item.done."""
        if self.open is None:
            return b""
        self._write_pending()
        index, self.open = self.open, None
        item = self.output[index]
        item["status"] = status
        out = b""
        if item["type"] == "message":
            part = item["content"][0]
            out += self._emit("response.output_text.done", item_id=item["id"],
                              output_index=index, content_index=0, text=part["text"],
                              logprobs=[])
            out += self._emit("response.content_part.done", item_id=item["id"],
                              output_index=index, content_index=0, part=dict(part))
        else:
            out += self._emit("response.function_call_arguments.done", item_id=item["id"],
                              output_index=index, name=item["name"],
                              arguments=item["arguments"])
        return out + self._emit("response.output_item.done", output_index=index,
                                item=json.loads(json.dumps(item)))

    def final_response(self) -> dict:
        status = status_of(self.stop_reason)
        response = self._response(status, usage=self.usage, stop_reason=self.stop_reason)
        if self.price is not None and self.usage is not None:
            response["credits_consumed"] = float(self.price(self.usage))
        return response

    def _terminal(self) -> bytes:
        self.ended = True
        response = self.final_response()
        kind = "response.completed" if response["status"] == "completed" else \
            "response.incomplete"
        return self._emit(kind, response=response)

    def error_event(self, err) -> bytes:
        """response.failed with what was produced so far, then an `error` event."""
        out = b"" if self.started else self._start()
        out += self._close("incomplete")
        self.ended = True
        failed = self._response("failed", usage=self.usage,
                                error={"code": error_code(err), "message": err.message})
        out += self._emit("response.failed", response=failed)
        out += error_only_event(err, self.seq)
        self.seq += 1
        return out


class StreamDecoder(Decoder):
    """Upstream Responses events -> IR events."""

    def __init__(self):
        self.calls: dict[str, dict] = {}  # item id -> {"index": n, "args": whether any streamed}
        self.count = 0
        self.started = False

    def feed(self, event: bytes) -> list:
        data = event_data(event)
        if not data or data == b"[DONE]":
            return []
        try:
            payload = data_json(data)
        except ValueError:
            return []
        if not isinstance(payload, dict):
            return []
        kind = payload.get("type")
        out = []
        if not self.started and kind != "error":
            self.started = True
            response = payload.get("response") or {}
            out.append(ir.Start(id=response.get("id") or "", model=response.get("model") or ""))
        if kind == "response.output_text.delta" and payload.get("delta"):
            out.append(ir.TextDelta(str(payload["delta"])))
        elif kind == "response.output_item.added":
            out += self._added(payload.get("item") or {})
        elif kind == "response.function_call_arguments.delta":
            out += self._arguments(payload.get("item_id"), str(payload.get("delta") or ""))
        elif kind == "response.output_item.done":
            item = payload.get("item") or {}
            call = self.calls.get(item.get("id"))
            if call is not None and not call["args"] and item.get("arguments"):
                out.append(ir.ToolCallDelta(call["index"], str(item["arguments"])))
        elif kind in TERMINAL:
            out += self._end(payload.get("response") or {})
        elif kind in ("response.failed", "error"):
            out.append(ir.Failure(_failure(payload)))
        return out

    def _added(self, item) -> list:
        if item.get("type") != "function_call":
            return []
        index = self.count
        self.count += 1
        self.calls[item.get("id") or f"#{index}"] = {"index": index, "args": ""}
        out = [ir.ToolCallStart(index, item.get("call_id") or new_call_id(),
                                item.get("name") or "")]
        if item.get("arguments"):
            self.calls[item.get("id") or f"#{index}"]["args"] = item["arguments"]
            out.append(ir.ToolCallDelta(index, str(item["arguments"])))
        return out

    def _arguments(self, item_id, delta) -> list:
        call = self.calls.get(item_id)
        if call is None or not delta:
            return []
        call["args"] = True
        return [ir.ToolCallDelta(call["index"], delta)]

    def _end(self, response) -> list:
        saw_call = [ir.ToolCall("", "")] if self.count else []
        out = [ir.Finish(stop_to_ir(response, saw_call))]
        usage = usage_from(response.get("usage"))
        if usage is not None:
            out.append(ir.UsageUpdate(usage))
        return out + [ir.End()]


def _failure(payload) -> UpstreamError:
    error = (payload.get("response") or {}).get("error") or payload.get("error") or payload
    message = error.get("message") if isinstance(error, dict) else str(error)
    return failed_mid_stream(message)


class PassthroughTap(Watcher):
    """Watches a passthrough Responses stream without re-encoding it.

    Reads usage from the terminal event, notes whether the stream completed, and remembers the
    response id and last sequence number so a failure it must add continues the sequence.
    """

    def __init__(self):
        super().__init__(error_event)
        self.response_id = ""
        self._seq = -1
        self._last = b""  # the last content event, whose sequence number is read when needed

    def watch(self, event: bytes) -> bytes | None:
        head = event[:140]  # "event: ...\ndata: {"type": ...": the kind is near the start
        if b'"response.created"' in head or b'"response.completed"' in head or \
                b'"response.incomplete"' in head or b'"response.failed"' in head or \
                b'"error"' in head:
            self._last = b""
            if self._lifecycle(event_data(event)):  # a failure may quote the key too
                return self.redacted(event)
        else:
            self._last = event
        return event

    @property
    def seq(self) -> int:
        """The last sequence number the upstream sent."""
        if self._last:
            data, self._last = self._last, b""
            at = data.rfind(b'"sequence_number":')
            if at >= 0:
                digits = data[at + 18:at + 40].strip().split(b",")[0].split(b"}")[0]
                if digits.strip().isdigit():
                    self._seq = int(digits)
        return self._seq

    @seq.setter
    def seq(self, value: int) -> None:
        self._last, self._seq = b"", value

    def _lifecycle(self, data: bytes) -> bool:
        """Read a lifecycle event; True when it reports a failure (or may: unreadable)."""
        try:
            payload = data_json(data)
        except ValueError:
            return b"error" in data
        if not isinstance(payload, dict):
            return False
        self.seq = int(payload.get("sequence_number") or self.seq)
        kind = payload.get("type")
        response = payload.get("response") if isinstance(payload.get("response"), dict) else {}
        self.response_id = response.get("id") or self.response_id
        if kind in TERMINAL:
            self.finished = True
            self.usage = usage_from(response.get("usage")) or self.usage
        elif kind in ("response.failed", "error"):
            self.failed = True
            self.usage = usage_from(response.get("usage")) or self.usage
            return True
        return False

    def error_event(self, err) -> bytes:
        """A failure the gateway adds (a cut or stalled upstream): response.failed, error."""
        self.seq += 1
        failed = {"id": self.response_id, "object": "response", "status": "failed",
                  "error": {"code": error_code(err), "message": err.message}}
        out = _event("response.failed", self.seq, response=failed)
        self.seq += 1
        return out + error_only_event(err, self.seq)
