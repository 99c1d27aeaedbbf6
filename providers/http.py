"""HTTP for provider adapters: pooled sessions, and the one place upstream faults are mapped.

Every way an upstream call can fail (refused, timed out, an error status, an error object in a
2xx body, a stream that breaks or stalls) becomes a GatewayError here, as requests'
HTTPAdapter.send is the one place urllib3's faults become requests exceptions: the layers above
handle one family of errors and never import requests.
"""

import contextlib
import datetime
import http.client
import io
import json
import logging
import os
import re
import select
import threading
import time
import weakref

import requests
from gevent import monkey
from requests.adapters import HTTPAdapter
from requests.cookies import cookiejar_from_dict
from requests.models import PreparedRequest, Response
from requests.structures import CaseInsensitiveDict
from requests.utils import get_encoding_from_headers
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError

from errors import (
    UpstreamError,
    UpstreamRateLimited,
    UpstreamTimeout,
    UpstreamUnavailable,
    redact,
)
from providers.images import ImageRefused
from tracing import current_request_id

log = logging.getLogger(__name__)

# Upstream 4xx statuses passed on to the client, with the kind of error they are.
PASSED_ON = {400: "invalid_request", 404: "not_found", 409: "invalid_request",
             413: "invalid_request", 422: "invalid_request"}
MAX_ERROR_BODY = 64 * 1024
# Error codes that mean a content filter refused the request (not a fault of the upstream).
MODERATION_CODES = ("content_moderation",)
READ_SIZE = 64 * 1024


URLS_REMEMBERED = 1024  # what is worked out per upstream URL: a provider's few (a Gemini model
# name is in its URL's path, so a bound)


def _remembered(cache: dict, key, make):
    """cache[key], made by make() the first time while the cache has room."""
    found = cache.get(key)
    if found is None:
        found = make()
        if len(cache) < URLS_REMEMBERED:
            cache[key] = found
    return found


def _prepared_url(url: str) -> str:
    req = PreparedRequest()
    req.prepare_url(url, None)
    return req.url


def pooled_session(pool_size: int) -> "UpstreamSession":
    """A requests session whose per-host pool fits the worker's concurrency."""
    return UpstreamSession(pool_size)


COALESCE_MAX = 64 * 1024  # a body piece up to this size goes out with the header block
_POLL = monkey.get_original("select", "poll")  # the system's own, also where gevent patched it


class _KeptConnection:
    """An upstream connection of the session's pools.

    Whether it is still usable is asked before each reuse: a socket with something to read (the
    upstream closed it, or sent what nobody asked for) is not. Asked of the system's poll with
    no wait, as urllib3 asks, but not through gevent's emulation of poll, which cost 12 us a
    request to answer what one system call does."""

    @property
    def is_connected(self) -> bool:
        if self.sock is None:
            return False
        poller = _POLL()
        poller.register(self.sock, select.POLLIN)
        return not poller.poll(0)

    # urllib3 sends a request's header block, then its body: two system calls and two packets
    # (TCP_NODELAY), which the upstream reads apart too. The header block is held here and sent
    # with the body's first piece when that is a small bytes one, else just before it.
    _holding, _held = False, None

    def endheaders(self, message_body=None, *, encode_chunked=False):
        self._holding = message_body is None
        try:
            super().endheaders(message_body, encode_chunked=encode_chunked)
        finally:
            self._holding = False

    def send(self, data):
        if self._holding:  # the header block (http.client sends it in one piece)
            self._holding, self._held = False, data
            return
        held, self._held = self._held, None
        if held is not None:
            if isinstance(data, bytes) and len(data) <= COALESCE_MAX:
                data = held + data
            else:
                super().send(held)
        super().send(data)

    def getresponse(self, *args, **kwargs):
        held, self._held = self._held, None
        if held is not None:  # a request without a body
            super().send(held)
        return super().getresponse(*args, **kwargs)

    def close(self):
        self._held = None
        super().close()


# http.client reads an answer's header lines itself, then has the email package parse them
# (email.feedparser, with its line splitting, defect tracking and policy objects): 25 us for
# seven header lines, where what comes out is a list of (name, value) pairs. A header block of
# nothing but plain "Name: value" lines gives the same message built directly (set_raw, as the
# parser stores each field) in a third of that; anything else (folded or malformed lines, a
# block cut short) goes to the email parser as before, so its defects and leftovers are
# unchanged. The replacement is http.client's, for the process: what it returns is the same for
# every input, only faster.
MAX_HEADER_LINE, MAX_HEADER_LINES = 65536, 100  # http.client's own limits
_FIELD_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]+")  # what the email parser takes as a name
_STDLIB_PARSE_HEADERS = http.client.parse_headers


