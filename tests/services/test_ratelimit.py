"""services.ratelimit against real `limits` storage: failed-auth counting, the storage-down
policy and its back-off, and which limit gets reported."""

import time

import pytest
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

from errors import RateLimited, RateLimitUnavailable
from services.ratelimit import AuthFailures, Standing, StorageGuard, Windows, tightest
from tests.conftest import STORAGES, limit_storage
from tests.live_server import free_port


@pytest.fixture(params=STORAGES)
def strategy(request):
    settings = limit_storage(request.param)
    options = {"wrap_exceptions": True, **settings.get("RATELIMIT_STORAGE_OPTIONS", {})}
    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], **options)
    yield MovingWindowRateLimiter(storage)
    storage.reset()


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def dead_strategy():
    return MovingWindowRateLimiter(
        storage_from_string(f"redis://127.0.0.1:{free_port()}/0", wrap_exceptions=True))


def test_auth_failures_refuse_an_address_past_the_limit(strategy):
    failures = AuthFailures(lambda: strategy, "2/minute", StorageGuard("open", 5))
    for _ in range(2):
        failures.check("10.0.0.1")
        failures.record("10.0.0.1")
    with pytest.raises(RateLimited) as info:
        failures.check("10.0.0.1")
    assert 1 <= int(info.value.headers["Retry-After"]) <= 60
    failures.check("10.0.0.2")  # other addresses are unaffected


def test_no_auth_failure_limit_configured(strategy):
    failures = AuthFailures(lambda: strategy, "", StorageGuard("open", 5))
    for _ in range(50):
        failures.record("10.0.0.1")
    failures.check("10.0.0.1")


def test_open_policy_backs_off_then_retries():
    clock = Clock()
    guard = StorageGuard("open", retry_after=5, clock=clock)
    strategy = dead_strategy()
    item = parse("1/minute")
    assert guard.call(strategy.hit, item, "k") is None
    assert guard.down and guard.errors == 1
    assert guard.call(strategy.hit, item, "k") is None
    assert guard.errors == 1 and guard.degraded == 2, "storage was tried while backing off"
    clock.now += 5
    assert not guard.down
    guard.call(strategy.hit, item, "k")
    assert guard.errors == 2


def test_closed_policy_raises_503():
    guard = StorageGuard("closed", retry_after=2.5)
    with pytest.raises(RateLimitUnavailable) as info:
        guard.call(dead_strategy().hit, parse("1/minute"), "k")
    assert info.value.status == 503 and info.value.headers["Retry-After"] == "3"


def test_guard_passes_results_and_other_errors_through():
    guard = StorageGuard("closed", retry_after=1)
    assert guard.call(lambda: 7) == 7
    with pytest.raises(KeyError):
        guard.call({}.__getitem__, "x")
    assert guard.errors == 0


def test_policy_must_be_known():
    with pytest.raises(ValueError):
        StorageGuard("maybe", 1)


def test_tightest_is_the_fewest_remaining_then_the_later_reset():
    minute, hour = Standing(10, 4, 1060.0), Standing(200, 4, 4600.0)
    assert tightest([minute, hour]) is hour
    assert tightest([Standing(10, 3, 1060.0), hour]).limit == 10
    assert tightest([]) is None
    assert Standing(10, 0, 1000.2).retry_after(now=1000.0) == 1
    assert Standing(10, 0, 1030.5).retry_after(now=1000.0) == 31


@pytest.fixture(params=STORAGES)
def storage(request):
    settings = limit_storage(request.param)
    options = {"wrap_exceptions": True, **settings.get("RATELIMIT_STORAGE_OPTIONS", {})}
    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], **options)
    yield storage
    storage.reset()


def test_windows_count_all_limits_at_once_and_stop_at_the_first_full_one(storage):
    minute, hour = parse("3/minute"), parse("4/hour")
    windows, strategy = Windows(lambda: storage), MovingWindowRateLimiter(storage)
    limits = [(minute, ("k", "family-chat")), (hour, ("k", "all-families"))]
    on_redis = hasattr(storage, "get_connection")  # memory: LocalWindows, limits' storage unused
    for remaining in (2, 1, 0):
        refused, standings = windows.hit(limits)
        assert refused is None and [s.remaining for s in standings] == [remaining, remaining + 1]
        read = windows.read(limits)  # a read without counting agrees
        assert [(r.remaining, round(r.reset_at)) for r in read] == [
            (s.remaining, round(s.reset_at)) for s in standings]
        # on Redis the same keys `limits` reads: its own view agrees with what the headers say
        for (item, ids), standing in zip(limits, standings, strict=True):
            if on_redis:
                stats = strategy.get_window_stats(item, *ids)
                assert (stats.remaining, round(stats.reset_time)) == (standing.remaining,
                                                                      round(standing.reset_at))
    refused, standings = windows.hit(limits)
    assert refused is minute and len(standings) == 1 and standings[0].remaining == 0
    assert [s.remaining for s in windows.read(limits)] == [0, 1]  # the hour: not counted
    if on_redis:
        assert strategy.get_window_stats(hour, "k", "all-families").remaining == 1
        assert not strategy.hit(minute, "k", "family-chat")  # and limits' own check agrees


