"""Benchmark: the gateway versus calling the fake upstream directly.

    .venv/bin/python bench/run.py [--seconds N] [--concurrency C] [--chunk-delay-ms MS]
                                  [--warmup N] [--gateway-root DIR]

Starts bench/fake_upstream.py and the real gateway (gunicorn -c gunicorn.conf.py wsgi:app, one
gevent worker, configured only through the environment, key made with the operator CLI) on free
loopback ports, then drives each scenario with bench/loadgen.py in its own process: closed loop,
fixed concurrency, fixed duration. Prints a Markdown table; exits 1 when any request failed.
Every process it started is stopped on exit, also on errors and Ctrl-C.
"""

import argparse
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
BIN = os.path.dirname(sys.executable)
UPSTREAM_KEY = "sk-bench"
MODEL, EMBEDDING_MODEL = "bench-model", "bench-embedding"
EMBEDDING_INPUTS = 16  # what bench/fake_upstream.py answers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Servers:
    """The subprocesses of one run; stop() ends each of them (and its workers) by process group."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.procs: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, argv: list[str], env: dict, cwd: str) -> subprocess.Popen:
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        # A session of its own: Ctrl-C reaches only this script, which then stops the servers.
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        log.close()
        self.procs.append((name, proc))
        return proc

    def log_tail(self, name: str, lines: int = 30) -> str:
        with open(os.path.join(self.workdir, f"{name}.log"), errors="replace") as fh:
            return "".join(fh.readlines()[-lines:])

    def stop(self):
        for _, proc in reversed(self.procs):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for _, proc in reversed(self.procs):
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                pass
            try:  # the master is gone; make sure none of its workers outlives it
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
        self.procs.clear()


def wait_until_up(name: str, url: str, proc: subprocess.Popen, servers: Servers):
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{name} exited with {proc.returncode}:\n{servers.log_tail(name)}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers (401/404/405 are fine here)
        except OSError:
            time.sleep(0.1)
    sys.exit(f"{name} did not start within 30 s:\n{servers.log_tail(name)}")


def worker_pids(master: subprocess.Popen) -> list[int]:
    try:
        with open(f"/proc/{master.pid}/task/{master.pid}/children") as fh:
            return sorted(int(p) for p in fh.read().split())
    except OSError:
        return []


def post(url: str, key: str, body: dict) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Authorization": f"Bearer {key}",
                                          "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def access_log_off(root: str) -> dict:
    """The environment that leaves gunicorn's access log off, as the gateway ships: unset where
    the gateway's gunicorn.conf.py turns it on only when asked, /dev/null for older gateways
    (before issue 15) that wrote it to stdout by default. Formatting an access line costs about
    0.1 ms a request, which a benchmark of the defaults must not count."""
    with open(os.path.join(root, "gunicorn.conf.py")) as fh:
        on_by_default = 'get("TOLLGATE_ACCESS_LOG", "-")' in fh.read()
    return {"TOLLGATE_ACCESS_LOG": "/dev/null"} if on_by_default else {}


def flask_cli(root: str, env: dict, *args: str) -> str:
    done = subprocess.run([os.path.join(BIN, "flask"), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        sys.exit(f"flask {' '.join(args)} failed:\n{done.stderr}")
    return done.stdout


def start_upstream(servers: Servers, chunk_delay_ms: float) -> tuple[str, subprocess.Popen]:
    port = free_port()
    env = {**os.environ, "BENCH_CHUNK_DELAY_MS": str(chunk_delay_ms)}
    proc = servers.start("upstream", [
        os.path.join(BIN, "gunicorn"), "-k", "gevent", "-w", "1", "--worker-connections", "1000",
        "--keep-alive", "75", "--log-level", "warning", "-b", f"127.0.0.1:{port}",
        "fake_upstream:app"], env, cwd=BENCH)
    url = f"http://127.0.0.1:{port}"
    wait_until_up("upstream", url + "/v1/chat/completions", proc, servers)
    return url, proc


def start_gateway(servers: Servers, root: str, upstream_url: str
                  ) -> tuple[str, str, subprocess.Popen]:
    port = free_port()
    provider = {"name": "bench", "type": "openai", "base_url": upstream_url + "/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY", "models": [MODEL],
                "embedding_models": [EMBEDDING_MODEL]}
    env = {**os.environ,
           "GATEWAY_CONFIG": "/nonexistent.toml",
           "GATEWAY_PROVIDERS": json.dumps([provider]),
           "BENCH_UPSTREAM_KEY": UPSTREAM_KEY,
           "DATABASE_URL": f"sqlite:///{servers.workdir}/bench.db",
           "TOLLGATE_BIND": f"127.0.0.1:{port}",
           "WEB_CONCURRENCY": "1",
           "FLASK_APP": "app"}
    env.pop("TOLLGATE_ACCESS_LOG", None)
    env.update(access_log_off(root))
    flask_cli(root, env, "users", "create", "bench")
    commands = flask_cli(root, env, "--help")
    if "credits" in commands:  # a gateway that charges prepaid credits: enough for any run
        flask_cli(root, env, "credits", "grant", "bench", "1000000000", "--reason", "benchmark")
    if "limits" in flask_cli(root, env, "users", "--help"):  # per-key rate limits: never reached
        flask_cli(root, env, "users", "limits", "bench", "--per-hour", "100000000",
                  "--per-minute", "chat=100000000", "--per-minute", "embeddings=100000000")
    key = flask_cli(root, env, "keys", "create", "bench").strip().splitlines()[-1]
    proc = servers.start("gateway", [os.path.join(BIN, "gunicorn"), "-c", "gunicorn.conf.py",
                                     "wsgi:app"], env, cwd=root)
    url = f"http://127.0.0.1:{port}"
    wait_until_up("gateway", url + "/v1/models", proc, servers)
    return url, key, proc


def sanity_check(upstream_url: str, gateway_url: str, key: str):
    """One request each way per endpoint: the gateway must hand back the upstream's answer (it
    may add fields of its own, such as what the request cost)."""
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256}
    embed = {"model": EMBEDDING_MODEL, "encoding_format": "base64",
             "input": [f"text {i}" for i in range(EMBEDDING_INPUTS)]}
    for path, body in (("/v1/chat/completions", chat), ("/v1/embeddings", embed)):
        direct = post(upstream_url + path, UPSTREAM_KEY, body)
        via = post(gateway_url + path, key, body)
        try:
            same = direct[0] == via[0] == 200 and all(
                json.loads(via[1]).get(name) == value
                for name, value in json.loads(direct[1]).items())
        except ValueError:
            same = False
        if not same:
            sys.exit(f"sanity check failed on {path}:\n  direct: {direct[:300]}\n"
                     f"  gateway: {via[:300]}")


def run_scenario(url: str, key: str, *, kind: str, args, pids: list[int]) -> dict:
    port = int(url.rsplit(":", 1)[1])
    model = EMBEDDING_MODEL if kind == "embeddings" else MODEL
    argv = [sys.executable, os.path.join(BENCH, "loadgen.py"), "--port", str(port),
            "--key", key, "--model", model, "--seconds", str(args.seconds),
            "--warmup", str(args.warmup), "--concurrency", str(args.concurrency),
            "--pids", *map(str, pids)]
    if kind == "streaming":
        argv.append("--stream")
    if kind == "embeddings":
        argv += ["--embeddings", str(EMBEDDING_INPUTS), "--path", "/v1/embeddings"]
    done = subprocess.run(argv, capture_output=True, text=True,
                          timeout=args.seconds + args.warmup + 120)
    if done.returncode != 0:
        sys.exit(f"load generator failed:\n{done.stderr}")
    return json.loads(done.stdout)


KINDS = ("non-streaming", "streaming", "embeddings")


def fmt(value, digits=1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def report(rows: list[tuple[str, dict]], args) -> str:
    by_name = dict(rows)
    lines = [
        f"{os.cpu_count()} CPUs, Python {platform.python_version()}; concurrency "
        f"{args.concurrency}, {fmt(args.seconds, 0)} s per scenario after "
        f"{fmt(args.warmup, 0)} s of warm-up; upstream pause between stream chunks "
        f"{fmt(args.chunk_delay_ms, 0)} ms. Latencies in ms. CPU: cores used by the load "
        "generator / the fake upstream / the gateway / everything else on the machine.",
        "",
        "| scenario | requests | errors | rps | p50 | p99 | TTFB p50 | TTFB p99 | CPU |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in rows:
        ours = [r["client_cpu"], *r["pid_cpu"]]
        others = max(r["machine_cpu"] - sum(ours), 0)
        cpu = ours + ([None] if name.startswith("direct") else []) + [others]
        lines.append(
            f"| {name} | {r['ok'] + r['errors']} | {r['errors']} | {fmt(r['rps'], 0)} "
            f"| {fmt(r['p50_ms'], 2)} | {fmt(r['p99_ms'], 2)} | {fmt(r['ttfb_p50_ms'], 2)} "
            f"| {fmt(r['ttfb_p99_ms'], 2)} | {' / '.join(fmt(c, 2) for c in cpu)} |")
    lines += ["", "| added by the gateway | p50 | p99 | TTFB p50 | TTFB p99 | rps "
              "| gateway CPU per request |", "|---|---:|---:|---:|---:|---:|---:|"]
    for kind in KINDS:
        d, g = by_name.get(f"direct, {kind}"), by_name.get(f"gateway, {kind}")
        if not d or not g:
            continue
        diff = {k: None if d[k] is None or g[k] is None else g[k] - d[k]
                for k in ("p50_ms", "p99_ms", "ttfb_p50_ms", "ttfb_p99_ms")}
        ratio = f"{g['rps'] / d['rps'] * 100:.0f}% of direct" if d["rps"] else "-"
        cost = f"{g['pid_cpu'][1] / g['rps'] * 1000:.2f} ms" if g["rps"] else "-"
        lines.append(f"| {kind} | {fmt(diff['p50_ms'], 2)} | {fmt(diff['p99_ms'], 2)} "
                     f"| {fmt(diff['ttfb_p50_ms'], 2)} | {fmt(diff['ttfb_p99_ms'], 2)} "
                     f"| {ratio} | {cost} |")
    problems = [(name, kind, r["error_counts"][kind], example)
                for name, r in rows for kind, example in r["error_kinds"].items()]
    if problems:
        lines += ["", "Errors:"]
        lines += [f"- {name}: {count} x {example}" for name, _, count, example in problems]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description="Gateway vs direct upstream benchmark.")
    parser.add_argument("--seconds", type=float, default=10, help="measured seconds per scenario")
    parser.add_argument("--concurrency", type=int, default=20, help="requests in flight")
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds first")
    parser.add_argument("--chunk-delay-ms", type=float, default=0,
                        help="pause of the fake upstream between stream chunks")
    parser.add_argument("--gateway-root", default=ROOT,
                        help="the gateway checkout to run (default: this repository), e.g. an "
                             "export of one commit: git archive HEAD | tar -x -C DIR")
    args = parser.parse_args()
    # SIGTERM (and SIGHUP) unwind like Ctrl-C, through the finally below.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(f"stopped by signal {signum}"))

    workdir = tempfile.mkdtemp(prefix="tollgate-bench-")
    servers = Servers(workdir)
    failed = True
    try:
        upstream_url, upstream = start_upstream(servers, args.chunk_delay_ms)
        gateway_url, key, gateway = start_gateway(servers, os.path.abspath(args.gateway_root),
                                                  upstream_url)
        sanity_check(upstream_url, gateway_url, key)
        scenarios = [(f"{side}, {kind}", url, api_key, kind) for kind in KINDS
                     for side, url, api_key in (("direct", upstream_url, UPSTREAM_KEY),
                                                ("gateway", gateway_url, key))]
        rows = []
        for name, url, api_key, kind in scenarios:
            print(f"running {name} ...", file=sys.stderr, flush=True)
            before = worker_pids(gateway)
            pids = [upstream.pid] + ([gateway.pid] if url == gateway_url else [])
            rows.append((name, run_scenario(url, api_key, kind=kind, args=args, pids=pids)))
            if worker_pids(gateway) != before:
                print(f"note: the gateway's worker was replaced during {name!r} "
                      "(gunicorn max_requests)", file=sys.stderr)
        print(report(rows, args))
        errors = sum(r["errors"] for _, r in rows)
        if errors:
            print(f"{errors} requests failed (listed under the table)", file=sys.stderr)
        failed = errors > 0
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
