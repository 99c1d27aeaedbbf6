"""What one request is doing, for its log lines, its access line and its metrics.

A `RequestInfo` is made when a request comes in and kept in a context variable: greenlets (and
threads) each have their own, so every layer can reach the current request's id without Flask,
and a stream relayed after the view returned still logs under its request's id.
"""

import itertools
import os
import re
import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal

# A client's own id is kept when it looks like one: short, printable, nothing a log parser trips on.
REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}")


@dataclass
class RequestInfo:
    id: str
    started: float = field(default_factory=time.monotonic)
    family: str = ""  # openai, anthropic, gemini, credits, ops
    model: str = ""
    provider: str = ""
    attempts: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    credits: Decimal | None = None
    first_byte: float | None = None  # when the first body byte went out (monotonic)
    rate_limited: bool = False  # refused by one of our rate limits
    generated: bool = False  # the id is ours (not the client's): unique, fit for the ledger

    def charged(self, usage, cost) -> None:
        """Record what the request was billed (called once its usage is known)."""
        if usage is not None:
            self.input_tokens = usage.prompt
            self.output_tokens = usage.output
        self.credits = cost


_current: ContextVar[RequestInfo | None] = ContextVar("tollgate_request", default=None)


class _Ids:
    """Request ids unique across processes and hosts: a random 64-bit prefix per process
    (drawn again in a forked child) and a counter, so a request costs no system call."""

    def __init__(self):
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self):
        self.prefix = "req_" + os.urandom(8).hex()
        self.counter = itertools.count(int.from_bytes(os.urandom(4)))

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFFFFFF:016x}"


_ids = _Ids()


def begin(client_id: str | None) -> RequestInfo:
    """Start a request: the client's id when well-formed, else a new one."""
    if client_id and REQUEST_ID.fullmatch(client_id):
        info = RequestInfo(client_id)
    else:
        info = RequestInfo(_ids.new(), generated=True)
    _current.set(info)
    return info


def current() -> RequestInfo | None:
    return _current.get()


def current_request_id() -> str | None:
    info = _current.get()
    return info.id if info is not None else None
