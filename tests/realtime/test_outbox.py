"""Recovery table for one outbox: whatever the broker rings, the client sees the log."""

from __future__ import annotations

import asyncio

import pytest

from realtime.outbox import REPLAY_LIMIT, RESYNC, Idle, Item, Outbox, Overflow, Reset


class Log:
    """The store's view: items 1..head, minus those this subscriber may not see."""

    def __init__(self, head: int, hidden: frozenset[int] = frozenset()) -> None:
        self.head = head
        self.hidden = hidden
        self.fetches: list[tuple[int, int | None]] = []

    def item(self, seq: int) -> Item:
        return Item(seq, "message:new", b'{"n":%d}' % seq)

    async def fetch(self, after: int, upto: int | None, limit: int) -> list[Item]:
        self.fetches.append((after, upto))
        last = self.head if upto is None else min(upto, self.head)
        seqs = [s for s in range(after + 1, last + 1) if s not in self.hidden]
        return [self.item(s) for s in seqs[:limit]]


async def _drain(outbox: Outbox, count: int) -> list[int | None]:
    seen: list[int | None] = []
    while len(seen) < count:
        batch = await asyncio.wait_for(outbox.next_batch(), 1)
        assert batch, "outbox closed early"
        seen.extend(i.seq for i in batch)
    return seen


# (case, head of the log, the client's cursor, what the broker rings, what the client sees)
CASES = [
    ("in order", 3, 0, [1, 2, 3], [1, 2, 3]),
    ("duplicates dropped", 3, 0, [1, 1, 2, 2, 3, 1], [1, 2, 3]),
    ("hole filled from the store", 4, 0, [1, 4], [1, 2, 3, 4]),
    ("reordered across processes", 3, 0, [1, 3, 2], [1, 2, 3]),
    ("resume replays what was missed first", 5, 2, [5], [3, 4, 5]),
    ("resume with nothing new", 2, 2, [3], [3]),
    ("stale ring before the cursor", 5, 5, [4, 5, 6], [6]),
]


@pytest.mark.parametrize(
    ("head", "cursor", "rung", "seen"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
async def test_recovery(head: int, cursor: int, rung: list[int], seen: list[int]) -> None:
    log = Log(max(head, *rung))
    log.head = head  # what is committed when the client connects
    outbox = Outbox(cursor, log.fetch)
    for seq in rung:
        log.head = max(log.head, seq)  # a ring always follows its commit
        outbox.push(log.item(seq))
    assert await _drain(outbox, len(seen)) == seen


async def test_invisible_seqs_move_the_cursor_without_delivery() -> None:
    log = Log(5, hidden=frozenset({2, 3}))
    outbox = Outbox(1, log.fetch)
    outbox.push(log.item(4))
    outbox.push(log.item(5))
    assert await _drain(outbox, 2) == [4, 5]
    assert outbox.cursor == 5


async def test_resync_after_a_broker_outage_catches_up_from_the_store() -> None:
    log = Log(2)
    outbox = Outbox(0, log.fetch)
    assert await _drain(outbox, 2) == [1, 2]
    log.head = 5  # committed while the broker was away: nothing rang
    outbox.push(RESYNC)
    assert await _drain(outbox, 3) == [3, 4, 5]


async def test_ephemeral_items_pass_through_in_place() -> None:
    log = Log(1)
    outbox = Outbox(0, log.fetch)
    outbox.push(log.item(1))
    outbox.push(Item(None, "typing", b"{}"))
    assert await _drain(outbox, 2) == [1, None]


async def test_a_slow_consumer_is_told_to_reconnect() -> None:
    log = Log(0)
    outbox = Outbox(0, log.fetch, limit=3)
    for seq in range(1, 5):
        log.head = seq
        outbox.push(log.item(seq))
    with pytest.raises(Overflow):
        await outbox.next_batch()


async def test_a_cursor_too_far_behind_is_reset() -> None:
    log = Log(REPLAY_LIMIT + 5)
    outbox = Outbox(0, log.fetch)
    with pytest.raises(Reset):
        await outbox.next_batch()


async def test_a_hole_too_large_is_reset() -> None:
    log = Log(1)
    outbox = Outbox(1, log.fetch)
    waiting = asyncio.create_task(outbox.next_batch())  # caught up, now waiting
    await asyncio.sleep(0.01)
    log.head = REPLAY_LIMIT + 10
    outbox.push(log.item(log.head))
    with pytest.raises(Reset):
        await asyncio.wait_for(waiting, 1)
    assert log.fetches == [(1, None)]


async def test_close_wakes_the_consumer() -> None:
    outbox = Outbox(0, Log(0).fetch)
    waiter = asyncio.create_task(outbox.next_batch())
    await asyncio.sleep(0)
    outbox.close()
    assert await asyncio.wait_for(waiter, 1) == []


async def test_a_drain_that_finds_only_delivered_items_keeps_waiting() -> None:
    """Regression: next_batch returned [] (read as "closed") when a hole fill had already
    delivered everything queued, which ended operator streams under Redis load."""
    log = Log(1)
    outbox = Outbox(0, log.fetch)
    assert await _drain(outbox, 1) == [1]
    log.head = 3
    outbox.push(log.item(3))  # hole at 2: the fill delivers 2 and 3
    outbox.push(log.item(2))  # already delivered by then
    assert await _drain(outbox, 2) == [2, 3]
    outbox.push(log.item(3))  # only a duplicate left in the queue
    waiting = asyncio.create_task(outbox.next_batch())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    log.head = 4
    outbox.push(log.item(4))
    assert [i.seq for i in await asyncio.wait_for(waiting, 1)] == [4]


async def test_an_idle_wait_runs_out_and_loses_nothing() -> None:
    """The SSE stream's keep-alive: a wait with nothing to send raises Idle, and what comes
    after is delivered by the next call, in order."""
    log = Log(1)
    outbox = Outbox(0, log.fetch)
    assert [i.seq for i in await outbox.next_batch(0.01)] == [1]
    with pytest.raises(Idle):
        await asyncio.wait_for(outbox.next_batch(0.01), 1)
    log.head = 3
    outbox.push(log.item(3))
    assert [i.seq for i in await asyncio.wait_for(outbox.next_batch(0.01), 1)] == [2, 3]


async def test_an_item_pushed_during_an_idle_wait_ends_it_without_idle() -> None:
    outbox = Outbox(0, Log(0).fetch)
    waiter = asyncio.create_task(outbox.next_batch(5))
    await asyncio.sleep(0)
    outbox.push(Item(None, "typing", b"{}"))
    batch = await asyncio.wait_for(waiter, 1)
    assert [i.kind for i in batch] == ["typing"]
