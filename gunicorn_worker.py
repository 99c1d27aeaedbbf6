"""The gunicorn worker: gevent's, with gunicorn's own error answers as JSON, each answer's
header block sent with its body, its cyclic garbage collector kept off what lives for good,
and its heap handed back to the system after a burst of connections, and, where other workers
share its traffic and its counts, itself retired and replaced once quiet when a burst left it
far larger than it started.

gunicorn answers a request it cannot parse (a malformed request line, oversized headers, an
unknown transfer coding) itself, before the app sees it, with an HTML page. This worker keeps
gunicorn's choice of status and message and sends them in the OpenAI error envelope instead,
which every client of the gateway can read. Requests are parsed by gunicorn_h1c
(gunicorn.conf.py's http_parser); where it names a refusal differently from gunicorn's Python
parser, the worker gives the Python parser's answer. Only errors.redact is imported from the app.
"""

import ctypes
import fcntl
import gc
import json
import os
import tempfile
import time

import gevent
from gunicorn import util
from gunicorn.arbiter import Arbiter
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


def send_all(sock, data: bytes) -> None:
    """`sock.sendall(data)` on a gevent socket, trying one plain send first. gevent's sendall
    asks the kernel for the socket's send buffer size (a getsockopt call) and reads the clock
    before every send, whatever the size: for a stream's events, one small write each, that was
    8% of a relaying worker's CPU. A send that takes only part (the client reads slowly) is
    finished by sendall, which waits as before; errors are the socket's, as with sendall."""
    sent = sock.send(data)
    if sent < len(data):
        sock.sendall(memoryview(data)[sent:])


class OneSendResponse(wsgi.Response):
    """gunicorn's response, whose header block goes out with the first piece of the body in one
    send (gunicorn sends them apart: two system calls and two packets for every answer).

    gunicorn builds the header block and frames the body as always; what it would send is kept
    instead (`_Kept`) and sent together. Before anything else reaches the socket (the end of a
    chunked body, a file sent with sendfile, a response without a body) the held block is sent
    first, so the bytes and their order on the wire are gunicorn's. Body pieces are framed as
    gunicorn frames them (util.write) and sent by `send_all`; the tests compare the bytes with
    gunicorn's own Response's."""

    _head = None

    def send_headers(self):
        if self.headers_sent:
            return
        self._head = self._written(super().send_headers)

    def _emit_body(self, data):
        # framed as gunicorn frames it (util.write: as it is, or as util.write_chunk's chunk),
        # here rather than through util.write into a stand-in socket: this runs for every
        # event of every stream
        piece = b"%X\r\n%s\r\n" % (len(data), data) if self.chunked else data
        head, self._head = self._head, None
        if head is None:
            send_all(self.sock, piece)
        elif len(data) > COALESCE_MAX:
            send_all(self.sock, head)
            send_all(self.sock, piece)
        else:
            send_all(self.sock, head + piece)

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
            send_all(self.sock, head)

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
        self.connections, self.retirement, self.retire_turn = 0, None, None
        super().init_process()

    def load_wsgi(self):
        super().load_wsgi()
        tune_collector()
        config = getattr(self.wsgi, "config", None) or {}
        try:
            self.retirement = Retirement.for_worker(
                RETIRE_GROWTH_MB, workers=self.cfg.workers,
                limits_storage=config.get("RATELIMIT_STORAGE_URI", "memory://"))
        except ValueError as err:  # the master stops on this exit status, and says why
            self.log.error("%s", err)
            raise SystemExit(Arbiter.WORKER_BOOT_ERROR) from None

    def handle(self, listener, client, addr):
        self.connections += 1  # open client connections, kept-alive ones included
        try:
            super().handle(listener, client, addr)
        finally:
            self.connections -= 1

    def handle_error(self, req, client, addr, exc):
        # gunicorn_h1c 0.6.10 (http_parser = "fast") reports a transfer coding it does not know
        # as a bad header: answer it as gunicorn's Python parser does, 501 (RFC 9112, 6.1).
        if isinstance(exc, InvalidHeader) and exc.hdr == FAST_PARSER_UNKNOWN_CODING:
            exc = UnsupportedTransferCoding("Transfer-Encoding")
        super().handle_error(req, client, addr, exc)

    def run(self):
        gevent.spawn(_after_bursts, self, LOOK_EVERY)
        super().run()  # returns once it has stopped accepting and its connections have ended
        if self.retire_turn is not None:
            self.retire_turn.done()  # the next worker's turn starts from now

    def retire(self, turn: "RetireTurn", resident: int):
        """Stop accepting and exit once the open connections have ended, however long their
        streams last (the master starts a successor as this process exits); queued charges are
        written at exit, as on any stop."""
        self.log.warning(
            "Worker retiring (pid:%s): resident memory %d MB, %d MB over its least (%d MB "
            "allowed); %d open connections finish first", self.pid, resident >> 20,
            (resident - self.retirement.least) >> 20, self.retirement.growth >> 20,
            self.connections)
        self.retire_turn = turn
        self.cfg.set("graceful_timeout", RETIRE_DRAIN)  # this process's copy of the settings
        self.alive = False


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
# back. A trim walks the heap (some milliseconds), so it runs once per burst, not on a timer
# alone.
LOOK_EVERY = float(os.environ.get("TOLLGATE_MEMORY_LOOK_SECONDS") or 10)  # seconds between looks
TRIM_AFTER = 200  # watchers at the peak below which there is nothing worth handing back

