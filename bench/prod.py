"""Benchmark: the embedded setup against the production one, side by side in one run.

    .venv/bin/python bench/prod.py [--seconds 8] [--warmup 2] [--workers 2] [--concurrency 32]
        [--levels 1000,5000,10000] [--chunks 30] [--chunk-interval 1] [--skip-load]
        [--skip-levels] [--relay-streams 1000] [--relay-chunks 10] [--database-url URL]
        [--redis-url URL] [--gateway-root DIR]

Setups, each the real gateway (`gunicorn -c gunicorn.conf.py wsgi:app`) configured only through
the environment, against the fast fake upstream (bench/fake_upstream.py):

- `direct`: the fake upstream alone, the floor;
- `sqlite, 1 worker`: the embedded default (SQLite file, in-memory rate limits);
- `pg+redis, 1 worker` and `pg+redis, N workers`: PostgreSQL (database `tollgate_bench`, emptied
  at the start of each setup) and Redis (db 9, flushed), the production setup; one worker and N
  show how it scales.

For each: whole completions and 24-event streams, at concurrency 1 (the latency the gateway
adds) and at `--concurrency` (requests per second), and at `--concurrency` the same stream asked
for by an Anthropic Messages client (translated: 24 events, 20 of them text deltas), with the
CPU per request of the gateway (master and workers, from /proc/<pid>/stat), of the PostgreSQL
backends serving the bench database and of the Redis server (every process whose command line
names them, from /proc).

Then the slow-stream level test on the production setup with N workers: 1k, 5k and 10k streams
open at once (opened over `--ramp` seconds), the upstream sending one chunk every
`--chunk-interval` seconds, `--chunks` chunks each; each level is bounded by a deadline. It
reports how many streams completed, how many were refused with 503, the gateway's CPU per
relayed chunk and the RSS of all gateway processes at the start, at the peak and after the load.
A level's CPU per chunk includes each stream's own request (its connection, key, limits, hold,
upstream connection and settlement); the relay cost splits the two: `--relay-streams` streams
of `--relay-chunks` chunks, then as many of four times that, 0.5 s apart, and the gateway's CPU
of the second less the first's, over the events more, is the CPU per relayed chunk alone.
Every process it started is stopped on exit, also on errors and Ctrl-C.
"""

import argparse
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from run import (  # noqa: E402  (bench/ is not a package)
    BENCH,
    BIN,
    MODEL,
    ROOT,
    UPSTREAM_KEY,
    Servers,
    access_log_off,
    flask_cli,
    fmt,
    free_port,
    post,
    wait_until_up,
    worker_pids,
)

SLOW_MODEL = "bench-slow"
TRANSLATED = "translated stream"  # an Anthropic Messages client, the OpenAI upstream's stream
PAGE = 4096


def start_upstream(servers: Servers, name: str, *, workers: int, delay_ms: float = 0,
                   chunks: int = 0) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "BENCH_CHUNK_DELAY_MS": str(delay_ms),
           "BENCH_STREAM_CHUNKS": str(chunks or "")}
    proc = servers.start(name, [
        os.path.join(BIN, "gunicorn"), "-k", "gevent", "-w", str(workers),
        "--worker-connections", "12000", "--backlog", "4096", "--keep-alive", "75",
        "--log-level", "warning", "-b", f"127.0.0.1:{port}", "fake_upstream:app"], env, cwd=BENCH)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(name, url + "/v1/chat/completions", proc, servers)
    return url, proc


def reset_backends(database_url: str, redis_url: str):
    """An empty bench database and Redis db: every setup starts from the same state."""
    import redis
    import sqlalchemy

    engine = sqlalchemy.create_engine(database_url.replace("postgresql://",
                                                           "postgresql+psycopg://", 1))
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    redis.Redis.from_url(redis_url).flushdb()


