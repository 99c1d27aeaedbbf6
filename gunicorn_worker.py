"""The gunicorn worker: gevent's, with gunicorn's own error answers as JSON, each answer's
header block sent with its body, its cyclic garbage collector kept off what lives for good,
and its heap handed back to the system after a burst of connections.

gunicorn answers a request it cannot parse (a malformed request line, oversized headers, an
unknown transfer coding) itself, before the app sees it, with an HTML page. This worker keeps
gunicorn's choice of status and message and sends them in the OpenAI error envelope instead,
which every client of the gateway can read. Requests are parsed by gunicorn_h1c
(gunicorn.conf.py's http_parser); where it names a refusal differently from gunicorn's Python
parser, the worker gives the Python parser's answer. Only errors.redact is imported from the app.
"""

import ctypes
import gc
import json

import gevent
from gunicorn import util
from gunicorn.http import wsgi
from gunicorn.http.errors import InvalidHeader, UnsupportedTransferCoding
from gunicorn.workers.ggevent import GeventWorker

from errors import redact


def write_json_error(sock, status_int, reason, mesg):
    """What gunicorn.util.write_error sends, as a JSON error body."""
    kind = "server_error" if status_int >= 500 else "invalid_request_error"
    # gunicorn quotes the offending request line, which may carry a key (?key=...)
    body = json.dumps({"error": {"message": redact(mesg or reason), "type": kind, "param": None,
                                 "code": None}}).encode()
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


class _Kept:
    """Stands in for the socket while gunicorn writes: keeps what it would have sent."""

    def __init__(self):
        self.data = b""

    def sendall(self, data):
        self.data += data


COALESCE_MAX = 64 * 1024  # a first body piece up to this size goes out with the header block


class OneSendResponse(wsgi.Response):
    """gunicorn's response, whose header block goes out with the first piece of the body in one
    send (gunicorn sends them apart: two system calls and two packets for every answer).

    gunicorn builds the header block and frames the body as always; what it would send is kept
    instead (`_Kept`) and sent together. Before anything else reaches the socket (the end of a
    chunked body, a file sent with sendfile, a response without a body) the held block is sent
    first, so the bytes and their order on the wire are gunicorn's."""

    _head = None

    def send_headers(self):
        if self.headers_sent:
            return
        self._head = self._written(super().send_headers)

    def _emit_body(self, data):
        head, self._head = self._head, None
        if head is None or len(data) > COALESCE_MAX:
            if head is not None:
                self.sock.sendall(head)
            return super()._emit_body(data)
        self.sock.sendall(head + self._written(super()._emit_body, data))

    def sendfile(self, respiter):
        self.send_headers()
        self._send_held()
        return super().sendfile(respiter)

    def close(self):
        self.send_headers()
        self._send_held()
        super().close()

    def _send_held(self):
        head, self._head = self._head, None
        if head is not None:
            self.sock.sendall(head)

    def _written(self, write, *args) -> bytes:
        sock, kept = self.sock, _Kept()
        self.sock = kept
        try:
            write(*args)
        finally:
            self.sock = sock
        return kept.data


FAST_PARSER_UNKNOWN_CODING = "Unsupported Transfer-Encoding"


class JsonErrorWorker(GeventWorker):
    def init_process(self):
        # gunicorn's Worker.handle_error looks write_error up on the util module at each call,
        # and wsgi.create its Response class; this process is the worker alone, so they are
        # replaced for it only.
        util.write_error = write_json_error
        wsgi.Response = OneSendResponse
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        tune_collector()

    def handle_error(self, req, client, addr, exc):
        # gunicorn_h1c 0.6.10 (http_parser = "fast") reports a transfer coding it does not know
        # as a bad header: answer it as gunicorn's Python parser does, 501 (RFC 9112, 6.1).
        if isinstance(exc, InvalidHeader) and exc.hdr == FAST_PARSER_UNKNOWN_CODING:
            exc = UnsupportedTransferCoding("Transfer-Encoding")
        super().handle_error(req, client, addr, exc)

    def run(self):
        gevent.spawn(_trim_heap, self, TRIM_EVERY)
        super().run()


# CPython's cyclic collector runs whenever the container objects alive outnumber those at its
# last run by its first threshold (700 by default). Requests in flight pass that all the time:
# at 32 in flight one worker collected about 70 times a second, each time also walking some of
# what the app loaded (some 140,000 objects: modules, routes, schemas, mappers), about 50 us of
# each request's CPU. What exists once the app is loaded lives as long as the worker, so
# gc.freeze() moves it to the permanent generation, which no collection walks, and a first
# threshold of 10,000 lets the collector run when garbage has piled up rather than at every
# request's peak: cycles are still found, and what they hold until then is bounded by that
# count. Measured: 0.5 s of collection in a 10 s run, then 0.02 s.
COLLECT_AFTER = 10_000


def tune_collector():
    gc.collect()  # what loading left as garbage goes now, not into the frozen set
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(COLLECT_AFTER, *older)


# After a burst (thousands of streams), what their greenlets and buffers used is free again but
# stays mapped: glibc keeps freed memory inside its heap. When the open sockets (the event
# loop's active watchers) have fallen to half their peak, the heap's free pages are handed
# back, bringing the worker's resident memory back near its start. A trim walks the heap (some
# milliseconds), so it runs once per burst, not on a timer alone.
TRIM_EVERY = 10.0  # seconds between looks at the loop
TRIM_AFTER = 200  # watchers at the peak below which there is nothing worth handing back


def _trim_heap(worker, every: float):
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: nothing to do
        return
    loop, peak = gevent.get_hub().loop, 0
    while worker.alive:
        gevent.sleep(every)
        active = getattr(loop, "activecnt", 0)  # libev's count; libuv's loop has none
        peak = max(peak, active)
        if peak >= TRIM_AFTER and active <= peak // 2:
            trim(0)
            peak = active