def test_windows_drop_entries_that_left_the_window(storage):
    """Old hits (written here as `limits` writes them) do not count; past the pruning cap the
    count is found by bisection, and a full window is refused either way."""
    item = parse("1500/hour")
    key = item.key_for("old", "s")
    hour_ago = time.time() - 3700
    if hasattr(storage, "get_connection"):
        client = storage.get_connection()
        client.lpush(storage.prefixed_key(key), *[hour_ago - i / 10 for i in range(1400, 0, -1)])
        client.lpush(storage.prefixed_key(key), *[time.time() - 10] * 1000)
        windows = Windows(lambda: storage)
    else:  # LocalWindows: the same hits, made at those times
        now = [hour_ago]
        windows = Windows(lambda: storage, clock=lambda: now[0])
        for _ in range(1400):
            assert windows.hit([(item, ("old", "s"))])[0] is None
        now[0] = time.time() - 10
        for _ in range(1000):
            assert windows.hit([(item, ("old", "s"))])[0] is None
        now[0] = time.time()
    refused, (standing,) = windows.hit([(item, ("old", "s"))])
    assert refused is None and standing.remaining == 1500 - 1001
    for _ in range(499):
        assert windows.hit([(item, ("old", "s"))])[0] is None
    assert windows.hit([(item, ("old", "s"))])[0] is item


def test_local_windows_forget_callers_gone_quiet():
    """LocalWindows keeps a key while its hits are within the window, and drops it at the next
    sweep once they have all left it: memory follows the callers active lately."""
    from services.ratelimit import LocalWindows
    now = [1000.0]
    local = LocalWindows(clock=lambda: now[0])
    minute = parse("2/minute")
    assert local.hit([(minute, "a")])[0] is None
    assert local.hit([(minute, "a")])[0] is None
    assert local.hit([(minute, "a")])[0] is minute  # full: refused, not counted
    now[0] += 59.9
    assert local.read(minute, "a").remaining == 0
    now[0] += 0.2  # the two hits left the window: room again
    assert local.read(minute, "a").remaining == 2 and local.hit([(minute, "b")])[0] is None
    now[0] += LocalWindows.SWEEP_EVERY + 1
    local.hit([(minute, "c")])  # sweeps: a and b are gone, c stays
    assert set(local._hits) == {"c"}


@pytest.mark.skipif("redis" not in STORAGES, reason="needs TEST_REDIS_URL")
def test_windows_on_redis_keep_one_connection_and_survive_its_loss():
    """The script runs over a connection the windows keep: three requests use one connection.
    When the server drops it (a restart) the next request is counted once, on a new connection;
    when the server forgets the script (SCRIPT FLUSH) it is loaded again."""
    settings = limit_storage("redis")
    name = "tollgate-test-" + settings["RATELIMIT_STORAGE_OPTIONS"]["key_prefix"][-8:]
    storage = storage_from_string(settings["RATELIMIT_STORAGE_URI"], wrap_exceptions=True,
                                  client_name=name,
                                  **settings["RATELIMIT_STORAGE_OPTIONS"])
    other = storage_from_string(settings["RATELIMIT_STORAGE_URI"],
                                **settings["RATELIMIT_STORAGE_OPTIONS"])  # same keys, unnamed
    admin = other.get_connection()
    try:
        windows, strategy = Windows(lambda: storage), MovingWindowRateLimiter(other)
        item = parse("10/minute")

        def ours():
            return [c for c in admin.client_list() if c["name"] == name]

        def hit():
            refused, (standing,) = windows.hit([(item, ("conn", "s"))])
            assert refused is None
            return standing.remaining

        assert [hit(), hit(), hit()] == [9, 8, 7]
        (conn,) = ours()
        assert conn["cmd"] == "evalsha"
        admin.client_kill_filter(_id=conn["id"])
        assert hit() == 6
        assert strategy.get_window_stats(item, "conn", "s").remaining == 6  # counted once
        (fresh,) = ours()
        assert fresh["id"] != conn["id"]
        admin.script_flush()
        assert hit() == 5
        assert hit() == 4
    finally:
        storage.reset()
        storage.get_connection().connection_pool.disconnect()
