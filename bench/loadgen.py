"""A closed-loop HTTP/1.1 load generator, run by bench/run.py as its own process.

`--concurrency` greenlets each hold one keep-alive connection and send the same POST back to
back for `--warmup` + `--seconds` seconds; only requests that complete inside the measured
window count. It speaks just enough HTTP/1.1 (Content-Length and chunked bodies, Connection:
close) over plain gevent sockets to stay cheap, checks every answer (status 200 and a well-formed
completion, a complete SSE stream or a list of embeddings), and prints one JSON object with the
results on stdout.

For streams it also records the time to the first body byte, i.e. to the first SSE event.
It reports the CPU its own process, the `--pids` processes (with their children) and the whole
machine used in the window, in cores: on a shared machine, the rest is someone else's load.
"""

import argparse
import json
import os
import re
import resource
import socket
import sys
import time
from collections import Counter

import gevent
from gevent import socket as gsocket

RECV_SIZE = 64 * 1024
USAGE_OBJECT = re.compile(rb'"usage":\s*\{')
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


class BadResponse(Exception):
    """The server answered, but not with what a client could use."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, timeout: float = 30):
        self.address, self.timeout = (host, port), timeout
        self.sock = None
        self.buf = b""
        self.last_recv = 0.0

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock, self.buf = None, b""

    def request(self, raw: bytes) -> tuple[int, bytes, float | None]:
        """Send a whole request; returns (status, body, time the first body byte arrived)."""
        if self.sock is None:
            self.sock = gsocket.create_connection(self.address, timeout=self.timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.sendall(raw)
        end = self._until(b"\r\n\r\n")
        head, self.buf = self.buf[:end], self.buf[end + 4:]
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
            raise BadResponse("malformed status line")
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip().lower()
        if headers.get(b"transfer-encoding") == b"chunked":
            body, first = self._chunked()
        elif b"content-length" in headers:
            body, first = self._exactly(int(headers[b"content-length"])), self.last_recv
        else:
            body, first = self._to_eof(), self.last_recv
            self.close()
        if headers.get(b"connection") == b"close" or head.startswith(b"HTTP/1.0"):
            self.close()
        return status, body, first

    def _recv(self):
        data = self.sock.recv(RECV_SIZE)
        if not data:
            raise ConnectionError("server closed the connection")
        self.last_recv = time.perf_counter()
        self.buf += data

    def _until(self, marker: bytes) -> int:
        start = 0
        while (pos := self.buf.find(marker, start)) < 0:
            start = max(len(self.buf) - len(marker) + 1, 0)
            self._recv()
        return pos

    def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._recv()
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def _chunked(self) -> tuple[bytes, float | None]:
        parts, first = [], None
        while True:
            end = self._until(b"\r\n")
            size = int(self.buf[:end].split(b";", 1)[0], 16)
            self.buf = self.buf[end + 2:]
            if size == 0:
                self._exactly(self._until(b"\r\n") + 2)  # no trailers expected: the empty line
                return b"".join(parts), first
            parts.append(self._exactly(size))
            if first is None:
                first = self.last_recv
            self._exactly(2)

    def _to_eof(self) -> bytes:
        try:
            while True:
                self._recv()
        except ConnectionError:
            return self.buf


def check_json(body: bytes, valid, what: str):
    """A JSON answer that `valid(data)` accepts, or BadResponse("not <what>")."""
    try:
        ok = valid(json.loads(body))
    except (ValueError, KeyError, IndexError, TypeError):
        ok = False
    if not ok:
        raise BadResponse(f"not {what}")


def check_completion(body: bytes):
    check_json(body, lambda data: data["object"] == "chat.completion"
               and data["choices"][0]["message"]["content"]
               and data["usage"]["total_tokens"] > 0, "a chat completion")


def check_embeddings(body: bytes, count: int):
    check_json(body, lambda data: data["object"] == "list"
               and [d["index"] for d in data["data"]] == list(range(count))
               and all(isinstance(d["embedding"], str) for d in data["data"])
               and data["usage"]["prompt_tokens"] > 0, "an embeddings answer")


def check_messages(body: bytes):
    """An Anthropic Messages answer (the gateway translating the OpenAI upstream's)."""
    check_json(body, lambda data: data["type"] == "message" and data["content"][0]["text"]
               and data["usage"]["output_tokens"] > 0, "a Messages answer")


def check_messages_stream(body: bytes, deltas: int):
    """A whole Messages stream: message_start first, message_stop last, `deltas` text deltas,
    and the usage in its message_delta."""
    names = re.findall(rb"^event: (\w+)$", body, re.M)
    if not names or names[0] != b"message_start" or names[-1] != b"message_stop":
        raise BadResponse("stream not from message_start to message_stop")
    if names.count(b"content_block_delta") != deltas:
        raise BadResponse(f"stream had {names.count(b'content_block_delta')} text deltas, "
                          f"expected {deltas}")
    if b"message_delta" not in names or not USAGE_OBJECT.search(body):
        raise BadResponse("stream without its usage")


def check(args, body: bytes):
    """What a client of this kind could use, or BadResponse."""
    if args.anthropic and args.stream:  # 4 events more than the text deltas, as OpenAI's chunks
        check_messages_stream(body, args.events - 4)
    elif args.anthropic:
        check_messages(body)
    elif args.stream:
        check_stream(body, args.events)
    elif args.embeddings:
        check_embeddings(body, args.embeddings)
    else:
        check_completion(body)


def check_stream(body: bytes, events: int):
    if not body.endswith(b"data: [DONE]\n\n"):
        raise BadResponse("stream did not end with [DONE]")
    if body.count(b"data: ") != events:
        raise BadResponse(f"stream had {body.count(b'data: ')} events, expected {events}")
    if not USAGE_OBJECT.search(body):
        raise BadResponse("stream without a usage chunk")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its children, those that have exited included
    (a gunicorn master's reaped workers: a retired one's time still counts); 0 when it is gone."""
    total = 0.0
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += sum(int(f) for f in fields[11:15]) / CLOCK_TICKS  # utime stime cutime cstime
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            children = [int(c) for c in fh.read().split()]
    except (OSError, ValueError, IndexError):
        return total
    return total + sum(cpu_seconds(child) for child in children)


def matching_cpu(pattern: str) -> dict[int, float]:
    """CPU seconds of every process whose command line matches the regular expression `pattern`
    (re.search), by pid: the PostgreSQL backends serving one database ("postgres: 15/main:
    postgres DBNAME 127.0.0.1(port) idle"), a redis-server."""
    found, regex = {}, re.compile(pattern)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().replace(b"\0", b" ").decode(errors="replace")
            if not regex.search(cmdline):
                continue
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            found[int(entry)] = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
        except (OSError, ValueError, IndexError):
            continue
    return found


def group_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU used between two matching_cpu() snapshots: processes that started in between count
    from zero; those that ended in between are lost (the figure is then a lower bound)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_busy() -> float:
    """CPU seconds the whole machine spent busy (every core, every process), from /proc/stat."""
    with open("/proc/stat") as fh:
        fields = [int(v) for v in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLOCK_TICKS  # up to steal; guest time is counted in user


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_request(args) -> bytes:
    body = {"model": args.model,
            "messages": [{"role": "system", "content": "You are a helpful assistant."},
                         {"role": "user", "content": "In one sentence, what does an API "
                                                     "gateway do?"}],
            "temperature": 0.7, "max_tokens": 256}
    if args.embeddings:  # as the openai SDK sends it: base64 unless told otherwise
        body = {"model": args.model, "encoding_format": "base64",
                "input": [f"Passage {i}: an API gateway routes, meters and secures model calls."
                          for i in range(args.embeddings)]}
    if args.anthropic:  # as the anthropic SDK sends it: the system prompt on its own
        body = {"model": args.model, "system": body["messages"][0]["content"],
                "messages": body["messages"][1:], "max_tokens": 256, "temperature": 0.7}
    if args.stream:
        body["stream"] = True
        if not args.anthropic:
            body["stream_options"] = {"include_usage": True}
    payload = json.dumps(body, separators=(",", ":")).encode()
    auth = (f"x-api-key: {args.key}\r\nanthropic-version: 2023-06-01" if args.anthropic
            else f"Authorization: Bearer {args.key}")
    head = (f"POST {args.path} HTTP/1.1\r\nHost: {args.host}:{args.port}\r\n"
            f"{auth}\r\nContent-Type: application/json\r\n"
            f"Accept: {'text/event-stream' if args.stream else 'application/json'}\r\n"
            f"User-Agent: tollgate-bench\r\nContent-Length: {len(payload)}\r\n\r\n")
    return head.encode() + payload


def percentile(sorted_values: list[float], p: float) -> float | None:
    """Nearest-rank percentile of an ascending list (None when it is empty)."""
    if not sorted_values:
        return None
    rank = max(int(-(-p * len(sorted_values) // 100)), 1)  # ceil(p/100 * n)
    return sorted_values[rank - 1]


def ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def run(args) -> dict:
    raw = build_request(args)
    latencies, ttfbs, errors, examples = [], [], Counter(), {}
    start = time.perf_counter()
    window_start = start + args.warmup
    window_end = window_start + args.seconds
    marks = {}

    def mark(name):
        marks[name] = (time.perf_counter(), own_cpu(), [cpu_seconds(p) for p in args.pids],
                       machine_busy(), [matching_cpu(n) for n in args.match])

    def worker():
        conn = Connection(args.host, args.port)
        while (t0 := time.perf_counter()) < window_end:
            error = first = None
            broken = False
            try:
                status, body, first = conn.request(raw)
                if status != 200:
                    raise BadResponse(f"HTTP {status}: {body[:120]!r}")
                check(args, body)
            except BadResponse as exc:
                error = str(exc)
            except (OSError, ValueError, gevent.Timeout) as exc:
                error, broken = f"{type(exc).__name__}: {exc}", True
            if error:
                conn.close()  # start the next request on a fresh connection
            t1 = time.perf_counter()
            if window_start <= t1 <= window_end:
                if error:
                    key = error.split(":", 1)[0]
                    errors[key] += 1
                    examples.setdefault(key, error)
                else:
                    latencies.append(t1 - t0)
                    if args.stream:
                        ttfbs.append(first - t0)
            if broken:
                gevent.sleep(0.01)  # don't spin on a server that refuses or drops connections
        conn.close()

    def timer():
        gevent.sleep(max(window_start - time.perf_counter(), 0))
        mark("start")
        gevent.sleep(max(window_end - time.perf_counter(), 0))
        mark("end")

    gevent.joinall([gevent.spawn(timer)] + [gevent.spawn(worker)
                                            for _ in range(args.concurrency)])
    (t_start, cpu_start, pids_start, busy_start, groups_start) = marks["start"]
    (t_end, cpu_end, pids_end, busy_end, groups_end) = marks["end"]
    wall = t_end - t_start
    latencies.sort()
    ttfbs.sort()
    return {
        "ok": len(latencies), "errors": sum(errors.values()), "error_kinds": examples,
        "error_counts": dict(errors), "seconds": args.seconds,
        "rps": len(latencies) / args.seconds,
        "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
        "ttfb_p50_ms": ms(percentile(ttfbs, 50)), "ttfb_p99_ms": ms(percentile(ttfbs, 99)),
        "client_cpu": (cpu_end - cpu_start) / wall,
        "pid_cpu": [(b - a) / wall for a, b in zip(pids_start, pids_end, strict=True)],
        "machine_cpu": (busy_end - busy_start) / wall,
        "group_cpu": [group_delta(a, b) / wall for a, b in zip(groups_start, groups_end,
                                                               strict=True)],
    }


def run_level(args) -> dict:
    """`--level N`: N streams open at once (started evenly over `--ramp` seconds), one request
    each, every one read to its end or to the deadline. Counts complete streams, 503s (and other
    statuses), errors and the events received; CPU as in run(), over the whole test."""
    raw = build_request(args)
    outcomes, examples, events = Counter(), {}, [0]
    start = time.perf_counter()
    deadline = start + args.ramp + args.deadline

    def stream(i: int):
        gevent.sleep(args.ramp * i / args.level)
        # no socket timeout of its own: a stream waits for its answer up to the deadline, so a
        # late 503 is seen as one
        conn = Connection(args.host, args.port, timeout=args.ramp + args.deadline)
        try:
            with gevent.Timeout(max(deadline - time.perf_counter(), 0.1)):
                status, body, _ = conn.request(raw)
            events[0] += body.count(b"data: ")
            if status != 200:
                outcome = f"HTTP {status}"
                examples.setdefault(outcome, body[:160].decode(errors="replace"))
            else:
                check(args, body)
                outcome = "complete"
        except BadResponse as exc:
            outcome = "incomplete"
            examples.setdefault(outcome, str(exc))
        except gevent.Timeout:
            outcome = "timed out"
        except (OSError, ValueError) as exc:
            outcome = type(exc).__name__
            examples.setdefault(outcome, str(exc))
        finally:
            conn.close()
        outcomes[outcome] += 1

    before = (own_cpu(), [cpu_seconds(p) for p in args.pids], machine_busy(),
              [matching_cpu(n) for n in args.match])
    gevent.joinall([gevent.spawn(stream, i) for i in range(args.level)])
    after = (own_cpu(), [cpu_seconds(p) for p in args.pids], machine_busy(),
             [matching_cpu(n) for n in args.match])
    wall = time.perf_counter() - start
    return {
        "streams": args.level, "outcomes": dict(outcomes), "examples": examples,
        "events": events[0], "seconds": wall,
        "client_cpu_s": after[0] - before[0],
        "pid_cpu_s": [b - a for a, b in zip(before[1], after[1], strict=True)],
        "machine_cpu_s": after[2] - before[2],
        "group_cpu_s": [group_delta(a, b) for a, b in zip(before[3], after[3], strict=True)],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default=None, help="default: the client kind's endpoint")
    parser.add_argument("--key", required=True)
    parser.add_argument("--model", default="bench-model")
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--anthropic", action="store_true",
                        help="an Anthropic Messages client (--path defaults to /v1/messages)")
    parser.add_argument("--embeddings", type=int, default=0, metavar="N",
                        help="POST an embeddings request of N inputs instead (use --path)")
    parser.add_argument("--events", type=int, default=24, help="SSE events in a whole stream")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--warmup", type=float, default=2)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--pids", type=int, nargs="*", default=[],
                        help="processes whose CPU use to report")
    parser.add_argument("--match", action="append", default=[], metavar="REGEX",
                        help="also report the CPU of all processes whose command line matches")
    parser.add_argument("--level", type=int, default=0, metavar="N",
                        help="instead of the closed loop: N concurrent streams, one request each")
    parser.add_argument("--ramp", type=float, default=10, help="--level: seconds to open them")
    parser.add_argument("--deadline", type=float, default=90,
                        help="--level: seconds after the ramp by which every stream must end")
    args = parser.parse_args()
    args.path = args.path or ("/v1/messages" if args.anthropic else "/v1/chat/completions")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:  # one socket per stream: 10,000 streams need more than the usual 1,024
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    json.dump(run_level(args) if args.level else run(args), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
