"""Issue 21 item 17: what a process publishes reaches its own listeners at once, whatever
the broker does; the broker carries only what crosses processes, and nothing twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from realtime.broker import create_broker
from realtime.hub import Hub
from realtime.outbox import Item, Outbox
from tests.realtime.conftest import EVENTUALLY_S
from tests.realtime.test_outbox import Log
from tests.redis_server import RedisServer

CHANNEL = "acct:a"


@asynccontextmanager
async def _hub(url: str) -> AsyncIterator[Hub]:
    hub = Hub(create_broker(url))
    await hub.start()
    try:
        yield hub
    finally:
        await hub.close()


async def _listening(hub: Hub, log: Log) -> Outbox:
    outbox = Outbox(0, log.fetch)
    await hub.attach(CHANNEL, outbox)
    return outbox


async def _received(outbox: Outbox) -> list[Item]:
    return await asyncio.wait_for(outbox.next_batch(), EVENTUALLY_S)


async def test_a_redis_outage_stops_live_delivery_inside_one_process_no_more(
    redis_server: RedisServer,
) -> None:
    log = Log(0)
    async with _hub(redis_server.url) as writer, _hub(redis_server.url) as other:
        mine, theirs = await _listening(writer, log), await _listening(other, log)
        log.head = 1
        assert await writer.publish(CHANNEL, 1, "message:new", b'{"n":1}')
        assert [i.seq for i in await _received(mine)] == [1]
        assert [i.seq for i in await _received(theirs)] == [1]

        redis_server.stop()
        log.head = 2
        # The broker cannot ring the other process, but this one's clients hear at once.
        assert not await writer.publish(CHANNEL, 2, "message:new", b'{"n":2}')
        assert [i.seq for i in await _received(mine)] == [2]
        # Ephemeral events too, which no catch-up would ever bring.
        await writer.publish(CHANNEL, None, "typing", b'{"typing":true}')
        assert [i.kind for i in await _received(mine)] == ["typing"]


async def test_a_process_hears_its_own_ephemeral_event_once_not_again_from_redis(
    redis_server: RedisServer,
) -> None:
    log = Log(0)
    async with _hub(redis_server.url) as writer, _hub(redis_server.url) as other:
        mine = await _listening(writer, log)
        await writer.publish(CHANNEL, None, "typing", b'{"typing":true}')
        await writer.publish(CHANNEL, None, "typing", b'{"typing":false}')
        # Redis delivers to the writer's subscription in publish order: once this marker from
        # the other process arrives, any echo of the two events would have arrived before it.
        await other.publish(CHANNEL, None, "typing", b'{"marker":1}')
        seen: list[bytes] = []
        while b'{"marker":1}' not in seen:
            seen.extend(i.data for i in await _received(mine))
        assert seen == [b'{"typing":true}', b'{"typing":false}', b'{"marker":1}']


async def test_the_memory_broker_delivers_a_publish_once() -> None:
    async with _hub("memory://") as hub:
        outbox = await _listening(hub, Log(0))
        await hub.publish(CHANNEL, None, "typing", b"{}")
        await hub.publish(CHANNEL, None, "typing", b'{"last":1}')
        assert [i.data for i in await _received(outbox)] == [b"{}", b'{"last":1}']
