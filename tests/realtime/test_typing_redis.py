"""Typing indicators on Redis keys that expire on their own, shared by every process."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from realtime.backends.redis import RedisBroker
from realtime.typing_indicators import RedisTypingIndicators
from tests.realtime.conftest import Inbox, RedisServer, eventually

# Short enough to watch a flag expire without slowing the suite.
TTL_S = 0.3


@pytest.fixture
async def redis(redis_server: RedisServer) -> AsyncIterator[Redis]:
    # No socket_timeout, as RedisTypingIndicators asks: each call bounds itself.
    client = Redis.from_url(redis_server.url, socket_timeout=None)
    yield client
    await client.aclose()


@pytest.fixture
async def broker(redis_server: RedisServer) -> AsyncIterator[RedisBroker]:
    """The process's broker, whose publishing connection carries the clears."""
    made = RedisBroker(redis_server.url)
    yield made
    await made.close()


async def test_a_flag_holds_for_the_ttl_then_expires(redis: Redis, broker: RedisBroker) -> None:
    typing = RedisTypingIndicators(redis, broker, ttl_s=TTL_S)
    assert not await typing.is_typing("c1", "visitor")

    await typing.touch("c1", "visitor")
    touched = time.monotonic()
    assert await typing.is_typing("c1", "visitor")

    async def expired() -> bool:
        return not await typing.is_typing("c1", "visitor")

    await eventually(expired, "the flag to expire")
    assert time.monotonic() - touched >= TTL_S * 0.9


async def test_a_heartbeat_extends_the_flag(redis: Redis, broker: RedisBroker) -> None:
    typing = RedisTypingIndicators(redis, broker, ttl_s=TTL_S)
    await typing.touch("c1", "operator")
    # Elapsed time is what is under test here, so these sleeps are the point.
    await asyncio.sleep(TTL_S * 0.6)
    await typing.touch("c1", "operator")
    await asyncio.sleep(TTL_S * 0.6)
    assert await typing.is_typing("c1", "operator"), "expired despite the heartbeat"
    assert 0 < await redis.pttl("liveop:typing:c1:operator") <= TTL_S * 1000


async def test_flags_are_isolated_by_conversation_side_and_prefix(
    redis: Redis, broker: RedisBroker
) -> None:
    typing = RedisTypingIndicators(redis, broker)
    other_deployment = RedisTypingIndicators(redis, broker, key_prefix="other:typing:")
    await typing.touch("c1", "visitor")

    assert await typing.is_typing("c1", "visitor")
    assert not await typing.is_typing("c1", "operator")
    assert not await typing.is_typing("c2", "visitor")
    assert not await other_deployment.is_typing("c1", "visitor")


async def test_two_processes_see_each_others_flags(
    redis_server: RedisServer, redis: Redis, broker: RedisBroker
) -> None:
    other_process = Redis.from_url(redis_server.url, socket_timeout=None)
    try:
        await RedisTypingIndicators(redis, broker).touch("c1", "visitor")
        assert await RedisTypingIndicators(other_process, broker).is_typing("c1", "visitor")
    finally:
        await other_process.aclose()


async def test_a_redis_outage_reads_as_nobody_typing(
    redis_server: RedisServer,
    redis: Redis,
    broker: RedisBroker,
    caplog: pytest.LogCaptureFixture,
) -> None:
    typing = RedisTypingIndicators(redis, broker)
    await typing.touch("c1", "visitor")
    assert await typing.is_typing("c1", "visitor")

    redis_server.stop()
    await typing.touch("c1", "visitor")
    assert not await typing.is_typing("c1", "visitor")
    assert not await typing.is_typing("c1", "visitor")
    outage_warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
    assert len(outage_warnings) == 1, "one warning per outage, not one per call"

    redis_server.start()
    await typing.touch("c1", "visitor")
    assert await typing.is_typing("c1", "visitor")


async def test_a_frozen_redis_reads_as_nobody_typing_within_a_bound(
    redis_server: RedisServer, redis: Redis, broker: RedisBroker
) -> None:
    typing = RedisTypingIndicators(redis, broker)
    await typing.touch("c1", "visitor")
    redis_server.freeze()
    try:
        started = time.monotonic()
        assert not await typing.is_typing("c1", "visitor")
        assert time.monotonic() - started < 2
    finally:
        redis_server.thaw()


async def test_clear_ends_a_redis_indicator_at_once(redis: Redis, broker: RedisBroker) -> None:
    typing = RedisTypingIndicators(redis, broker)
    await typing.touch("c1", "visitor")
    assert await typing.clear("c1", "visitor")
    assert not await typing.is_typing("c1", "visitor")


async def test_a_clear_lands_before_the_publish_after_it_in_another_process(
    redis_server: RedisServer, redis: Redis, broker: RedisBroker
) -> None:
    """Process A touched the indicator and listens to the conversation; process B stores the
    typist's message, clears, and rings. When A hears the ring, A already reads nobody
    typing: the clear is not skipped for want of B having seen the touch, and it cannot be
    overtaken by the message it ends."""
    inbox = Inbox()
    await broker.start(inbox.on_message, inbox.on_reset)
    await broker.subscribe("conv:c1")
    in_a = RedisTypingIndicators(redis, broker)
    b_redis = Redis.from_url(redis_server.url, socket_timeout=None)
    b_broker = RedisBroker(redis_server.url)
    try:
        in_b = RedisTypingIndicators(b_redis, b_broker)
        await in_a.touch("c1", "visitor")
        assert await in_b.is_typing("c1", "visitor")
        cleared = in_b.clear("c1", "visitor")
        assert await b_broker.publish("conv:c1", b"the message")
        await eventually(lambda: inbox.payloads("conv:c1") != [], "the ring in A")
        assert not await in_a.is_typing("c1", "visitor")
        assert await cleared
    finally:
        await b_broker.close()
        await b_redis.aclose()


async def test_a_clear_during_an_outage_is_told_false(
    redis_server: RedisServer, redis: Redis, broker: RedisBroker
) -> None:
    typing = RedisTypingIndicators(redis, broker)
    redis_server.stop()
    assert not await typing.clear("c1", "visitor")
    redis_server.start()
    assert await typing.clear("c1", "visitor")
