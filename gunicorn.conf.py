"""gunicorn settings: server knobs only, no application imports."""

import os

bind = os.environ.get("TOLLGATE_BIND", "127.0.0.1:8080")
worker_class = "gunicorn_worker.JsonErrorWorker"  # gevent, with JSON error answers
# One worker suits the embedded SQLite default and per-process memory limits; with PostgreSQL
# and Redis, raise it (WEB_CONCURRENCY) to about the number of cores.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_connections = int(os.environ.get("TOLLGATE_WORKER_CONNECTIONS", "1000"))
timeout = 30  # worker liveness under gevent, not a request deadline
graceful_timeout = int(os.environ.get("TOLLGATE_GRACEFUL_TIMEOUT", "60"))  # lets streams drain
keepalive = 5
max_requests = 20000
max_requests_jitter = 2000
# No query string in access logs: clients may pass keys as ?key=.
accesslog = os.environ.get("TOLLGATE_ACCESS_LOG", "-")
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'
# gunicorn's control socket (for gunicornc) defaults to one path per user, which several
# gateways on a host would share: off unless given a path of its own.
control_socket = os.environ.get("TOLLGATE_CONTROL_SOCKET", "")
control_socket_disable = not control_socket