def parse_headers(fp, _class=http.client.HTTPMessage):
    lines = []
    while True:
        line = fp.readline(MAX_HEADER_LINE + 1)
        if len(line) > MAX_HEADER_LINE:
            raise http.client.LineTooLong("header line")
        lines.append(line)
        if len(lines) > MAX_HEADER_LINES:
            raise http.client.HTTPException(f"got more than {MAX_HEADER_LINES} headers")
        if line in (b"\r\n", b"\n", b""):
            break
    message = _plain_fields(lines, _class) if line else None
    if message is None:
        return _STDLIB_PARSE_HEADERS(io.BytesIO(b"".join(lines)), _class)
    return message


def _plain_fields(lines: list[bytes], message_class):
    """The message of a block of plain "Name: value" lines, or None for any other block."""
    message = message_class()
    for line in lines[:-1]:
        text = line.decode("iso-8859-1")
        text = text[:-2] if text.endswith("\r\n") else text[:-1]
        name, colon, value = text.partition(":")
        if not colon or "\r" in text or not _FIELD_NAME.fullmatch(name):
            return None
        message.set_raw(name, value.lstrip(" \t"))
    message.set_payload("")
    return message


http.client.parse_headers = parse_headers


class _KeptHTTPConnection(_KeptConnection, HTTPConnection):
    pass


class _KeptHTTPSConnection(_KeptConnection, HTTPSConnection):
    pass


class _IdleStamped:
    """A pool whose connections note when they went back to it, so that those idle too long can
    be closed (close_idle)."""

    def _put_conn(self, conn):
        if conn is not None:
            conn.idle_since = time.monotonic()
        super()._put_conn(conn)


class _HTTPPool(_IdleStamped, HTTPConnectionPool):
    ConnectionCls = _KeptHTTPConnection


class _HTTPSPool(_IdleStamped, HTTPSConnectionPool):
    ConnectionCls = _KeptHTTPSConnection


IDLE_SECONDS = 30.0  # a kept upstream connection unused this long is closed


def close_idle(pool, older_than: float) -> int:
    """Close the pool's connections idle since before `older_than` (monotonic seconds); their
    places stay in the pool, below the live ones, which are still taken newest first. Returns
    how many it closed."""
    idle = pool.pool  # queue.LifoQueue; under gevent its own, which has no lock (none needed)
    if idle is None:  # the pool was closed
        return 0
    with getattr(idle, "mutex", None) or contextlib.nullcontext():
        places, live, stale = len(idle.queue), [], []
        for conn in idle.queue:  # LIFO: the newest last
            if conn is not None:
                (stale if conn.idle_since < older_than else live).append(conn)
        if not stale:
            return 0
        idle.queue[:] = [None] * (places - len(live)) + live
    for conn in stale:
        conn.close()
    return len(stale)


class _IdleCloser:
    """One thread per process that closes the upstream sessions' idle connections.

    After a burst of streams a worker's pools hold a connection for each stream it had open, and
    a pool reuses its newest, so the oldest would sit there unused for good: a socket each, its
    buffers and objects, after the upstream closed its end too. Every IDLE_SECONDS / 3 this
    closes those idle for IDLE_SECONDS, well before upstreams tend to close theirs (a request
    sent into a connection the upstream is closing just then fails)."""

    def __init__(self):
        self.sessions: weakref.WeakSet = weakref.WeakSet()
        self._running_in = None
        self._lock = threading.Lock()

    def watch(self, session) -> None:
        self.sessions.add(session)
        if self._running_in != os.getpid():
            with self._lock:
                if self._running_in != os.getpid():
                    self._running_in = os.getpid()
                    threading.Thread(target=self._run, name="upstream-idle-closer",
                                     daemon=True).start()

    def _run(self):
        while True:
            time.sleep(IDLE_SECONDS / 3)
            try:
                self.close_idle(time.monotonic() - IDLE_SECONDS)
            except Exception:  # noqa: BLE001  (kept running: the next round may do better)
                log.exception("closing idle upstream connections failed")

    def close_idle(self, older_than: float) -> int:
        closed = 0
        for session in list(self.sessions):
            manager = session.adapter.poolmanager
            for key in list(manager.pools.keys()):
                pool = manager.pools.get(key)
                if pool is not None:
                    closed += close_idle(pool, older_than)
        return closed