# A trim hands back only whole free pages. CPython's small-object allocator returns a 1 MiB arena
# only when nothing in it is alive, and a burst's arenas each keep a few blocks that outlive it
# (free lists, the attribute cache, pooled connections made during it). Measured, two workers at
# 221-226 MB together before slow streams: 391-393 MB after 5,000 of them and 420-543 MB after
# 10,000 more; with a full collection and a cache clear at the ebb, 375 and 464. A fresh process
# is the sure way back to the start. So a worker whose resident memory has grown
# TOLLGATE_RETIRE_GROWTH_MB (64) over the least it has had retires once few connections are open,
# and the master starts its successor, but only where that costs no request anything: other
# workers to take the traffic meanwhile, and the rate-limit counts in Redis (shared, so they stay
# exact; in process memory they would reset). Workers take turns: one retires at a time, the next
# no sooner than RETIRE_SPACING looks after the last has exited (its successor has booted by
# then). 0 turns retiring off.
RETIRE_GROWTH_MB = os.environ.get("TOLLGATE_RETIRE_GROWTH_MB") or "64"
RETIRE_QUIET = 16  # open connections at most, when a worker may retire: each is waited for
RETIRE_SPACING = 2  # looks between one worker's exit and the next one's retiring (a boot: ~1 s)
RETIRE_DRAIN = 24 * 3600  # seconds a retiring worker waits for its last streams


class Retirement:
    """When a worker should retire: its resident memory `growth` bytes or more over the least
    it has had (its start, or after a trim), with at most `quiet` connections open."""

    def __init__(self, growth: int, quiet: int = RETIRE_QUIET):
        self.growth, self.quiet, self.least = growth, quiet, None

    @classmethod
    def for_worker(cls, growth_mb: str, *, workers: int, limits_storage: str):
        """The policy of a worker, or None where retiring is off or would cost something: a
        single worker (nobody would take its traffic), counts in process memory (they reset)."""
        digits = growth_mb.isascii() and growth_mb.isdigit()  # no sign, no point, no space
        growth = int(growth_mb) if digits else -1
        if growth < 0:
            raise ValueError(f"TOLLGATE_RETIRE_GROWTH_MB must be a whole number of megabytes "
                             f"(0: off), not {growth_mb!r}")
        if growth == 0 or workers < 2 or limits_storage.startswith("memory"):
            return None
        return cls(growth << 20)

    def due(self, resident: int, connections: int) -> bool:
        self.least = resident if self.least is None else min(self.least, resident)
        return resident - self.least >= self.growth and connections <= self.quiet


class RetireTurn:
    """One worker's turn to retire, among a master's workers: an exclusive lock on a file that
    holds when the last turn ended. The lock is held until this process exits."""

    def __init__(self, fd: int):
        self.fd = fd

    @staticmethod
    def path(master_pid: int) -> str:
        return os.path.join(tempfile.gettempdir(), f"tollgate-retire-{master_pid}")

    @classmethod
    def take(cls, path: str, spacing: float) -> "RetireTurn | None":
        """The turn, or None while another worker has it or ended its own under `spacing`
        seconds ago."""
        try:  # not through a link someone else put there (the file is in a shared directory)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
        try:
            ended = float(os.pread(fd, 32, 0) or 0)
        except ValueError:  # written partly, by a process killed while writing
            ended = 0.0
        if 0 <= time.time() - ended < spacing:  # (a clock set back: as if long ago)
            os.close(fd)  # and with it the lock
            return None
        return cls(fd)

    def done(self):
        """Writes when this turn ended; the lock goes with the process."""
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, repr(time.time()).encode(), 0)  # exact: not rounded up past now


def resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _after_bursts(worker, every: float):
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc: no heap to trim
        trim = None
    loop, peak = gevent.get_hub().loop, 0
    while worker.alive:
        gevent.sleep(every)
        active = getattr(loop, "activecnt", 0)  # libev's count; libuv's loop has none
        peak = max(peak, active)
        if trim is not None and peak >= TRIM_AFTER and active <= peak // 2:
            trim(0)
            peak = active
        retirement = worker.retirement
        if retirement is None or not worker.alive:
            continue
        resident = resident_bytes()
        if resident and retirement.due(resident, worker.connections):
            turn = RetireTurn.take(RetireTurn.path(worker.ppid), RETIRE_SPACING * every)
            if turn is not None:
                worker.retire(turn, resident)
