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
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily

from providers.breaker import STATE_VALUES

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


_pid = [os.getpid()]
os.register_at_fork(after_in_child=lambda: _pid.__setitem__(0, os.getpid()))


def _process_id() -> int:
    """This process's id, read from the system once per process (at start and after a fork):
    prometheus_client's multiprocess values compare it on every update, to notice a fork, and
    os.getpid() is a system call each time."""
    return _pid[0]


def _use_cached_pid() -> None:
    """Multiprocess values that learn of a fork from the id kept above (prometheus_client lets a
    process identifier be given for this). Only values made from now on use it, so this runs
    before the first metric of ours is made."""
    if getattr(prometheus_values.ValueClass, "_tollgate", False):
        return
    value_class = prometheus_values.MultiProcessValue(process_identifier=_process_id)
    value_class._tollgate = True
    prometheus_values.ValueClass = value_class


class Metrics:
    def __init__(self):
        shared = multiprocess_dir() is not None
        if shared:
            _use_cached_pid()
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

        self._children = {}  # (metric, label values) -> its child: labels() costs more
        self._queue_depth = None  # (process id, depth) this process last wrote

    def _child(self, metric, *labels):
        """`metric.labels(*labels)`, kept: prometheus_client checks and converts the values and
        takes a lock on every call. Label values here are strings already (a model that was
        routed, a provider's name, a family), and children are never removed."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ---- recording ----------------------------------------------------------------------
    def request_done(self, info, status: int, seconds: float) -> None:
        """One finished request, from its RequestInfo."""
        family, provider = info.family or "other", info.provider
        child = self._child
        child(self.requests, family, info.model if provider else "", provider, str(status)).inc()
        child(self.duration, family).observe(seconds)
        first = info.first_byte if info.first_byte is not None else info.started + seconds
        child(self.first_byte, family).observe(max(first - info.started, 0.0))
        if info.credits is not None:
            child(self.credits, family, provider).inc(float(info.credits))
            child(self.tokens, family, provider, "input").inc(info.input_tokens)
            child(self.tokens, family, provider, "output").inc(info.output_tokens)

    def settle_queue_depth(self, depth: int) -> None:
        """This process's settlement queue depth, written when it changed (each write of a
        multiprocess value takes a lock and packs into its file; the depth is read at the end of
        every request and is nearly always what it was). Kept with the process id: a forked
        process has a file of its own, not yet written."""
        written = (_pid[0], depth)
        if written != self._queue_depth:
            self._queue_depth = written
            self.settle_queue.set(depth)

    def upstream_failed(self, provider: str, kind: str) -> None:
        self._child(self.upstream_failures, provider, kind).inc()

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