def start_gateway(servers: Servers, root: str, *, name: str, workers: int, fast_url: str,
                  slow_url: str | None, database_url: str | None, redis_url: str | None,
                  worker_connections: int | None,
                  more: dict[str, str] | None = None) -> tuple[str, str, subprocess.Popen]:
    """`more`: model -> upstream URL, each served by a provider of its own."""
    port = free_port()
    providers = [{"name": "bench", "type": "openai", "base_url": fast_url + "/v1",
                  "api_key_env": "BENCH_UPSTREAM_KEY", "models": [MODEL]}]
    if slow_url:
        providers.append({"name": "slow", "type": "openai", "base_url": slow_url + "/v1",
                          "api_key_env": "BENCH_UPSTREAM_KEY", "models": [SLOW_MODEL]})
    for model, url in (more or {}).items():
        providers.append({"name": model, "type": "openai", "base_url": url + "/v1",
                          "api_key_env": "BENCH_UPSTREAM_KEY", "models": [model]})
    env = {**os.environ,
           "GATEWAY_CONFIG": "/nonexistent.toml",
           "GATEWAY_PROVIDERS": json.dumps(providers),
           "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
           "DATABASE_URL": database_url or f"sqlite:///{servers.workdir}/{name}.db",
           "TOLLGATE_BIND": f"127.0.0.1:{port}",
           "WEB_CONCURRENCY": str(workers),
           "FLASK_APP": "app"}
    env.pop("TOLLGATE_ACCESS_LOG", None)
    env.update(access_log_off(root))
    env.pop("REDIS_URL", None)
    if redis_url:
        env["REDIS_URL"] = redis_url
    if worker_connections:
        env["TOLLGATE_WORKER_CONNECTIONS"] = str(worker_connections)
    if database_url:
        reset_backends(database_url, redis_url)
    flask_cli(root, env, "users", "create", "bench")
    flask_cli(root, env, "credits", "grant", "bench", "1000000000", "--reason", "benchmark")
    flask_cli(root, env, "users", "limits", "bench", "--per-hour", "100000000",
              "--per-minute", "chat=100000000", "--per-minute", "embeddings=100000000")
    key = flask_cli(root, env, "keys", "create", "bench").strip().splitlines()[-1]
    proc = servers.start(name, [os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py",
                                "wsgi:app"], env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    wait_until_up(name, url + "/v1/models", proc, servers)
    deadline = time.monotonic() + 30
    while len(worker_pids(proc)) < workers and time.monotonic() < deadline:
        time.sleep(0.1)
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64}
    status, answer = post(url + "/v1/chat/completions", key, body)
    if status != 200:
        sys.exit(f"{name}: a first request failed: {status} {answer[:300]!r}")
    return url, key, proc


