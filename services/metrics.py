"""Prometheus metrics: what every request, upstream attempt and breaker did.

Under gunicorn with several workers, `PROMETHEUS_MULTIPROC_DIR` (set by gunicorn.conf.py) puts
prometheus_client in multiprocess mode: each worker writes its figures to files there and a
scrape of any worker adds them all up. Without it (one process: tests, `flask run`), each app
has a registry of its own.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily

from providers.breaker import STATE_VALUES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


class Metrics:
    def __init__(self):
        shared = multiprocess_dir() is not None
        # multiprocess: values live in files, collected at scrape time, not in a registry
        self.registry = None if shared else CollectorRegistry()
        self._extra = []  # collectors run at scrape time, in the scraping process
        self._refresh = []  # functions that bring this process's gauges up to date first
        r = {"registry": self.registry}
        self.requests = Counter("tollgate_requests", "Requests answered",
                                ["family", "model", "provider", "status"], **r)
        self.duration = Histogram("tollgate_request_duration_seconds",
                                  "Time from request to the last byte of the answer", ["family"],
                                  buckets=LATENCY_BUCKETS, **r)
        self.first_byte = Histogram("tollgate_time_to_first_byte_seconds",
                                    "Time from request to the first byte of the answer",
                                    ["family"], buckets=LATENCY_BUCKETS, **r)
        self.upstream_failures = Counter("tollgate_upstream_failures",
                                         "Failed upstream attempts", ["provider", "kind"], **r)
        self.breaker = Gauge("tollgate_breaker_state",
                             "Circuit breaker per upstream URL: 0 closed, 1 half-open, 2 open",
                             ["url"], multiprocess_mode="livemostrecent", **r)
        self.open_streams = Gauge("tollgate_open_streams", "Streams being relayed now",
                                  multiprocess_mode="livesum", **r)
        self.credits = Counter("tollgate_credits_charged", "Credits charged",
                               ["family", "provider"], **r)
        self.tokens = Counter("tollgate_tokens", "Tokens billed", ["family", "provider", "kind"],
                              **r)
        self.rate_limited = Counter("tollgate_rate_limit_refusals",
                                    "Requests refused by a rate limit", ["family"], **r)
        self.settle_queue = Gauge("tollgate_settlement_queue_depth",
                                  "Charges waiting to be written", multiprocess_mode="livesum",
                                  **r)

    # ---- recording ----------------------------------------------------------------------
    def request_done(self, info, status: int, seconds: float) -> None:
        """One finished request, from its RequestInfo."""
        family = info.family or "other"
        self.requests.labels(family, info.model if info.provider else "", info.provider,
                             str(status)).inc()
        self.duration.labels(family).observe(seconds)
        first = info.first_byte if info.first_byte is not None else info.started + seconds
        self.first_byte.labels(family).observe(max(first - info.started, 0.0))
        if info.credits is not None:
            self.credits.labels(family, info.provider).inc(float(info.credits))
            self.tokens.labels(family, info.provider, "input").inc(info.input_tokens)
            self.tokens.labels(family, info.provider, "output").inc(info.output_tokens)

    def upstream_failed(self, provider: str, kind: str) -> None:
        self.upstream_failures.labels(provider, kind).inc()

    def breaker_changed(self, url: str, state: str) -> None:
        self.breaker.labels(url).set(STATE_VALUES[state])

    def before_scrape(self, refresh) -> None:
        """A function run before each scrape, in the scraping process (e.g. breaker states)."""
        self._refresh.append(refresh)

    def add_collector(self, collect) -> None:
        """A function returning metric families, run in the process that serves the scrape."""
        self._extra.append(collect)

    # ---- exposition ---------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The text format for a scrape: every worker's figures when in multiprocess mode."""
        for refresh in self._refresh:
            refresh()
        if self.registry is not None:
            registry = self.registry
        else:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        registry = _WithExtras(registry, self._extra)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class _WithExtras:
    """A registry view that adds the scrape-time collectors' families."""

    def __init__(self, registry, extras):
        self.registry, self.extras = registry, extras

    def collect(self):
        yield from self.registry.collect()
        for collect in self.extras:
            yield from collect()


def gauge_family(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=value)
