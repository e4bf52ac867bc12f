"""Issue 21 item 12 (replay cost): many replaying reconnects take turns at the store."""

from __future__ import annotations

import asyncio

from realtime.broker import create_broker
from realtime.hub import Hub
from realtime.outbox import REPLAYS_AT_ONCE, Item, Outbox
from tests.realtime.test_outbox import Log

RECONNECTS = 200
HEAD = 500


class CountingLog(Log):
    """The log, counting how many fetches are reading it at once."""

    def __init__(self, head: int) -> None:
        super().__init__(head)
        self.reading = 0
        self.most_at_once = 0

    async def fetch(self, after: int, upto: int | None, limit: int) -> list[Item]:
        self.reading += 1
        self.most_at_once = max(self.most_at_once, self.reading)
        try:
            await asyncio.sleep(0)  # a store read yields to the loop
            return await super().fetch(after, upto, limit)
        finally:
            self.reading -= 1


async def test_operator_level_exhaustion_replaying_reconnects_take_turns_at_the_store() -> None:
    hub = Hub(create_broker("memory://"))
    log = CountingLog(HEAD)

    async def reconnect() -> int:
        outbox = Outbox(0, hub.replays.gated(log.fetch))
        batch = await outbox.next_batch()
        return len(batch)

    replayed = await asyncio.gather(*(reconnect() for _ in range(RECONNECTS)))
    assert replayed == [HEAD] * RECONNECTS
    assert log.most_at_once == REPLAYS_AT_ONCE
