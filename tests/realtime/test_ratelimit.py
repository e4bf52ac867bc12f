"""GCRA rate limits: exact behaviour in memory on an injected clock, and the same rules in
Redis, shared by every limiter that points at it and failing open when it is gone."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from realtime.ratelimit import SWEEP_ABOVE, MemoryRateLimiter, RedisRateLimiter, Rule
from tests.redis_server import RedisServer
from tests.server.realtime_clients import free_port

# 3 at once, then one a second.
RULE = Rule(limit=3, per_s=3.0)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _allowed(limiter: MemoryRateLimiter | RedisRateLimiter, key: str, rule: Rule) -> int:
    """How many hits in a row pass before the first denial (at most 100)."""
    for count in range(100):
        if not (await limiter.hit(key, rule)).allowed:
            return count
    return 100


# ------------------------------------------------------------------------------------------
# Memory, on a clock the test moves


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def memory(clock: Clock) -> MemoryRateLimiter:
    return MemoryRateLimiter(clock)


async def test_a_fresh_key_takes_the_burst_then_waits_one_interval(
    memory: MemoryRateLimiter,
) -> None:
    assert await _allowed(memory, "k", RULE) == 3
    denied = await memory.hit("k", RULE)
    assert not denied.allowed and denied.retry_after_s == pytest.approx(1.0)


async def test_the_sustained_rate_is_one_hit_per_interval(
    memory: MemoryRateLimiter, clock: Clock
) -> None:
    await _allowed(memory, "k", RULE)
    for _ in range(5):
        clock.now += 0.5
        assert not (await memory.hit("k", RULE)).allowed
        clock.now += 0.5
        assert (await memory.hit("k", RULE)).allowed
        assert not (await memory.hit("k", RULE)).allowed


async def test_denied_hits_spend_nothing(memory: MemoryRateLimiter, clock: Clock) -> None:
    await _allowed(memory, "k", RULE)
    for _ in range(50):
        await memory.hit("k", RULE)
    first = await memory.hit("k", RULE)
    clock.now += first.retry_after_s
    assert (await memory.hit("k", RULE)).allowed


async def test_an_idle_key_gets_its_whole_burst_back(
    memory: MemoryRateLimiter, clock: Clock
) -> None:
    await _allowed(memory, "k", RULE)
    clock.now += RULE.per_s - 0.01
    assert await _allowed(memory, "k", RULE) == 2, "not yet whole"
    clock.now += RULE.per_s
    assert await _allowed(memory, "k", RULE) == 3


async def test_a_burst_smaller_than_the_limit(memory: MemoryRateLimiter) -> None:
    rule = Rule(limit=30, per_s=60.0, burst=10)
    assert await _allowed(memory, "k", rule) == 10
    assert (await memory.hit("k", rule)).retry_after_s == pytest.approx(2.0)


async def test_keys_are_independent(memory: MemoryRateLimiter) -> None:
    await _allowed(memory, "a", RULE)
    assert await _allowed(memory, "b", RULE) == 3


async def test_the_sweep_bounds_the_table(memory: MemoryRateLimiter, clock: Clock) -> None:
    """A stream of new keys (random conversation ids) must not grow memory for good: keys
    whose TAT has passed are dropped."""
    for i in range(3 * SWEEP_ABOVE):
        await memory.hit(f"key-{i}", RULE)
        clock.now += RULE.interval_s  # each key is spent by the time the next comes
    assert len(memory) <= SWEEP_ABOVE


async def test_the_sweep_keeps_live_keys(memory: MemoryRateLimiter, clock: Clock) -> None:
    await _allowed(memory, "busy", RULE)
    for i in range(SWEEP_ABOVE + 1):
        await memory.hit(f"key-{i}", RULE)
    clock.now += 2 * RULE.interval_s
    for i in range(SWEEP_ABOVE + 1):
        await memory.hit(f"other-{i}", RULE)
    assert len(memory) <= 2 * SWEEP_ABOVE + 2
    assert await _allowed(memory, "busy", RULE) == 2, "the sweep forgot a live key"


@pytest.mark.parametrize(
    ("limit", "per_s", "burst"), [(0, 1.0, None), (1, 0.0, None), (1, -1.0, None), (1, 1.0, 0)]
)
def test_a_rule_must_be_positive(limit: int, per_s: float, burst: int | None) -> None:
    with pytest.raises(ValueError, match="positive"):
        Rule(limit, per_s, burst)


# ------------------------------------------------------------------------------------------
# Redis: real time, so intervals of a second, far above a local round trip


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_server.url, socket_timeout=None)
    yield client
    await client.aclose()


async def test_redis_takes_the_burst_then_waits_one_interval(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis)
    started = time.monotonic()
    assert await _allowed(limiter, "k", RULE) == 3
    denied = await limiter.hit("k", RULE)
    elapsed = time.monotonic() - started
    assert not denied.allowed
    assert RULE.interval_s - elapsed - 0.01 <= denied.retry_after_s <= RULE.interval_s
    # Waiting out exactly the answer (plus a margin for the clock's grain) is enough.
    await asyncio.sleep(denied.retry_after_s + 0.05)
    assert (await limiter.hit("k", RULE)).allowed
    assert not (await limiter.hit("k", RULE)).allowed


async def test_redis_forgets_a_key_once_its_budget_is_whole(redis: Redis) -> None:
    limiter = RedisRateLimiter(redis)
    await limiter.hit("k", RULE)
    assert 0 < await redis.pttl("liveop:k") <= RULE.interval_s * 1000
    for _ in range(5):
        await limiter.hit("k", RULE)
    assert 0 < await redis.pttl("liveop:k") <= RULE.per_s * 1000


async def test_two_limiters_on_one_redis_share_every_key(
    redis: Redis, redis_server: RedisServer
) -> None:
    """As two processes would: their own clients, one budget."""
    other = Redis.from_url(redis_server.url, socket_timeout=None)
    try:
        first, second = RedisRateLimiter(redis), RedisRateLimiter(other)
        assert (await first.hit("k", RULE)).allowed
        assert (await second.hit("k", RULE)).allowed
        assert (await first.hit("k", RULE)).allowed
        assert not (await second.hit("k", RULE)).allowed
        assert not (await first.hit("k", RULE)).allowed
        apart = RedisRateLimiter(other, key_prefix="elsewhere:")
        assert (await apart.hit("k", RULE)).allowed, "another deployment's prefix is separate"
    finally:
        await other.aclose()


async def test_redis_survives_a_restart_that_drops_the_script(
    redis: Redis, redis_server: RedisServer
) -> None:
    limiter = RedisRateLimiter(redis)
    await limiter.hit("k", RULE)
    await asyncio.to_thread(redis_server.restart)
    # The first call after the restart may find its pooled connection dead (fail open); the
    # client reconnects and loads the script again.
    await limiter.hit("warm-up", RULE)
    assert await _allowed(limiter, "k", RULE) == 3


async def test_an_unreachable_redis_fails_open_and_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    nothing = Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=None)
    try:
        limiter = RedisRateLimiter(nothing)
        with caplog.at_level(logging.WARNING, logger="realtime.ratelimit"):
            for _ in range(10):
                assert (await limiter.hit("k", RULE)).allowed
        assert len([r for r in caplog.records if "Redis unavailable" in r.message]) == 1
    finally:
        await nothing.aclose()


async def test_a_frozen_redis_fails_open_within_the_bound(
    redis: Redis, redis_server: RedisServer
) -> None:
    # Slow enough that the frozen seconds cannot refill it.
    rule = Rule(limit=3, per_s=60.0)
    limiter = RedisRateLimiter(redis)
    assert await _allowed(limiter, "k", rule) == 3
    redis_server.freeze()
    try:
        started = time.monotonic()
        assert (await limiter.hit("k", rule)).allowed
        assert time.monotonic() - started < 5.0
    finally:
        redis_server.thaw()
    # Back to limiting once Redis answers: the spent budget was kept all along.
    assert not (await limiter.hit("k", rule)).allowed