def rss_bytes(master: subprocess.Popen) -> int:
    """Resident memory of the gunicorn master and its workers."""
    total = 0
    for pid in [master.pid, *worker_pids(master)]:
        try:
            with open(f"/proc/{pid}/statm") as fh:
                total += int(fh.read().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            pass
    return total


def loadgen(argv: list[str], timeout: float) -> dict:
    done = subprocess.run([sys.executable, os.path.join(BENCH, "loadgen.py"), *argv],
                          capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        sys.exit(f"load generator failed:\n{done.stderr}")
    return json.loads(done.stdout)


def matches(args, with_backends: bool) -> list[str]:
    if not with_backends:
        return []
    database = args.database_url.rsplit("/", 1)[1].split("?")[0]
    return ["--match", rf"^postgres: .* {re.escape(database)} ", "--match", r"^\S*redis-server"]


def run_load(url: str, key: str, *, stream: bool, concurrency: int, pids: list[int],
             backends: list[str], args, anthropic: bool = False) -> dict:
    argv = ["--port", url.rsplit(":", 1)[1], "--key", key, "--model", MODEL,
            "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            "--concurrency", str(concurrency), "--pids", *map(str, pids), *backends]
    if stream:
        argv.append("--stream")
    if anthropic:
        argv.append("--anthropic")
    return loadgen(argv, args.seconds + args.warmup + 120)


def level_test(url: str, key: str, gateway: subprocess.Popen, upstream: subprocess.Popen,
               streams: int, backends: list[str], log_path: str, args, *, model=SLOW_MODEL,
               chunks: int | None = None, interval: float | None = None,
               ramp: float | None = None) -> dict:
    chunks = chunks or args.chunks
    interval, ramp = interval or args.chunk_interval, ramp or args.ramp
    argv = ["--port", url.rsplit(":", 1)[1], "--key", key, "--model", model, "--stream",
            "--level", str(streams), "--ramp", str(ramp), "--events", str(chunks + 4),
            "--deadline", str(chunks * interval + 60),
            "--pids", str(upstream.pid), str(gateway.pid), *backends]
    log_start = os.path.getsize(log_path)
    start_rss, peak = rss_bytes(gateway), [0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.5):
            peak[0] = max(peak[0], rss_bytes(gateway))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = loadgen(argv, ramp + chunks * interval + 180)
    finally:
        stop.set()
        sampler.join()
    time.sleep(args.settle)
    result.update(rss_start=start_rss, rss_peak=peak[0], rss_after=rss_bytes(gateway))
    with open(log_path, "rb") as fh:  # what the gateway itself answered, also to clients gone
        fh.seek(log_start)
        lines = fh.read().decode(errors="replace").splitlines()
    result["logged_503"] = sum("status=503" in line for line in lines)
    result["pool_timeouts"] = sum("database unavailable" in line for line in lines)
    return result


def per_request(cores: float, rps: float) -> str:
    return f"{cores / rps * 1000:.2f}" if rps else "-"


def load_report(rows: list[tuple[str, str, int, dict]], args) -> list[str]:
    lines = [
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; {fmt(args.seconds, 0)} s per "
        f"scenario after {fmt(args.warmup, 0)} s of warm-up. Latencies in ms; CPU in ms per "
        "request: the gateway (master + workers), the fake upstream in the same run (a yardstick "
        "of the machine's speed at that moment: it does the same work per request in every "
        "row), the PostgreSQL backends of the bench database, the Redis server; `other` is the "
        "rest of the machine in cores (someone else's load).",
        "",
        "| setup | kind | conc. | requests | errors | rps | p50 | p99 | gateway CPU "
        "| upstream CPU | PG CPU | Redis CPU | other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for setup, kind, conc, r in rows:
        gateway = per_request(r["pid_cpu"][1], r["rps"]) if len(r["pid_cpu"]) > 1 else "-"
        upstream = per_request(r["pid_cpu"][0], r["rps"])
        groups = [per_request(c, r["rps"]) for c in r["group_cpu"]] or ["-", "-"]
        ours = r["client_cpu"] + sum(r["pid_cpu"]) + sum(r["group_cpu"])
        lines.append(
            f"| {setup} | {kind} | {conc} | {r['ok'] + r['errors']} | {r['errors']} "
            f"| {fmt(r['rps'], 0)} | {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {gateway} "
            f"| {upstream} | {groups[0]} | {groups[1]} "
            f"| {fmt(max(r['machine_cpu'] - ours, 0), 2)} |")
    by = {(s, k, c): r for s, k, c, r in rows}
    lines += ["", "| setup | kind | added p50 at concurrency 1 | rps at concurrency "
              f"{args.concurrency} |", "|---|---|---:|---:|"]
    for setup, kind, conc, r in rows:
        direct = by.get(("direct", kind, 1))
        if conc != 1 or setup == "direct" or not direct:
            continue
        added = (r["p50_ms"] - direct["p50_ms"]) if r["p50_ms"] and direct["p50_ms"] else None
        loaded = by.get((setup, kind, args.concurrency))
        lines.append(f"| {setup} | {kind} | {fmt(added, 2)} "
                     f"| {fmt(loaded['rps'], 0) if loaded else '-'} |")
    one, many = "pg+redis, 1 worker", f"pg+redis, {args.workers} workers"
    lines.append("")
    for kind in ("non-streaming", "streaming"):
        a, b = by.get((one, kind, args.concurrency)), by.get((many, kind, args.concurrency))
        if a and b and a["rps"]:
            lines.append(f"Scaling, {kind}: {args.workers} workers served "
                         f"{b['rps'] / a['rps']:.2f} times the requests per second of one.  ")
    problems = [(setup, kind, conc, name, r["error_counts"][name], example)
                for setup, kind, conc, r in rows for name, example in r["error_kinds"].items()]
    if problems:
        lines += ["", "Errors:"]
        lines += [f"- {s}, {k}, concurrency {c}: {n} x {e}" for s, k, c, _, n, e in problems]
    return lines


def level_report(levels: list[dict], args) -> list[str]:
    mb = 1024 * 1024
    lines = [
        "", f"Slow streams through pg+redis with {args.workers} workers: {args.chunks} chunks, "
        f"one every {fmt(args.chunk_interval, 1)} s, opened over {fmt(args.ramp, 0)} s. CPU per "
        "chunk: gateway CPU over the whole test / SSE events received. 503: answers the clients "
        "got / 503s in the gateway's log (also those sent after the client gave up) / of those, "
        "database pool time-outs.",
        "",
        "| streams | complete | 503 | other outcomes | seconds | gateway CPU per chunk | "
        "PG + Redis CPU (s) | RSS start / peak / after (MB) |",
        "|---:|---:|---:|---|---:|---:|---:|---|",
    ]
    for r in levels:
        outcomes = dict(r["outcomes"])
        complete, refused = outcomes.pop("complete", 0), outcomes.pop("HTTP 503", 0)
        other = ", ".join(f"{n}: {c}" for n, c in sorted(outcomes.items())) or "-"
        per_chunk = f"{r['pid_cpu_s'][1] / r['events'] * 1000:.3f} ms" if r["events"] else "-"
        lines.append(
            f"| {r['streams']} | {complete} ({complete / r['streams'] * 100:.0f}%) "
            f"| {refused} / {r['logged_503']} / {r['pool_timeouts']} "
            f"| {other} | {r['seconds']:.0f} | {per_chunk} | {sum(r['group_cpu_s']):.1f} "
            f"| {r['rss_start'] / mb:.0f} / {r['rss_peak'] / mb:.0f} / {r['rss_after'] / mb:.0f} |")
    examples = {n: e for r in levels for n, e in r["examples"].items()}
    if examples:
        lines += ["", "Examples:"] + [f"- {n}: {e}" for n, e in sorted(examples.items())]
    return lines


def relay_report(short: dict, long: dict, args) -> list[str]:
    """The CPU per relayed chunk alone, and per stream for the rest, from two runs that differ
    only in their streams' length."""
    events = long["events"] - short["events"]
    gateway = long["pid_cpu_s"][1] - short["pid_cpu_s"][1]
    upstream = long["pid_cpu_s"][0] - short["pid_cpu_s"][0]
    per_event = gateway / events if events > 0 else 0.0
    fixed = (short["pid_cpu_s"][1] - per_event * short["events"]) / short["streams"]
    n, c = args.relay_streams, args.relay_chunks
    complete = [r["outcomes"].get("complete", 0) for r in (short, long)]
    return [
        "", f"Relay cost: {n} streams of {c} chunks, then {n} of {4 * c}, 0.5 s apart, through "
        f"pg+redis with {args.workers} workers ({complete[0]} and {complete[1]} complete). "
        f"Gateway CPU per relayed chunk alone: {per_event * 1e6:.0f} us (the fake upstream's "
        f"own: {upstream / events * 1e6 if events > 0 else 0:.0f} us); per stream, its request, "
        f"connections, hold and settlement: {fixed * 1000:.2f} ms.",
    ]


def main():
    parser = argparse.ArgumentParser(description="Embedded vs production setup benchmark.")
    parser.add_argument("--seconds", type=float, default=8, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    parser.add_argument("--concurrency", type=int, default=32, help="requests in flight (loaded)")
    parser.add_argument("--workers", type=int, default=2, help="workers of the production setup")
    parser.add_argument("--levels", default="1000,5000,10000",
                        help="concurrent slow streams per level, comma-separated")
    parser.add_argument("--chunks", type=int, default=30, help="content chunks per slow stream")
    parser.add_argument("--chunk-interval", type=float, default=1.0,
                        help="seconds between slow-stream chunks")
    parser.add_argument("--ramp", type=float, default=10, help="seconds to open a level's streams")
    parser.add_argument("--relay-streams", type=int, default=1000,
                        help="streams per run of the relay cost (0: not measured)")
    parser.add_argument("--relay-chunks", type=int, default=10,
                        help="chunks per stream of the relay cost's first run (x4 the second)")
    parser.add_argument("--settle", type=float, default=10,
                        help="seconds after a level before reading the RSS 'after'")
    parser.add_argument("--worker-connections", type=int, default=None,
                        help="override the gateway's TOLLGATE_WORKER_CONNECTIONS")
    parser.add_argument("--skip-load", action="store_true", help="only the level test")
    parser.add_argument("--skip-levels", action="store_true", help="no level test")
    parser.add_argument("--database-url",
                        default="postgresql://postgres@127.0.0.1:5432/tollgate_bench",
                        help="PostgreSQL database of its own: it is emptied at every start")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/9",
                        help="Redis db of its own: it is flushed at every start")
    parser.add_argument("--gateway-root", default=ROOT,
                        help="the gateway checkout to run (default: this repository)")
    args = parser.parse_args()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(f"stopped by signal {signum}"))
    root = os.path.abspath(args.gateway_root)
    levels = [int(n) for n in args.levels.split(",") if n.strip()] if not args.skip_levels else []

    workdir = tempfile.mkdtemp(prefix="tollgate-prod-bench-")
    servers = Servers(workdir)
    failed = True
    out = []
    try:
        fast_url, fast = start_upstream(servers, "upstream", workers=1)
        slow_url = slow = None
        if levels:
            slow_url, slow = start_upstream(servers, "slow-upstream", workers=2,
                                            delay_ms=args.chunk_interval * 1000,
                                            chunks=args.chunks)
        relay = {}  # model -> (chunks, url, process): the relay cost's two upstreams
        if levels and args.relay_streams:
            for chunks in (args.relay_chunks, 4 * args.relay_chunks):
                relay[f"bench-relay-{chunks}"] = (chunks, *start_upstream(
                    servers, f"relay-upstream-{chunks}", workers=2, delay_ms=500,
                    chunks=chunks))
        setups = [("direct", 0, False), ("sqlite, 1 worker", 1, False),
                  ("pg+redis, 1 worker", 1, True),
                  (f"pg+redis, {args.workers} workers", args.workers, True)]
        if args.skip_load:
            setups = setups[-1:]
        rows, level_rows, relay_rows = [], [], []
        for setup, workers, production in setups:
            if setup == "direct":
                url, key, pids = fast_url, UPSTREAM_KEY, [fast.pid]
            else:
                print(f"starting {setup} ...", file=sys.stderr, flush=True)
                name = "gw-" + setup.split(",")[0].replace("+", "-") + f"-{workers}"
                url, key, gateway = start_gateway(
                    servers, root, name=name, workers=workers, fast_url=fast_url,
                    slow_url=slow_url if setup == setups[-1][0] else None,
                    database_url=args.database_url if production else None,
                    redis_url=args.redis_url if production else None,
                    worker_connections=args.worker_connections,
                    more={m: u for m, (_, u, _) in relay.items()}
                    if setup == setups[-1][0] else None)
                pids = [fast.pid, gateway.pid]
            if not args.skip_load:
                for stream in (False, True):
                    kind = "streaming" if stream else "non-streaming"
                    for conc in (1, args.concurrency):
                        print(f"running {setup}, {kind}, concurrency {conc} ...",
                              file=sys.stderr, flush=True)
                        rows.append((setup, kind, conc, run_load(
                            url, key, stream=stream, concurrency=conc, pids=pids,
                            backends=matches(args, production), args=args)))
                if setup != "direct":  # the upstream speaks OpenAI's format only
                    print(f"running {setup}, translated stream, concurrency {args.concurrency} "
                          "...", file=sys.stderr, flush=True)
                    rows.append((setup, TRANSLATED, args.concurrency, run_load(
                        url, key, stream=True, concurrency=args.concurrency, pids=pids,
                        backends=matches(args, production), args=args, anthropic=True)))
            if setup == setups[-1][0]:
                for streams in levels:
                    print(f"level test: {streams} slow streams ...", file=sys.stderr, flush=True)
                    level_rows.append(level_test(
                        url, key, gateway, slow, streams, matches(args, True),
                        os.path.join(servers.workdir, f"{name}.log"), args))
                for model, (chunks, _, upstream) in relay.items():
                    print(f"relay cost: {args.relay_streams} streams of {chunks} chunks ...",
                          file=sys.stderr, flush=True)
                    relay_rows.append(level_test(
                        url, key, gateway, upstream, args.relay_streams, matches(args, True),
                        os.path.join(servers.workdir, f"{name}.log"), args, model=model,
                        chunks=chunks, interval=0.5, ramp=5))
            if setup != "direct":
                servers.procs = [(n, p) for n, p in servers.procs if p is not gateway]
                os.killpg(gateway.pid, signal.SIGTERM)
                gateway.wait(60)
        if rows:
            out += load_report(rows, args)
        if level_rows:
            out += level_report(level_rows, args)
        if relay_rows:
            out += relay_report(*relay_rows, args)
        print("\n".join(out))
        errors = sum(r["errors"] for *_, r in rows)
        failed = errors > 0 or any(r["outcomes"].get("complete", 0) < r["streams"]
                                   for r in level_rows + relay_rows)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    finally:
        servers.stop()
        if failed:
            print(f"server logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
