"""The Broker protocol's guarantees, on every backend."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

from realtime.broker import create_broker
from tests.realtime.conftest import Inbox, RedisServer, StartedBroker, eventually


async def test_delivers_to_subscribers_of_the_channel_only(broker: StartedBroker) -> None:
    await broker.broker.subscribe("convo:a")

    assert await broker.broker.publish("convo:b", b"for b")
    assert await broker.broker.publish("convo:a", b"for a")

    await eventually(lambda: broker.inbox.messages != [], "the message on convo:a")
    # convo:b went first on the same connections, so it would have arrived by now.
    assert broker.inbox.messages == [("convo:a", b"for a")]


async def test_keeps_publish_order_over_a_thousand_rapid_publishes(broker: StartedBroker) -> None:
    await broker.broker.subscribe("convo:order")
    sent = [str(n).encode() for n in range(1000)]
    for payload in sent:
        assert await broker.broker.publish("convo:order", payload)

    await eventually(lambda: len(broker.inbox.messages) >= len(sent), "all 1,000 messages")
    assert broker.inbox.payloads("convo:order") == sent


async def test_delivers_nothing_after_unsubscribe(broker: StartedBroker) -> None:
    await broker.broker.subscribe("convo:left")
    await broker.broker.subscribe("convo:barrier")
    await broker.broker.unsubscribe("convo:left")

    await broker.broker.publish("convo:left", b"too late")
    # Same publisher, same subscriber connection: once the barrier arrives, anything
    # published before it on convo:left has arrived too, or never will.
    await broker.broker.publish("convo:barrier", b"done")
    await eventually(lambda: broker.inbox.payloads("convo:barrier") == [b"done"], "the barrier")
    assert broker.inbox.payloads("convo:left") == []


async def test_a_publish_right_after_subscribe_returns_is_delivered(
    broker: StartedBroker,
) -> None:
    # On loopback Redis this holds even without waiting for the confirmation;
    # test_subscribe_waits_for_redis_to_confirm makes the race really happen.
    channels = [f"convo:race:{n}" for n in range(100)]
    for channel in channels:
        await broker.broker.subscribe(channel)
        assert await broker.broker.publish(channel, channel.encode())

    expected = [(channel, channel.encode()) for channel in channels]
    await eventually(lambda: len(broker.inbox.messages) >= len(expected), "every message")
    assert broker.inbox.messages == expected


async def test_publishing_to_a_channel_nobody_subscribes_is_fine(broker: StartedBroker) -> None:
    assert await broker.broker.publish("convo:nobody", b"hello?")
    await broker.broker.subscribe("convo:somebody")
    assert await broker.broker.publish("convo:somebody", b"hi")
    await eventually(lambda: broker.inbox.messages != [], "the message on convo:somebody")
    assert broker.inbox.messages == [("convo:somebody", b"hi")]


async def test_cancelling_a_publishing_task_is_never_swallowed(broker: StartedBroker) -> None:
    """Regression: with redis-py's socket_timeout set, every write went through
    asyncio.wait_for, which on Python 3.11 swallowed a cancellation landing as the write
    completed, so a cancelled task kept publishing forever."""

    async def publish_forever() -> None:
        while True:
            await broker.broker.publish("convo:cancel", b"x")
            await asyncio.sleep(0)

    for attempt in range(300):
        task = asyncio.create_task(publish_forever())
        # Let the cancellation land at a different point of the publish each time.
        for _ in range(attempt % 11):
            await asyncio.sleep(0)
        task.cancel()
        try:
            async with asyncio.timeout(2):
                await task
        except asyncio.CancelledError:
            continue
        except TimeoutError:
            task.cancel()
        pytest.fail(f"attempt {attempt}: the cancellation was swallowed")


async def test_close_is_clean_and_idempotent(broker_url: str) -> None:
    inbox = Inbox()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        broker = create_broker(broker_url)
        await broker.start(inbox.on_message, inbox.on_reset)
        await broker.subscribe("convo:closing")
        await broker.publish("convo:closing", b"bye")
        await broker.close()
        await broker.close()
        gc.collect()
    assert [str(w.message) for w in caught] == []
    assert inbox.resets == 0


async def test_close_leaves_no_task_and_no_connection_behind(redis_server: RedisServer) -> None:
    admin = redis_server.client()
    inbox = Inbox()
    broker = create_broker(redis_server.url)
    await broker.start(inbox.on_message, inbox.on_reset)
    await broker.subscribe("convo:closing")
    await broker.publish("convo:closing", b"bye")

    async def broker_connections() -> list[str]:
        return sorted(
            client["name"]
            for client in await admin.client_list()
            if client["name"].startswith("liveop-broker")
        )

    assert await broker_connections() == ["liveop-broker-pub", "liveop-broker-sub"]
    await broker.close()

    assert [t for t in asyncio.all_tasks() if t.get_name() == "redis-broker-reader"] == []

    async def all_closed() -> bool:
        return await broker_connections() == []

    await eventually(all_closed, "Redis to see the broker's connections close")


async def test_two_processes_on_one_redis_both_receive(redis_server: RedisServer) -> None:
    """Redis only: the memory broker is one process by definition."""
    inboxes = [Inbox(), Inbox()]
    brokers = [create_broker(redis_server.url) for _ in inboxes]
    try:
        for broker, inbox in zip(brokers, inboxes, strict=True):
            await broker.start(inbox.on_message, inbox.on_reset)
            await broker.subscribe("account:1")
        assert await brokers[0].publish("account:1", b"from the first")
        assert await brokers[1].publish("account:1", b"from the second")
        both = [b"from the first", b"from the second"]
        for inbox in inboxes:
            await eventually(lambda inbox=inbox: inbox.payloads("account:1") == both, "both")
    finally:
        for broker in brokers:
            await broker.close()


class SlowLink:
    """A TCP proxy in front of Redis that holds every client-to-Redis chunk for ``delay_s``:
    a subscriber far from Redis, next to a publisher close to it."""

    def __init__(self, port: int, delay_s: float) -> None:
        self._port = port
        self._delay_s = delay_s
        self._pumps: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self._port)
        for pump in (
            self._pump(reader, upstream_writer, self._delay_s),
            self._pump(upstream_reader, writer, 0.0),
        ):
            task = asyncio.create_task(pump)
            self._pumps.add(task)
            task.add_done_callback(self._pumps.discard)

    async def _pump(
        self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delay_s: float
    ) -> None:
        try:
            while chunk := await source.read(65536):
                await asyncio.sleep(delay_s)
                sink.write(chunk)
                await sink.drain()
        finally:
            sink.close()


async def test_subscribe_waits_for_redis_to_confirm(redis_server: RedisServer) -> None:
    """Were subscribe() to return once SUBSCRIBE is written, a publish from a process
    nearer to Redis would overtake it and be lost."""
    link = SlowLink(redis_server.port, delay_s=0.03)
    inbox = Inbox()
    subscriber = create_broker(await link.start())
    publisher = create_broker(redis_server.url)
    await subscriber.start(inbox.on_message, inbox.on_reset)
    await publisher.start(Inbox().on_message, Inbox().on_reset)
    try:
        channels = [f"convo:far:{n}" for n in range(5)]
        for channel in channels:
            await subscriber.subscribe(channel)
            assert await publisher.publish(channel, b"first")
        await eventually(lambda: len(inbox.messages) == len(channels), "every first message")
    finally:
        await subscriber.close()
        await publisher.close()
        await link.close()
