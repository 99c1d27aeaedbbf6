"""The gunicorn worker: gevent's, with gunicorn's own error answers as JSON, each answer's
header block sent with its body, its cyclic garbage collector kept off what lives for good,
and what a burst of connections left mapped handed back to the system after it.

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
import os
import sys

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
        gevent.spawn(_release_after_bursts, self, TRIM_EVERY)
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
# stays mapped, in two allocators:
# - glibc keeps freed memory inside its heap; malloc_trim hands its free pages back.
# - CPython's small-object allocator hands back a 1 MiB arena only once nothing in it is alive,
#   and a burst's new arenas are each held by a few blocks that outlive it. Most are kept by
#   the interpreter itself: tuples, dicts, lists and contexts on its free lists for reuse (a
#   full collection empties them), and attribute names in its type-attribute cache, 4,096
#   entries that each keep their name alive. gevent's C code looks "stop" up by a name made
#   afresh on every timer it stops, so after a burst the cache holds names made during it.
#   Measured on a worker after 2,500 slow streams: 90 arenas new since its start, 55 after
#   a cache clear and a full collection, resident memory 193 MB, then 159 (99 at its start).
# So when the worker's open files (its sockets: clients', upstreams', the kept connections the
# app closes once idle) have fallen to half their peak, the worker clears the attribute cache
# (it refills at the next lookups), collects, and trims the heap. Kept connections are closed
# well after the streams end, and what they free refills the free lists, so the open files
# are the count to follow, not the streams. A release walks the heap and every object not
# frozen (some milliseconds), so it runs once per halving of a burst, not on a timer alone.
TRIM_EVERY = 10.0  # seconds between looks at the open files
TRIM_AFTER = 200  # open files at the peak below which there is nothing worth handing back


class BurstWatch:
    """Tells, look by look at a count of open files, when a burst has ebbed: the count at
    or below half its peak, from a peak of at least `least`. The count then is the next peak,
    and one halving more is looked for below `least`: the streams still open at the last one
    refill the free lists as they end."""

    def __init__(self, least: int = TRIM_AFTER):
        self.least, self.peak, self.after_burst = least, 0, False

    def ebbed(self, count: int) -> bool:
        self.peak = max(self.peak, count)
        if count <= self.peak // 2 and (self.peak >= self.least or self.after_burst):
            self.peak, self.after_burst = count, self.peak >= self.least
            return True
        return False


def release_memory(trim=None) -> None:
    """Hand back what a burst left mapped: the attribute cache's names, the free lists and
    garbage cycles (a full collection), then glibc's free heap pages (`trim`: malloc_trim)."""
    clear_type_cache = getattr(sys, "_clear_type_cache", None)  # CPython's; others lack it
    if clear_type_cache is not None:
        clear_type_cache()
    gc.collect()
    if trim is not None:
        trim(0)


def _release_after_bursts(worker, every: float):
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: no heap to trim
        trim = None
    watch = BurstWatch()
    while worker.alive:
        gevent.sleep(every)
        if watch.ebbed(open_files()):
            release_memory(trim)


def open_files() -> int:
    """This process's open file descriptors; where /proc is missing, the sockets the event
    loop waits on (libev's count of active watchers; libuv's loop has none)."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return getattr(gevent.get_hub().loop, "activecnt", 0)