IDLE_CLOSER = _IdleCloser()


class _LeanAdapter(HTTPAdapter):
    """requests' adapter without the cookie jar (a proxy keeps no cookies from upstreams), and
    with what it works out from a request's URL on every send (the proxy to use, the pool's
    key, the path) worked out once per URL when no proxy is configured, which is always here
    (the session does not trust the environment): the URLs are a provider's few. Its pools'
    connections are _KeptConnection's."""

    def __init__(self, *args, **kwargs):
        self._pools: dict[tuple, HTTPConnectionPool] = {}  # (URL, verify, cert) -> its pool, while
        # the pool manager holds it (made before super().__init__, which makes the manager)
        super().__init__(*args, **kwargs)
        self._pool_keys: dict[tuple, tuple] = {}  # (URL, verify, cert) -> pool key attributes
        self._paths: dict[str, str] = {}  # URL -> the path sent in the request line

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _HTTPPool, "https": _HTTPSPool}
        self._pools.clear()
        # a pool the manager lets go of (evicted past pool_connections hosts, or all of them on
        # clear()) is forgotten here too: the next request asks the manager again
        self.poolmanager.pools.dispose_func = self._forget_pool

    def _forget_pool(self, pool) -> None:
        for key in [k for k, kept in self._pools.items() if kept is pool]:
            self._pools.pop(key, None)

    def get_connection_with_tls_context(self, request, verify, proxies=None, cert=None):
        if proxies:
            return super().get_connection_with_tls_context(request, verify, proxies, cert)
        key = (request.url, verify, cert if cert is None or isinstance(cert, str) else tuple(cert))
        # the pool manager's look-up merges and normalises the pool's settings into its key
        # under a lock on every call: done once per URL while the manager keeps its pool
        return _remembered(self._pools, key, lambda: self._pool_for(key, request, verify, cert))

    def _pool_for(self, key, request, verify, cert) -> HTTPConnectionPool:
        host_params, pool_kwargs = _remembered(self._pool_keys, key,
                                               lambda: self._pool_key(request, verify, cert))
        return self.poolmanager.connection_from_host(**host_params, pool_kwargs=pool_kwargs)

    def _pool_key(self, request, verify, cert) -> tuple:
        try:
            return self.build_connection_pool_key_attributes(request, verify, cert)
        except ValueError as exc:
            raise requests.exceptions.InvalidURL(exc, request=request) from exc

    def request_url(self, request, proxies):
        if proxies:
            return super().request_url(request, proxies)
        return _remembered(self._paths, request.url, lambda: request.path_url)

    def build_response(self, req, resp) -> Response:
        return _Reply(resp, req, self)


class _Reply(Response):
    """requests' Response for an upstream answer, built without the two things requests builds
    for each one that a proxy's POST never reads: an empty cookie jar (a CookieJar, its policy
    and its lock: over half of building the response), made here only if asked for, and a copy
    of the headers (urllib3's own are as case-insensitive, with the same values)."""

    def __init__(self, resp, req, adapter):  # what requests' Response.__init__ sets, but those
        self._content, self._content_consumed, self._next = False, False, None
        self.status_code, self.headers, self.raw = resp.status, resp.headers, resp
        self.reason, self.url, self.request, self.connection = resp.reason, req.url, req, adapter
        self.encoding = get_encoding_from_headers(resp.headers)
        self.history, self.elapsed = [], _NO_TIME

    @property
    def cookies(self):
        jar = self.__dict__.get("_cookies")
        if jar is None:
            jar = self.__dict__["_cookies"] = cookiejar_from_dict({})
        return jar

    @cookies.setter
    def cookies(self, jar):
        self.__dict__["_cookies"] = jar


_NO_TIME = datetime.timedelta(0)


