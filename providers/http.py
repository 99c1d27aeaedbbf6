"""Shared HTTP plumbing for provider adapters: pooled sessions and upstream error mapping."""

import json

import requests
from requests.adapters import HTTPAdapter

from errors import UpstreamError, UpstreamTimeout, UpstreamUnavailable, redact


class UpstreamRateLimited(UpstreamUnavailable):
    """The upstream said 429; another upstream for the same model may still answer."""

    status, kind, code = 429, "rate_limit", "upstream_rate_limited"


# Upstream 4xx statuses passed on to the client, with the kind of error they are.
PASSED_ON = {400: "invalid_request", 404: "not_found", 409: "invalid_request",
             413: "invalid_request", 422: "invalid_request"}
MAX_ERROR_BODY = 64 * 1024


def pooled_session(pool_size: int) -> requests.Session:
    """A requests session whose per-host pool fits the worker's concurrency."""
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.trust_env = False  # no proxies or .netrc credentials picked up from the environment
    return session


def send(session, url, *, body: bytes, headers: dict, timeout, upstream):
    """POST upstream; returns a 2xx response with its body unread, or raises a GatewayError.

    The caller reads the body (`.content` or `.raw.read1`) and closes the response.
    """
    try:
        resp = session.post(url, data=body, headers=headers, stream=True, timeout=timeout)
    except requests.Timeout as exc:
        raise UpstreamTimeout(f"provider {upstream.name} did not answer in time") from exc
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} could not be reached") from exc
    if resp.status_code < 400:
        return resp
    try:
        raise upstream_error(resp, upstream)
    finally:
        resp.close()


def upstream_error(resp, upstream):
    """Turn a non-2xx upstream response into the error the client should see."""
    status = resp.status_code
    message, code = _error_detail(resp)
    message = redact(message, upstream.api_key)
    name = upstream.name
    # Gemini reports a bad key as 400 INVALID_ARGUMENT with reason API_KEY_INVALID.
    if status in (401, 403) or code == "API_KEY_INVALID":
        return UpstreamError(f"provider {name} rejected the gateway's credentials",
                             code="upstream_auth_failed")
    if status == 429:
        if code in ("insufficient_quota", "credit_balance_exhausted", "billing_hard_limit_reached"):
            return UpstreamUnavailable(f"provider {name} is out of quota", status=503,
                                       code="upstream_quota_exhausted",
                                       headers={"x-should-retry": "false"})
        retry = resp.headers.get("retry-after")
        return UpstreamRateLimited(f"provider {name} is rate limiting requests",
                                   headers={"Retry-After": retry} if retry else None)
    if status >= 500:
        return UpstreamUnavailable(f"provider {name} failed with HTTP {status}",
                                   status=503 if status in (503, 529) else 502)
    kind_status = status if status in PASSED_ON else 400
    err = UpstreamError(message or f"provider {name} refused the request (HTTP {status})",
                        status=kind_status, code=code)
    err.kind = PASSED_ON.get(kind_status, "invalid_request")
    return err


def _error_detail(resp) -> tuple[str, str | None]:
    """The message and code of an upstream error body, in any of the three vendor shapes."""
    try:
        data = json.loads(resp.raw.read(MAX_ERROR_BODY, decode_content=True))
    except Exception:  # a body that is not JSON carries nothing we pass on
        return "", None
    err = data[0] if isinstance(data, list) and data else data  # Gemini may wrap it in [...]
    err = err.get("error") if isinstance(err, dict) else None
    if isinstance(err, dict):
        code = err.get("code")
        if not isinstance(code, str):  # Gemini's code is the HTTP status; its status is the name
            code = _reason(err) or err.get("type") or err.get("status")
        return str(err.get("message") or ""), str(code) if code is not None else None
    if isinstance(err, str):
        return err, None
    return "", None


def _reason(err: dict) -> str | None:
    """The ErrorInfo reason among a Google error's details (API_KEY_INVALID, …)."""
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason"):
            return str(detail["reason"])
    return None


def read_count(resp, field: str, upstream) -> int:
    """An upstream token count from a JSON answer's `field`; closes the response."""
    try:
        return int(resp.json()[field])
    except (ValueError, KeyError, TypeError) as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} sent an unreadable "
                                  "token count") from exc
    finally:
        resp.close()


def read_json(resp, upstream) -> tuple[bytes, object]:
    """The whole body of a 2xx answer and its JSON; closes the response. A body that breaks
    off, is not JSON, or is an error object sent with a 2xx status raises a GatewayError."""
    try:
        content = resp.content
    except requests.Timeout as exc:
        raise UpstreamTimeout(f"provider {upstream.name} stopped sending") from exc
    except requests.RequestException as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} broke off its answer") from exc
    finally:
        resp.close()
    try:
        data = json.loads(content)
    except ValueError as exc:
        raise UpstreamUnavailable(f"provider {upstream.name} sent an unreadable answer") from exc
    if isinstance(data, dict) and data.get("error"):
        err = data["error"]
        message = err.get("message", "") if isinstance(err, dict) else str(err)
        raise UpstreamError(redact(f"provider {upstream.name} failed: {message}",
                                   upstream.api_key))
    return content, data
