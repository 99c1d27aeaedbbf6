"""Routing units: provider order by priority and weight, breakers in memory and in Redis,
key pools and Retry-After parsing."""

import uuid
from collections import Counter

import pytest

from providers.breaker import CLOSED, HALF_OPEN, OPEN, MemoryBreakers, make_breakers
from providers.keypool import ApiKey, KeyPool, retry_after_seconds
from providers.openai import OpenAIProvider
from providers.registry import Route, parse_upstream
from providers.routing import order
from tests.conftest import REDIS_URL


def route(name, **extra):
    upstream = parse_upstream({"name": name, "type": "openai", "base_url": "http://x/v1",
                               "models": ["m"], **extra}, {})
    return Route(OpenAIProvider(upstream, None, timeout=(1, 1)), "m")


def names(routes):
    return [r.provider.upstream.name for r in routes]


def test_config_order_without_weights_and_priority_first():
    routes = [route("a"), route("b", priority=1), route("c")]
    assert names(order(routes)) == ["a", "c", "b"]


def test_weights_spread_first_choices():
    routes = [route("heavy", weight=3), route("light", weight=1), route("backup", priority=5)]
    firsts = Counter(names(order(routes))[0] for _ in range(4000))
    assert set(firsts) == {"heavy", "light"}
    assert 0.70 < firsts["heavy"] / 4000 < 0.80
    assert all(names(order(routes))[-1] == "backup" for _ in range(50))


@pytest.mark.parametrize("bad", [{"weight": 0}, {"weight": "x"}, {"priority": True},
                                 {"base_urls": "http://x"}, {"base_urls": ["ftp://x"]}])
def test_bad_routing_settings_are_refused(bad):
    with pytest.raises(ValueError):
        route("p", **bad)


@pytest.fixture(params=["memory"] + (["redis"] if REDIS_URL else []))
def breakers(request):
    config = {"BREAKER_FAILURES": 2, "BREAKER_OPEN_SECONDS": 30.0, "UPSTREAM_URL_COOLDOWN": 5.0,
              "BREAKER_STORAGE_URI": REDIS_URL if request.param == "redis" else "memory://",
              "BREAKER_KEY_PREFIX": f"tollgate-test-{uuid.uuid4().hex}",
              "BREAKER_SYNC_SECONDS": 0.0}
    return lambda: make_breakers(config)


def test_breaker_cycle(breakers):
    board, other = breakers(), breakers()  # two workers (shared only through Redis)
    url = "http://u/v1"
    assert board.check(url).allowed and board.state(url) == CLOSED
    board.failed(url)
    verdict = board.check(url)
    assert verdict.allowed and verdict.cooling
    board.failed(url)
    assert not board.check(url).allowed and board.state(url) == OPEN
    if type(board) is not MemoryBreakers:
        assert not other.check(url).allowed  # shared: the other worker skips it too
    board.succeeded(url)
    assert board.check(url).allowed and board.state(url) == CLOSED


@pytest.mark.skipif(not REDIS_URL, reason="needs Redis")
def test_a_stale_shared_state_is_read_once_while_others_go_on():
    """While one caller reads a URL's state from Redis, others use the last read, not a read
    each. Redis is paused for a moment so that the first read is still out when they come."""
    import threading
    import time

    import redis

    board = make_breakers({"BREAKER_FAILURES": 2, "BREAKER_OPEN_SECONDS": 30.0,
                           "UPSTREAM_URL_COOLDOWN": 5.0, "BREAKER_STORAGE_URI": REDIS_URL,
                           "BREAKER_KEY_PREFIX": f"tollgate-test-{uuid.uuid4().hex}",
                           "BREAKER_SYNC_SECONDS": 0.05})
    admin = redis.Redis.from_url(REDIS_URL)

    def reads():
        return admin.info("commandstats").get("cmdstat_hgetall", {}).get("calls", 0)

    url = "http://u/v1"
    assert board.check(url).allowed  # the first read
    time.sleep(0.06)  # stale now
    before = reads()
    admin.execute_command("CLIENT", "PAUSE", "150", "ALL")
    reader = threading.Thread(target=board.check, args=(url,))
    reader.start()
    while url not in board._reading and reader.is_alive():
        time.sleep(0.001)  # until its read is out (held by the pause), or done
    started = time.monotonic()
    assert all(board.check(url).allowed for _ in range(20))
    assert time.monotonic() - started < 0.1  # none of them waited for Redis
    reader.join(5)
    assert reads() - before == 1
    time.sleep(0.06)
    board.check(url)  # stale again, nobody reading: this caller reads
    assert reads() - before == 2


def test_half_open_lets_one_trial_through():
    board = MemoryBreakers(threshold=1, open_seconds=10.0, cooldown=0.0)
    board.failed("u", now=100.0)
    assert not board.check("u", now=105.0).allowed
    assert board.check("u", now=111.0).allowed  # the trial
    assert board.state("u", now=111.0) == HALF_OPEN
    assert not board.check("u", now=111.5).allowed  # only one
    board.failed("u", now=112.0)
    assert not board.check("u", now=115.0).allowed


def test_redis_down_falls_back_to_memory():
    board = make_breakers({"BREAKER_FAILURES": 1, "BREAKER_OPEN_SECONDS": 30.0,
                           "UPSTREAM_URL_COOLDOWN": 0.0, "BREAKER_SYNC_SECONDS": 0.0,
                           "BREAKER_STORAGE_URI": "redis://127.0.0.1:1/0",
                           "BREAKER_KEY_PREFIX": "x"})
    assert board.check("u").allowed
    board.failed("u")
    assert not board.check("u").allowed  # this worker's own view


def test_key_pool_rests_and_retires():
    pool = KeyPool("p", [ApiKey("A", "a"), ApiKey("B", "b")], retire_seconds=100.0)
    assert {pool.order()[0].env for _ in range(4)} == {"A", "B"}
    pool.rest(ApiKey("A", "a"), 50)
    assert [k.env for k in pool.order()] == ["B"]
    pool.retire(ApiKey("B", "b"))
    assert pool.order() == []


@pytest.mark.parametrize("value, seconds", [("7", 7.0), (None, 30.0), ("soon", 30.0),
                                            ("-5", 0.0), ("999999", 3600.0),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)])
def test_retry_after(value, seconds):
    assert retry_after_seconds(value, 30.0) == seconds


def test_a_half_open_trial_is_not_taken_by_a_request_that_cannot_use_it():
    """A URL whose trial is due is checked (and its one trial claimed) only when an attempt
    will follow: not once the budget is spent, nor when every key is resting."""
    import time

    from errors import UpstreamUnavailable
    from providers.routing import Router
    r = route("p", base_urls=["http://one/v1", "http://two/v1"])
    board = MemoryBreakers(threshold=1, open_seconds=10.0, cooldown=0.0)
    board.failed("http://two/v1", now=time.monotonic() - 20)  # open, its trial due
    router = Router([r.provider], board, max_attempts=1)
    plan = router.plan([r])
    for attempt in plan:  # one attempt at the first URL, refused: the budget is spent
        plan.failed(attempt, UpstreamUnavailable("refused", fault="connect"))
    assert plan.attempts == 1
    assert board.check("http://two/v1").allowed  # its trial is still there to take
    board.failed("http://two/v1", now=time.monotonic() - 20)
    router.pools["p"].rest(router.pools["p"].order()[0], 60)  # the only key rests
    plan = router.plan([r])
    assert list(plan) == [] and plan.attempts == 0
    assert board.check("http://two/v1").allowed