class UpstreamSession(requests.Session):
    """A requests Session cut down to what a proxy's upstream POST needs.

    `post_stream` hands a request prepared from parts made once (the URL, the session's
    default headers) straight to the pooled adapter: no environment proxy or .netrc look-ups
    (`trust_env` off), no hooks, no cookie jar, no redirects (an upstream that redirects a
    POST is answering with an error). The pool keeps up to `pool_size` connections per host,
    as many as a worker has streams open, so none is discarded at the end of a burst; those then
    left idle are closed after IDLE_SECONDS (_IdleCloser)."""

    def __init__(self, pool_size: int):
        super().__init__()
        self.trust_env = False  # no proxies or .netrc credentials picked up from the environment
        self.adapter = _LeanAdapter(pool_connections=16, pool_maxsize=pool_size, max_retries=0)
        self.mount("http://", self.adapter)
        self.mount("https://", self.adapter)
        self._urls: dict[str, str] = {}  # URL as configured -> as requests prepares it
        IDLE_CLOSER.watch(self)

    def post_stream(self, url: str, *, body: bytes, headers: dict, timeout) -> Response:
        """POST `body`; the response's body is left unread (stream=True)."""
        req = PreparedRequest()
        req.method, req.body = "POST", body
        req.url = _remembered(self._urls, url, lambda: _prepared_url(url))
        req.headers = CaseInsensitiveDict(self.headers)
        req.headers.update(headers)
        req.headers["Content-Length"] = str(len(body))
        return self.adapter.send(req, stream=True, timeout=timeout)



class UpstreamResponse:
    """A 2xx upstream answer, body unread. Reading it raises only GatewayErrors.

    Read it whole with `body()`, or as a stream with `expect_stream()` then `read()` until b"";
    either way, `close()` it (body() closes it itself).
    """

    def __init__(self, resp, upstream):
        self._resp, self.upstream = resp, upstream
        self.status = resp.status_code
        self.content_type = resp.headers.get("content-type", "")
        self.headers = resp.headers  # case-insensitive (Stability's finish-reason, say)
        raw = self._raw = resp.raw
        # An unencoded body is read from http.client's response under urllib3's, as urllib3
        # would (read1, chunked framing undone), without its per-read bookkeeping; the
        # connection goes back to the pool at the end as urllib3 would do it. (No bound method
        # of self is kept on self: that cycle would keep every finished stream's response and
        # buffers alive until a full garbage collection, hundreds of MB after a burst.)
        fp = getattr(raw, "_fp", None)
        direct = (fp is not None and hasattr(fp, "read1")
                  and not resp.headers.get("content-encoding"))
        self._fp = fp if direct else None
        self._chunks = None  # a stream's chunked framing, undone here (expect_stream)

    def body(self) -> bytes:
        """The whole body; a JSON error object sent with a 2xx status raises UpstreamError."""
        name = self.upstream.name
        try:
            content = self._resp.content if self._fp is None else self._read_whole()
        except (requests.Timeout, TimeoutError) as exc:
            raise UpstreamTimeout(f"provider {name} stopped sending") from exc
        except (requests.RequestException, http.client.HTTPException, OSError) as exc:
            raise UpstreamUnavailable(f"provider {name} broke off its answer") from exc
        finally:
            self._resp.close()
        if content[:1] == b"{" and b'"error"' in content[:200]:
            try:
                err = json.loads(content).get("error")
            except ValueError:
                err = None
            if err:
                message = err.get("message", "") if isinstance(err, dict) else str(err)
                raise UpstreamError(redact(f"provider {name} failed: {message}",
                                           self.upstream.api_key))
        return content

    def _read_whole(self) -> bytes:
        """An unencoded body, read whole from http.client's response (Content-Length or chunked
        framing, a short body raising IncompleteRead), not in requests' and urllib3's 10 kB
        steps; the connection goes back to the pool once the body was read to its end."""
        content = self._fp.read()
        if self._fp.isclosed():
            self._raw.release_conn()
        return content

    def expect_stream(self) -> None:
        """A 2xx that is not an event stream is an error body (raised) or a broken upstream."""
        if not self.content_type.startswith("text/event-stream"):
            self.body()  # an error body on 200 raises here
            raise UpstreamUnavailable(f"provider {self.upstream.name} did not stream",
                                      fault="protocol")
        self._chunks = ChunkedBody.over(self._fp)

    def read(self, size: int = READ_SIZE) -> bytes:
        """The next bytes of a stream as they arrive (b"" at its end)."""
        if self._chunks is not None:
            return self._read_chunks(size)
        if self._fp is not None:
            return self._read_direct(size)
        return _mid_stream(self._read_decoded, size)

    def _read_decoded(self, size: int) -> bytes:
        return self._raw.read1(size, decode_content=True)

    def _read_direct(self, size: int = READ_SIZE) -> bytes:
        data = _mid_stream(self._fp.read1, size)
        if not data and self._fp.isclosed():  # the whole body was read: the link is reusable
            self._raw.release_conn()
        return data

    def _read_chunks(self, size: int) -> bytes:
        data = _mid_stream(self._chunks.read, size)
        if not data:  # the last chunk and the trailers were read: the link is reusable
            self._fp._close_conn()  # as http.client does at the end of a chunked body
            if self._chunks.clean:
                self._raw.release_conn()
        return data

    def lift_read_timeout(self) -> float | None:
        """Take the socket's read timeout off for the rest of this answer and return it, for the
        caller to enforce over the whole stream (None: there was none, nothing changed). Under
        gevent each read with a timeout makes, starts and closes a timer of its own: for a slow
        stream's events, one read each, that was a sixth of a relaying worker's CPU. A request
        sent later on this pooled connection sets its own timeouts again (urllib3 does)."""
        sock = getattr(getattr(self._raw, "connection", None), "sock", None)
        if sock is None and self._fp is not None:  # an answer that closes its connection: the
            # connection let go of the socket, the answer reads it through a socket.SocketIO
            sock = getattr(getattr(self._fp.fp, "raw", None), "_sock", None)
        seconds = sock.gettimeout() if sock is not None else None
        if not seconds:
            return None
        sock.settimeout(None)
        return seconds

    def interrupt(self) -> None:
        """Wake a read of this stream blocked in another greenlet: the socket is shut for
        reading, so the read returns (or raises) at once. Nothing is thrown into the reader."""
        try:
            self._resp.raw.shutdown()
        except (ValueError, RuntimeError, OSError):  # not connected (any more): nothing waits
            pass

    def close(self) -> None:
        self._resp.close()


