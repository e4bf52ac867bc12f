"""The Redis broker against a real Redis that misbehaves: killed connections, a restart, a
frozen server. Every subscription must come back, followed by exactly one reset."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from realtime.backends.redis import RedisBroker
from tests.realtime.conftest import Inbox, RedisServer, eventually


class Stream:
    """Publishes numbered payloads on one channel until stopped, like a busy conversation."""

    def __init__(self, broker: RedisBroker, channel: str) -> None:
        self._broker = broker
        self._channel = channel
        self._running = True
        self.results: list[bool] = []
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while self._running:
            payload = str(len(self.results)).encode()
            self.results.append(await self._broker.publish(self._channel, payload))
            await asyncio.sleep(0.002)

    async def stop(self) -> None:
        self._running = False
        await self._task


def assert_in_order(payloads: list[bytes]) -> None:
    numbers = [int(p) for p in payloads]
    assert numbers == sorted(numbers)
    assert len(set(numbers)) == len(numbers)


async def wait_delivered(broker: RedisBroker, inbox: Inbox, channel: str, payload: bytes) -> None:
    """Publishes ``payload`` (again and again: a publish may fall into a gap) until it arrives."""

    async def arrived() -> bool:
        if payload in inbox.payloads(channel):
            return True
        await broker.publish(channel, payload)
        return False

    await eventually(arrived, f"{payload!r} on {channel}")


@pytest.fixture
async def started(redis_server: RedisServer) -> AsyncIterator[tuple[RedisBroker, Inbox]]:
    broker = RedisBroker(redis_server.url)
    inbox = Inbox()
    await broker.start(inbox.on_message, inbox.on_reset)
    yield broker, inbox
    await broker.close()


async def test_client_kill_pubsub_is_survived_with_one_reset_per_outage(
    redis_server: RedisServer, started: tuple[RedisBroker, Inbox]
) -> None:
    broker, inbox = started
    admin = redis_server.client()
    await broker.subscribe("convo:kill")
    await broker.subscribe("account:kill")
    stream = Stream(broker, "convo:kill")
    await eventually(lambda: len(inbox.payloads("convo:kill")) >= 20, "the stream to flow")

    for outage in (1, 2):
        assert await admin.client_kill_filter(_type="pubsub") == 1
        await eventually(lambda outage=outage: inbox.resets == outage, f"reset {outage}")
        before = len(inbox.payloads("convo:kill"))
        await eventually(lambda n=before: len(inbox.payloads("convo:kill")) > n + 20, "flow")

    await stream.stop()
    assert all(stream.results), "publishing never saw the subscriber's outage"
    assert_in_order(inbox.payloads("convo:kill"))
    await wait_delivered(broker, inbox, "account:kill", b"every channel came back")
    assert inbox.resets == 2


async def test_a_restart_mid_stream_fails_publishes_softly_then_recovers(
    redis_server: RedisServer, started: tuple[RedisBroker, Inbox]
) -> None:
    broker, inbox = started
    await broker.subscribe("convo:restart")
    stream = Stream(broker, "convo:restart")
    await eventually(lambda: len(inbox.payloads("convo:restart")) >= 20, "the stream to flow")

    redis_server.stop()
    published = len(stream.results)
    await eventually(lambda: len(stream.results) >= published + 5, "publishes during the outage")
    assert not any(stream.results[published + 1 :]), "a publish to a stopped Redis succeeded"
    assert inbox.resets == 0, "reset before the subscriptions were back"

    redis_server.start()
    await eventually(lambda: inbox.resets == 1, "the reset after recovery")
    await eventually(lambda: stream.results[-1], "publishing to succeed again")
    before = len(inbox.payloads("convo:restart"))
    await eventually(lambda: len(inbox.payloads("convo:restart")) > before + 20, "the stream")
    await stream.stop()

    assert_in_order(inbox.payloads("convo:restart"))
    assert inbox.resets == 1


async def test_a_quick_restart_is_one_outage(
    redis_server: RedisServer, started: tuple[RedisBroker, Inbox]
) -> None:
    broker, inbox = started
    await broker.subscribe("convo:bounce")
    redis_server.restart()
    await eventually(lambda: inbox.resets == 1, "the reset after the restart")
    await wait_delivered(broker, inbox, "convo:bounce", b"back")
    assert inbox.resets == 1


async def test_subscribe_and_unsubscribe_during_an_outage_are_honoured(
    redis_server: RedisServer, started: tuple[RedisBroker, Inbox]
) -> None:
    broker, inbox = started
    admin = redis_server.client()
    await broker.subscribe("convo:leaving")

    redis_server.stop()
    async with asyncio.timeout(1):
        await broker.subscribe("convo:joining")
        await broker.unsubscribe("convo:leaving")
    assert not await broker.publish("convo:joining", b"into the void")

    redis_server.start()
    await eventually(lambda: inbox.resets == 1, "the reset after recovery")
    assert await broker.publish("convo:leaving", b"nobody listens")
    assert await broker.publish("convo:joining", b"welcome")
    await eventually(lambda: inbox.messages != [], "the message on convo:joining")
    assert inbox.messages == [("convo:joining", b"welcome")]
    assert await admin.pubsub_numsub("convo:joining", "convo:leaving") == [
        (b"convo:joining", 1),
        (b"convo:leaving", 0),
    ]


async def test_a_frozen_redis_is_detected_by_the_liveness_ping(redis_server: RedisServer) -> None:
    """SIGSTOP keeps every TCP connection open (the kernel still answers), so only a PING
    without a PONG reveals the outage; without it the broker would never reset."""
    liveness_s = 0.1
    broker = RedisBroker(redis_server.url, liveness_interval_s=liveness_s)
    inbox = Inbox()
    await broker.start(inbox.on_message, inbox.on_reset)
    try:
        await broker.subscribe("convo:frozen")
        redis_server.freeze()
        # Long enough for two liveness intervals of silence, with room for a slow machine.
        await asyncio.sleep(10 * liveness_s)
        redis_server.thaw()
        await eventually(lambda: inbox.resets == 1, "the reset after the freeze")
        await wait_delivered(broker, inbox, "convo:frozen", b"thawed")
        assert inbox.resets == 1
    finally:
        await broker.close()
