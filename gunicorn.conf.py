"""gunicorn settings: server knobs only, no application imports."""

import os
import resource
import shutil
import tempfile

bind = os.environ.get("TOLLGATE_BIND", "127.0.0.1:8080")
worker_class = "gunicorn_worker.JsonErrorWorker"  # gevent, with JSON error answers
# One worker suits the embedded SQLite default and per-process memory limits; with PostgreSQL
# and Redis, raise it (WEB_CONCURRENCY) to about the number of cores.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
# Every open connection is a greenlet and, while it streams, two sockets (the client's and the
# upstream's). Streams spend their time waiting, so one worker holds thousands: the default is
# 10,000 per worker, or what the process's file limit (raised to its hard limit here) allows.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != _hard:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_hard, _hard))
_fd_room = (_hard - 200) // 2 if _hard != resource.RLIM_INFINITY else 10000
worker_connections = int(os.environ.get("TOLLGATE_WORKER_CONNECTIONS",
                                        str(max(min(10000, _fd_room), 100))))
backlog = 4096  # connections queued while every worker is at worker_connections
# Requests are parsed by gunicorn_h1c (picohttpparser, from gunicorn's author), which gunicorn
# uses in place of its Python parser: half the CPU for an SDK's request of 17 headers (30 us
# against 61). "fast" makes a missing or outdated build an error at start, not a slow worker.
http_parser = "fast"
timeout = 30  # worker liveness under gevent, not a request deadline
graceful_timeout = int(os.environ.get("TOLLGATE_GRACEFUL_TIMEOUT", "60"))  # lets streams drain
keepalive = 5
# Worker recycling is off by default: a recycled worker stops accepting, waits for its streams
# (up to graceful_timeout) and its successor boots, so requests stall, and it takes with it
# what a worker keeps in memory: memory:// rate-limit counts (limits would reset), the key
# cache, breakers without Redis. The gateway's memory is bounded without it (the key cache
# and the settlement queue have fixed sizes). TOLLGATE_MAX_REQUESTS=N turns it on, jittered
# by a tenth so that workers do not restart together. What a burst leaves a worker holding is
# handed back without it: gunicorn_worker.py trims the heap and, with several workers and the
# rate limits in Redis, retires a worker grown TOLLGATE_RETIRE_GROWTH_MB (64) over its least
# once it is quiet (one at a time, its streams finished; the others take the traffic).
max_requests = int(os.environ.get("TOLLGATE_MAX_REQUESTS", "0"))
max_requests_jitter = max_requests // 10
# The gateway writes one access line per request itself (with its request id, model, provider,
# tokens and credits). gunicorn's own access log is off unless asked for; it never logs query
# strings, where clients may pass keys as ?key=.
accesslog = os.environ.get("TOLLGATE_ACCESS_LOG") or None
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
# gunicorn's control socket (for gunicornc) defaults to one path per user, which several
# gateways on a host would share: off unless given a path of its own.
control_socket = os.environ.get("TOLLGATE_CONTROL_SOCKET", "")
control_socket_disable = not control_socket

# Prometheus multiprocess mode: every worker writes its metrics to files in one directory, and
# a scrape of any worker adds them up. The directory is made once per master (a reload, SIGHUP,
# keeps it) unless PROMETHEUS_MULTIPROC_DIR names one; it must be empty at start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="tollgate-metrics-")
    os.environ["TOLLGATE_METRICS_DIR_MADE"] = os.environ["PROMETHEUS_MULTIPROC_DIR"]


def on_starting(server):
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    os.makedirs(directory, exist_ok=True)
    for name in os.listdir(directory):  # figures of an earlier run would be added in
        if name.endswith(".db"):
            os.remove(os.path.join(directory, name))


def child_exit(server, worker):
    from prometheus_client import multiprocess  # not an app import: the metrics library only

    multiprocess.mark_process_dead(worker.pid)  # its live gauges stop counting


def on_exit(server):
    from gunicorn_worker import RetireTurn  # the worker class's module, loaded by the master

    try:
        os.remove(RetireTurn.path(server.pid))  # made by the first worker to retire
    except OSError:
        pass
    made = os.environ.get("TOLLGATE_METRICS_DIR_MADE")
    if made and made == os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shutil.rmtree(made, ignore_errors=True)