def _mid_stream(read, size: int) -> bytes:
    """read(size), its faults as GatewayErrors: the upstream went silent or the link broke."""
    try:
        return read(size)
    except (ReadTimeoutError, TimeoutError, requests.Timeout) as exc:
        raise UpstreamTimeout("the upstream stopped sending") from exc
    except Exception as exc:  # IncompleteRead, urllib3's ProtocolError, OSError, a bad chunk
        raise UpstreamUnavailable("the upstream connection broke mid-stream") from exc


class ChunkedBody:
    """A streamed answer's chunked framing undone as its bytes arrive, read from the socket.

    http.client's read1 takes five Python calls and a buffered reader over a socket.SocketIO
    for each chunk (the size line through readline, then the data, then the CRLF), and a slow
    stream's chunk is one event: this reads the socket once and splits what came. The framing
    is RFC 9112's, read as leniently as http.client reads it: a size in hex (extensions after
    ';' ignored), the data, CRLF; a size of 0 ends it, after optional trailer lines and an
    empty line. Anything else, or the connection ending first, raises (the caller maps it to a
    broken stream).
    """

    __slots__ = ("_recv", "_then", "_buf", "_left", "_skip", "done", "clean")
    MAX_LINE = 4096  # a size line (or the trailers) longer than this is not HTTP

    def __init__(self, recv, then=None):
        self._recv = recv  # like socket.recv: blocks (cooperatively under gevent), b"" at the end
        self._then = then  # the recv for the reads after the first, if another
        self._buf = b""  # received, not yet split
        self._left = 0  # data bytes of the current chunk still to come
        self._skip = 0  # bytes of the CRLF after the current chunk's data still to come
        self.done = False
        self.clean = True  # nothing came after the end (the connection can be used again)

    @classmethod
    def over(cls, fp) -> "ChunkedBody | None":
        """One for an http.client response whose chunked body is unread; None for any other
        body (read as before). Its first read takes what the response's buffered reader holds
        already (or reads the socket through it), the later ones read the socket itself."""
        if fp is None or not getattr(fp, "chunked", False) or fp.chunk_left is not None:
            return None
        reader = getattr(fp, "fp", None)
        sock = getattr(getattr(reader, "raw", None), "_sock", None)
        if sock is None or not isinstance(reader, io.BufferedReader):
            return None
        # read1 gives what the reader holds, else reads the socket once: either way the reader
        # is empty after it, its buffer (makefile's 8 kB) being below the size asked for
        return cls(reader.read1, then=sock.recv)

    def read(self, size: int) -> bytes:
        """The next data bytes as they come (b"" once the body ended)."""
        while not self.done:
            if self._buf:
                out = self._split()
                if out or self.done:
                    return out
            if self._then is None:
                data = self._recv(size)
            else:
                data = self._recv(max(size, READ_SIZE))
                self._recv, self._then = self._then, None
            if not data:
                raise http.client.IncompleteRead(self._buf)
            self._buf = self._buf + data if self._buf else data
        return b""

    def _split(self) -> bytes:
        buf, pieces, pos = self._buf, [], 0
        if not self._left and not self._skip:  # the usual slow-stream read: one whole chunk
            end = buf.find(b"\r\n")
            if 0 < end < 9 and buf[len(buf) - 2:] == b"\r\n":
                try:
                    size = int(buf[:end], 16)
                except ValueError:  # an extension (or junk): the general case below
                    size = 0
                if size > 0 and len(buf) == end + size + 4:
                    self._buf = b""
                    return buf[end + 2:end + 2 + size]
        n = len(buf)
        while pos < n:
            if self._left:
                take = min(self._left, n - pos)
                pieces.append(buf[pos:pos + take])
                pos += take
                self._left -= take
                if not self._left:
                    self._skip = 2
                continue
            if self._skip:
                take = min(self._skip, n - pos)
                if buf[pos:pos + take] != b"\r\n"[2 - self._skip:2 - self._skip + take]:
                    raise ValueError("chunk data not followed by CRLF")
                pos += take
                self._skip -= take
                continue
            end = buf.find(b"\r\n", pos)
            if end < 0:
                if n - pos > self.MAX_LINE:
                    raise ValueError("chunk size line too long")
                break
            size = _hex_size(buf[pos:end])
            if size == 0:  # the last chunk: trailer lines (if any), then an empty line
                close = end if buf[end:end + 4] == b"\r\n\r\n" else buf.find(b"\r\n\r\n", end)
                if close < 0:
                    if n - end > self.MAX_LINE:
                        raise ValueError("trailers too long")
                    break
                self.done = True
                self.clean = close + 4 == n
                pos = n
                break
            self._left, pos = size, end + 2
        self._buf = buf[pos:] if pos < n else b""
        return pieces[0] if len(pieces) == 1 else b"".join(pieces)


