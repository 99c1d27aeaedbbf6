"""The gateway's own cost per request, measured in-process: CPU, Python calls, Redis round trips.

    .venv/bin/python bench/inprocess.py [--requests 1000] [--redis URL] [--database URL]
                                   [--chunk-delay-ms 2] [--gateway-root DIR]

The app (create_app, from --gateway-root) serves requests one at a time through Flask's test
client against bench/fake_upstream.py (gunicorn, its own process), with credits and rate limits
on (limits it never reaches), on SQLite in a temporary directory or --database, counting in
memory or in --redis. For each scenario it prints, per request: the process's CPU time (the
settlement thread included: the queue is drained before the clock stops), the Python function
calls (cProfile, a second pass: load does not move this figure) and the commands sent to Redis.
Two slow streams (a second upstream pausing --chunk-delay-ms between events, so each one is read
and relayed on its own), of 24 and 204 events, give the relay's CPU per chunk: the difference
of their CPU over the 180 events more. No gunicorn, gevent or access log file here: bench/run.py
has those.
"""

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
import uuid

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, BENCH)
from run import MODEL, UPSTREAM_KEY, Servers, start_upstream  # noqa: E402

# bench/fake_upstream.py: role, 20 content chunks, finish, usage, [DONE]; 200 content chunks for
# its "-long" model. Both slow ones come from a second upstream pausing between events.
SLOW_MODELS = [MODEL + "-slow", MODEL + "-long"]
EXTRA_EVENTS = 180


def build_app(root: str, upstream_url: str, slow_url: str, args, workdir: str):
    sys.path.insert(0, root)
    os.environ.update(BENCH_UPSTREAM_KEY=UPSTREAM_KEY, GATEWAY_CONFIG="/nonexistent.toml")
    os.environ.pop("REDIS_URL", None)
    os.environ.pop("DATABASE_URL", None)
    from app import create_app

    provider = {"name": "bench", "type": "openai", "base_url": upstream_url + "/v1",
                "api_key_env": "BENCH_UPSTREAM_KEY", "models": [MODEL]}
    slow = {**provider, "name": "slow", "base_url": slow_url + "/v1", "models": SLOW_MODELS}
    config = {"SQLALCHEMY_DATABASE_URI": args.database or f"sqlite:///{workdir}/bench.db",
              "PROVIDERS": [provider, slow], "LOG_LEVEL": "WARNING"}
    if args.redis:
        config.update(RATELIMIT_STORAGE_URI=args.redis, RATELIMIT_STORAGE_OPTIONS={
            "key_prefix": f"tollgate-bench-{uuid.uuid4().hex}"})
    app = create_app(config)
    cli = app.test_cli_runner()
    for command in (["users", "create", "bench"],
                    ["credits", "grant", "bench", "1000000000", "--reason", "benchmark"],
                    ["users", "limits", "bench", "--per-hour", "100000000",
                     "--per-minute", "chat=100000000"],
                    ["keys", "create", "bench"]):
        done = cli.invoke(args=command)
        if done.exit_code != 0:
            sys.exit(f"flask {' '.join(command)} failed: {done.output}")
    return app, done.output.strip().splitlines()[-1]


class RedisCounter:
    """Counts what this process sends Redis, one per round trip (a pipeline is one): every
    command goes out through redis-py's connection class, also the rate-limit windows', which
    pass by its client methods. (The server's own count also has the commands scripts run.)"""

    def __init__(self, _app):
        from redis.connection import AbstractConnection
        self.calls = 0
        send = AbstractConnection.send_packed_command

        def counted(conn, command, check_health=True):
            self.calls += 1
            return send(conn, command, check_health)

        AbstractConnection.send_packed_command = counted


def scenarios(key: str, delay_ms: float):
    auth = {"Authorization": f"Bearer {key}"}
    chat = {"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 256}
    stream = {**chat, "stream": True, "stream_options": {"include_usage": True}}
    anthropic = {"model": MODEL, "max_tokens": 256, "stream": True,
                 "messages": [{"role": "user", "content": "hi"}]}
    return [
        ("whole completion", "/v1/chat/completions", chat, auth, ""),
        ("passthrough stream", "/v1/chat/completions", stream, auth, ""),
        ("translated stream (Anthropic client)", "/v1/messages", anthropic,
         {"x-api-key": key, "anthropic-version": "2023-06-01"}, ""),
        (f"slow stream, 24 events {delay_ms:g} ms apart", "/v1/chat/completions",
         {**stream, "model": SLOW_MODELS[0]}, auth, "slow"),
        (f"slow stream, 204 events {delay_ms:g} ms apart", "/v1/chat/completions",
         {**stream, "model": SLOW_MODELS[1]}, auth, "slow"),
    ]


def run(app, client, counter, path, body, headers, requests, profile=None):
    billing = app.extensions["billing"]
    data = json.dumps(body).encode()
    redis_before = counter.calls
    cpu = time.process_time()
    if profile:
        profile.enable()
    for _ in range(requests):
        resp = client.post(path, data=data, headers=headers, content_type="application/json")
        payload = resp.get_data()
        if resp.status_code != 200 or not payload:
            sys.exit(f"{path} answered {resp.status_code}: {payload[:300]!r}")
        resp.close()
    billing.flush()
    if profile:
        profile.disable()
    return ((time.process_time() - cpu) / requests * 1000,
            (counter.calls - redis_before) / requests)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="per scenario (slow: a tenth)")
    parser.add_argument("--redis", help="rate-limit storage, e.g. redis://127.0.0.1:6379/4")
    parser.add_argument("--database", help="SQLAlchemy URL (tables are created); default SQLite")
    parser.add_argument("--chunk-delay-ms", type=float, default=1.0)
    parser.add_argument("--gateway-root", default=os.path.dirname(BENCH))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        servers = Servers(workdir)
        try:
            upstream_url, _ = start_upstream(servers, 0)
            slow_url, _ = start_upstream(servers, args.chunk_delay_ms)
            app, key = build_app(os.path.abspath(args.gateway_root), upstream_url, slow_url,
                                 args, workdir)
            client, counter = app.test_client(), RedisCounter(app)
            print(f"gateway {args.gateway_root}; {args.database or 'SQLite'}, "
                  f"{args.redis or 'memory'} limits; {args.requests} requests per scenario\n")
            print("| scenario | CPU per request | Python calls per request | Redis commands "
                  "per request |\n|---|---:|---:|---:|")
            figures = {}
            for name, path, body, headers, slow in scenarios(key, args.chunk_delay_ms):
                n = max(args.requests // (10 if slow else 1), 20)
                run(app, client, counter, path, body, headers, max(n // 10, 5))  # warm-up
                cpu, redis = run(app, client, counter, path, body, headers, n)
                profile = cProfile.Profile()
                run(app, client, counter, path, body, headers, max(n // 5, 10), profile)
                calls = pstats.Stats(profile).total_calls / max(n // 5, 10)
                figures[name] = cpu
                print(f"| {name} | {cpu:.3f} ms | {calls:,.0f} | {redis:.1f} |", flush=True)
            short, long = list(figures.values())[-2:]
            print(f"\nslow streams: {(long - short) / EXTRA_EVENTS * 1000:.0f} us of CPU per "
                  f"relayed event (the long stream's CPU less the short one's, over the "
                  f"{EXTRA_EVENTS} events more)")
            app.extensions["billing"].shutdown()
        finally:
            servers.stop()


if __name__ == "__main__":
    main()
