"""Relaying an upstream event stream to a client as it arrives, with faults turned into events.

Runs in the request's greenlet under gunicorn's gevent worker. A WSGI app learns of a client
disconnect only when it next writes, so while the upstream is silent a watcher greenlet waits
on the client socket and, the moment the client hangs up, wakes the upstream read by shutting
its socket for reading. No exception is thrown into the request's greenlet: one delivered
asynchronously could land anywhere after the read (in the settlement, say) and lose a charge.
A read that waits longer than the upstream read timeout is woken the same way, by one timer per
stream (`_StallWatch`) instead of one per read.
"""

import logging
import socket
import time

import gevent
from gevent import monkey

from errors import GatewayError, UpstreamTimeout, UpstreamUnavailable
from translation.sse import EventSplitter

log = logging.getLogger(__name__)


def relay_events(resp, tap, *, max_seconds, client_socket=None, on_close=None):
    """The relayed stream as an iterable of bytes whose close() always ends it properly.

    A generator closed before its first step never runs its `finally`, and a WSGI server closes
    the response unread when the client is gone before the first byte: then the upstream is
    closed and `on_close` runs here instead.
    """
    def abandon():
        resp.close()
        if on_close is not None:
            on_close(tap, "client_gone")

    return _Guarded(_relay(resp, tap, max_seconds=max_seconds, client_socket=client_socket,
                           on_close=on_close), abandon)


class _Guarded:
    def __init__(self, gen, abandon):
        self._gen, self._abandon, self._started = gen, abandon, False

    def __iter__(self):
        return self

    def __next__(self):
        self._started = True
        return next(self._gen)

    def close(self):
        if not self._started:
            self._started = True
            self._abandon()
        self._gen.close()


def _relay(resp, tap, *, max_seconds, client_socket, on_close):
    """Yield upstream SSE events (filtered by `tap.feed`) until the upstream ends or fails.

    `resp` is a providers.http.UpstreamResponse (its reads raise only GatewayErrors); `tap` a
    translation.taps.Tap: `feed(event)` and `end()` give the bytes to send, `error_event(err)`
    encodes an in-stream error in the client's format. `on_close(tap, outcome)` runs exactly
    once at the end, whatever happened: outcome is "complete", "truncated", "upstream_error"
    or "client_gone".
    """
    splitter = EventSplitter()
    state = {"reading": False, "gone": False, "stalled": False}
    watcher = _watch_client(client_socket, resp, state)
    stalls = _StallWatch.start(resp, state)
    deadline = time.monotonic() + max_seconds
    outcome = "client_gone"  # what a GeneratorExit at a yield means
    try:
        while True:
            if state["gone"]:
                return
            state["reading"] = True
            if stalls is not None:
                stalls.read_from = time.monotonic()
            try:
                data = resp.read()
            except GatewayError:
                if state["stalled"] and not state["gone"]:
                    raise _stalled() from None
                raise
            finally:
                state["reading"] = False
            if not data:
                if state["gone"]:  # the watcher woke the read: the client left
                    return
                if state["stalled"]:
                    raise _stalled()
                break
            # everything one read brought goes out in one write: fewer syscalls per stream
            events = splitter.feed(data)
            if len(events) == 1:  # the usual read of a slow stream: one event
                out = tap.feed(events[0])
            else:
                out = b"".join(filter(None, map(tap.feed, events)))
            if out:
                yield out
            if time.monotonic() > deadline:
                outcome = "truncated"
                yield tap.error_event(UpstreamTimeout("the stream exceeded the gateway's time "
                                                      "limit"))
                return
        tail = tap.end()
        if tail:
            yield tail
        outcome = "complete" if tap.finished else ("upstream_error" if tap.failed else "truncated")
        if outcome == "truncated":
            yield tap.error_event(UpstreamUnavailable("the upstream stream ended unexpectedly"))
    except GatewayError as err:  # the provider layer's mapping of a broken or stalled upstream
        if state["gone"]:
            outcome = "client_gone"
            return
        log.warning("upstream stream failed: %s", err.message)
        outcome = "truncated"
        yield tap.error_event(err)
    except Exception as exc:  # a tap that choked on what the upstream sent: end it cleanly
        log.error("relaying a stream failed: %s", type(exc).__name__, exc_info=exc)
        outcome = "truncated"
        yield tap.error_event(UpstreamUnavailable("the upstream sent a stream the gateway "
                                                  "could not relay"))
    finally:
        if watcher is not None:
            watcher.kill(block=False)
        if stalls is not None:
            stalls.stop()
        resp.close()
        if on_close is not None:
            on_close(tap, outcome)


def _stalled() -> UpstreamTimeout:
    return UpstreamTimeout("the upstream stopped sending")


class _StallWatch:
    """The upstream read timeout of one stream under gevent: the socket's own timeout is lifted
    and one timer checks, when it is due, how long the current read has waited (`read_from`,
    set by the relay before each read). A read that waited the whole timeout is woken
    (`resp.interrupt()`) with `state["stalled"]` set; time spent writing to the client does not
    count, as it did not with the socket's timeout."""

    @classmethod
    def start(cls, resp, state):
        if not monkey.is_module_patched("socket"):
            return None  # blocking sockets: their own timeout stays
        seconds = resp.lift_read_timeout()
        return None if seconds is None else cls(resp, state, seconds)

    def __init__(self, resp, state, seconds: float):
        self.resp, self.state, self.seconds = resp, state, seconds
        self.read_from = time.monotonic()
        self._loop = gevent.get_hub().loop
        self._timer = None
        self._arm(seconds)

    def _arm(self, after: float) -> None:
        self._timer = self._loop.timer(after)
        self._timer.start(self._due)

    def _due(self) -> None:  # runs in the hub: nothing here may block
        self._timer.close()
        self._timer = None
        if not self.state["reading"]:  # writing to the client: a read's wait starts anew
            return self._arm(self.seconds)
        waited = time.monotonic() - self.read_from
        if waited < self.seconds:
            return self._arm(self.seconds - waited)
        self.state["stalled"] = True
        self.resp.interrupt()

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.close()
            self._timer = None


def _watch_client(client_socket, resp, state):
    """Start a greenlet that wakes the upstream read (`resp.interrupt()`) once the client hangs
    up; the relay loop then sees `state["gone"]` and ends the stream as the client's leaving."""
    if client_socket is None or not monkey.is_module_patched("socket"):
        return None

    def watch():
        try:
            gevent.socket.wait_read(client_socket.fileno())
            if client_socket.recv(1, socket.MSG_PEEK):
                return  # the client sent more bytes (pipelining): not a hang-up, stop watching
        except OSError:
            pass  # reset or closed: the client is gone
        state["gone"] = True
        if state["reading"]:
            resp.interrupt()

    return gevent.spawn(watch)