def _hex_size(line: bytes) -> int:
    """A chunk size line's size, read as http.client reads it (extensions after ';' ignored);
    ValueError for a line that is not a size."""
    size = int(line.split(b";", 1)[0], 16)
    if size < 0:
        raise ValueError(f"bad chunk size line {line[:40]!r}")
    return size


def send(session, url, *, body: bytes, headers: dict, timeout, upstream) -> UpstreamResponse:
    """POST upstream; returns a 2xx answer with its body unread, or raises a GatewayError."""
    return _request(session, "POST", url, timeout=timeout, upstream=upstream, body=body,
                    headers=headers)


def send_form(session, url, *, fields: dict, files: list, headers: dict, timeout,
              upstream) -> UpstreamResponse:
    """POST a multipart/form-data body (also with no files): `fields` name -> str, `files` a
    list of (field name, (filename, bytes, mime)). Same answers and faults as send()."""
    parts = [(name, (None, str(value))) for name, value in fields.items()] + list(files)
    return _request(session, "POST", url, timeout=timeout, upstream=upstream, files=parts,
                    headers=headers)


def get(session, url, *, headers: dict, timeout, upstream) -> UpstreamResponse:
    """GET from the upstream (polling a job, say). Same answers and faults as send()."""
    return _request(session, "GET", url, timeout=timeout, upstream=upstream, headers=headers)


def _request(session, method, url, *, timeout, upstream, headers, body=None,
             **kwargs) -> UpstreamResponse:
    if request_id := current_request_id():  # the upstream's logs can be matched with ours
        headers = {**headers, "X-Request-Id": request_id}
    try:
        if body is not None:  # the hot path: a POST of bytes, prepared from parts made once
            resp = session.post_stream(url, body=body, headers=headers, timeout=timeout)
        else:  # forms and polls (image providers): requests' own preparation
            resp = session.request(method, url, headers=headers, stream=True, timeout=timeout,
                                   **kwargs)
    except requests.Timeout as exc:
        raise UpstreamTimeout(f"provider {upstream.name} did not answer in time") from exc
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} could not be reached") from exc
    if resp.status_code < 400:
        return UpstreamResponse(resp, upstream)
    try:
        raise upstream_error(resp, upstream)
    finally:
        resp.close()


