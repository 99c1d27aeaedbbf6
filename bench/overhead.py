"""The per-request cost of the resilience and observability steps, measured in-process.

Runs each step the gateway adds to a request many times over and prints microseconds per call:
the routing plan (provider order, breaker check, key choice, one attempt bound and recorded),
the request metrics, and the access line written to a file. These are the parts bench/run.py
cannot resolve on a noisy machine: its per-request figures move by more than their sum.

    .venv/bin/python bench/overhead.py [--calls 50000]
"""

import argparse
import logging
import os
import sys
import tempfile
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import logs  # noqa: E402
import tracing  # noqa: E402
from providers.breaker import MemoryBreakers  # noqa: E402
from providers.openai import OpenAIProvider  # noqa: E402
from providers.registry import Route, parse_upstream  # noqa: E402
from providers.routing import Router  # noqa: E402
from services.metrics import Metrics  # noqa: E402


def per_call(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=50_000)
    calls = parser.parse_args().calls
    env = {"K1": "sk-bench-1", "K2": "sk-bench-2"}
    spec = {"name": "p", "type": "openai", "models": ["m"], "api_key_envs": ["K1", "K2"],
            "base_urls": ["http://a.invalid/v1", "http://b.invalid/v1"]}
    provider = OpenAIProvider(parse_upstream(spec, env), None, timeout=(5, 120))
    router = Router([provider], MemoryBreakers())
    routes = [Route(provider, "m")]

    def route():
        plan = router.plan(routes)
        for attempt in plan:
            plan.succeeded(attempt)
            break

    metrics = Metrics()
    info = tracing.RequestInfo("req_bench", family="openai", model="m", provider="p",
                               credits=Decimal("0.0123"), input_tokens=30, output_tokens=90)
    with tempfile.NamedTemporaryFile("w", suffix=".log") as sink:
        handler = logging.FileHandler(sink.name)
        handler.tollgate = True
        logging.getLogger().addHandler(handler)
        logs.install_logging()
        logging.getLogger().setLevel(logging.INFO)
        access = logging.getLogger("tollgate.access")
        fields = {"method": "POST", "path": "/v1/chat/completions", "family": "openai",
                  "model": "m", "provider": "p", "attempts": 1, "status": 200,
                  "duration_ms": 12.3, "input_tokens": 30, "output_tokens": 90,
                  "credits": "0.0123"}
        text = " ".join(f"{k}={v}" for k, v in fields.items())
        results = {"routing plan (2 URLs, 2 keys)": per_call(route, calls),
                   "request metrics": per_call(lambda: metrics.request_done(info, 200, 0.01),
                                               calls),
                   "access line (text, to a file)": per_call(
                       lambda: access.info("%s", text, extra={"fields": fields}), calls)}
    for name, micros in results.items():
        print(f"{name:34s} {micros:6.1f} us per request")


if __name__ == "__main__":
    main()
