"""Operations endpoints: liveness, readiness and Prometheus metrics. Unauthenticated by API key,
never rate-limited, logged at debug level only.

- `GET /healthz`: 200 while the process serves requests.
- `GET /readyz`: 200 when the database (and Redis, when configured) answer within
  `ready_timeout` seconds; else 503 naming the failing part (never a URL or a secret).
- `GET /metrics`: the Prometheus text format, every worker's figures added up; needs
  `Authorization: Bearer <metrics_token>`, and is off (404) while no token is set.
"""

import hmac
import threading

from flask import Blueprint, Response, current_app, jsonify, request
from sqlalchemy import text

from errors import AuthenticationFailed, NotFound

bp = Blueprint("ops", __name__)


@bp.get("/healthz")
def healthz():
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    checks = current_app.extensions["readiness"]
    results = {name: check.run() for name, check in checks.items()}
    failing = [name for name, ok in results.items() if not ok]
    body = {"status": "unavailable" if failing else "ok",
            "checks": {name: "ok" if ok else "unavailable" for name, ok in results.items()}}
    if failing:
        body["failing"] = failing
        response = jsonify(body)
        response.status_code = 503
        response.headers["Retry-After"] = "5"
        return response
    return jsonify(body)


@bp.get("/metrics")
def metrics():
    token = current_app.config["METRICS_TOKEN"]
    if not token:
        raise NotFound(f"Invalid URL ({request.method} {request.path})")
    auth = request.headers.get("Authorization", "")
    given = auth[7:].strip() if auth[:7].lower() == "bearer " else ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise AuthenticationFailed("GET /metrics needs 'Authorization: Bearer <metrics_token>'.")
    body, content_type = current_app.extensions["metrics"].exposition()
    return Response(body, content_type=content_type)


class Check:
    """One dependency probe, bounded in time: it runs in a thread of its own (a greenlet under
    gevent) and counts as failed when it has not answered within `timeout`. While a probe is
    still hanging, later ones fail at once rather than piling up."""

    def __init__(self, probe, timeout: float):
        self.probe, self.timeout = probe, timeout
        self._pending = None

    def run(self) -> bool:
        if self._pending is not None and self._pending.is_alive():
            return False
        outcome = {}

        def attempt():
            try:
                self.probe()
                outcome["ok"] = True
            except Exception:  # unreachable, refused, timed out: not ready
                outcome["ok"] = False

        self._pending = threading.Thread(target=attempt, daemon=True, name="readyz")
        self._pending.start()
        self._pending.join(self.timeout)
        return outcome.get("ok", False)


def readiness_checks(app) -> dict:
    """The probes /readyz runs: the database, and Redis when the gateway uses it."""
    timeout = app.config["READY_TIMEOUT"]
    engine = app.extensions["billing"].engine

    def database():
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    checks = {"database": Check(database, timeout)}
    uris = {app.config["RATELIMIT_STORAGE_URI"], app.config["BREAKER_STORAGE_URI"]}
    redis_uris = [u for u in uris if u.startswith(("redis://", "rediss://", "unix://"))]
    if redis_uris:
        import redis  # only with Redis configured

        clients = [redis.Redis.from_url(u, socket_connect_timeout=timeout,
                                        socket_timeout=timeout) for u in redis_uris]
        checks["redis"] = Check(lambda: [c.ping() for c in clients], timeout)
    return checks