def upstream_error(resp, upstream):
    """Turn a non-2xx upstream response into the error the client should see."""
    status = resp.status_code
    message, code = _error_detail(resp)
    message = redact(message, upstream.api_key)
    name = upstream.name
    if code in MODERATION_CODES:  # Stability: 403 content_moderation; the prompt is at fault
        return ImageRefused(f"provider {name} refused the request: {message}")
    # Gemini reports a bad key as 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    if status in (401, 403) or code == "API_KEY_INVALID":
        return UpstreamError(f"provider {name} rejected the gateway's credentials",
                             code="upstream_auth_failed", fault="auth")
    if status == 402:  # Stability, Replicate, DeepSeek: the account has no credit left
        return UpstreamUnavailable(f"provider {name} is out of credit", status=503,
                                   code="upstream_quota_exhausted",
                                   headers={"x-should-retry": "false"}, fault="quota")
    if status == 429:
        if code in ("insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached"):
            return UpstreamUnavailable(f"provider {name} is out of quota", status=503,
                                       code="upstream_quota_exhausted",
                                       headers={"x-should-retry": "false"}, fault="quota")
        retry = resp.headers.get("retry-after")
        return UpstreamRateLimited(f"provider {name} is rate limiting requests",
                                   headers={"Retry-After": retry} if retry else None)
    if status >= 500:
        return UpstreamUnavailable(f"provider {name} failed with HTTP {status}",
                                   status=503 if status in (503, 529) else 502,
                                   fault="status_5xx")
    kind_status = status if status in PASSED_ON else 400
    err = UpstreamError(message or f"provider {name} refused the request (HTTP {status})",
                        status=kind_status, code=code)
    err.kind = PASSED_ON.get(kind_status, "invalid_request")
    return err


def _error_detail(resp) -> tuple[str, str | None]:
    """The message and code of an upstream error body, in any of the three vendor shapes."""
    try:
        data = json.loads(resp.raw.read(MAX_ERROR_BODY, decode_content=True))
    except Exception:  # a body that is not JSON carries nothing we pass on
        return "", None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):  # Stability's shape
        return "; ".join(str(e) for e in data["errors"]), str(data.get("name") or "") or None
    if isinstance(data, dict) and "error" not in data and ("detail" in data or "title" in data):
        return str(data.get("detail") or data.get("title")), None  # Replicate: problem+json
    err = data[0] if isinstance(data, list) and data else data  # Gemini may wrap it in [...]
    err = err.get("error") if isinstance(err, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        if not isinstance(code, str):  # Gemini's code is the HTTP status; its status is the name
            code = _reason(err) or err.get("type") or err.get("status")
        return str(err.get("message") or ""), str(code) if code is not None else None
    if isinstance(err, str):
        return err, None
    return "", None


def _reason(err: dict) -> str | None:
    """The ErrorInfo reason among a Google error's details (API_KEY_INVALID, …)."""
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            return str(detail["reason"])
    return None


def read_count(resp: UpstreamResponse, field: str) -> int:
    """An upstream token count from a JSON answer's `field`; closes the response."""
    try:
        content = resp.body()
    except UpstreamError as exc:  # an error object in a 2xx: this upstream cannot count
        raise UpstreamUnavailable(exc.message) from exc
    try:
        return int(json.loads(content)[field])
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamUnavailable(f"provider {resp.upstream.name} sent an unreadable "
                                  "token count", fault="protocol") from exc


def read_json(resp: UpstreamResponse) -> tuple[bytes, object]:
    """The whole body of a 2xx answer and its JSON (closes the response); a body that is not
    JSON raises UpstreamUnavailable, an error object sent with a 2xx UpstreamError."""
    content = resp.body()
    try:
        return content, json.loads(content)
    except ValueError as exc:
        raise UpstreamUnavailable(f"provider {resp.upstream.name} sent an unreadable "
                                  "answer", fault="protocol") from exc
