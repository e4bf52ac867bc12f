"""One connection's outbox: what the hub pushes, delivered exactly once and in seq order.

The hub pushes whatever the broker rang (possibly duplicated, reordered across processes, or
with holes after a broker outage). The consumer side turns that into the gapless sequence the
client must see: it drops seqs it has delivered, fills any hole from the store (the log) before
moving on, and gives up with ``Overflow`` when the client reads too slowly, so that the client
reconnects and resumes from its cursor instead of the server buffering without bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from prometheus_client import Counter

# Events one connection may have waiting. A visitor or operator that is this far behind is
# better served by reconnecting and replaying from the store than by a growing buffer.
OUTBOX_LIMIT = 1024
# The most events one catch-up replays; a client further behind is told to reset (reload).
REPLAY_LIMIT = 1000

overflows = Counter(
    "liveop_outbox_overflows_total",
    "Connections dropped for reading too slowly (they reconnect and resume)",
)
resets = Counter(
    "liveop_outbox_resets_total",
    "Connections told to reload because their catch-up was too long to replay",
)


@dataclass(frozen=True, slots=True)
class Item:
    """One event for clients. ``seq`` None marks an ephemeral one (typing, presence), which
    is delivered as it comes and never replayed. ``data`` is the JSON the client receives."""

    seq: int | None
    kind: str
    data: bytes
    # When this process received it live from the broker (time.monotonic()); 0 for items
    # replayed from the store. The delivery-lag metric starts here.
    received: float = 0.0


# (after_seq, upto_seq or None for "the latest", limit) -> the channel's items in that range,
# oldest first. It may return fewer than exist (items the subscriber must not see are left
# out), so the outbox moves its cursor to ``upto`` even when the range comes back empty.
Fetch = Callable[[int, int | None, int], Awaitable[list[Item]]]


# Catch-ups reading the store at once in one process. Reconnecting clients each replay up to
# REPLAY_LIMIT events; two hundred at once took every store connection and slowed every
# other request to seconds. The rest wait their turn, and live events wait with them.
REPLAYS_AT_ONCE = 4


class ReplayGate:
    """Bounds how many fetches of the gated functions run at once, across every outbox."""

    def __init__(self, at_once: int = REPLAYS_AT_ONCE) -> None:
        self._slots = asyncio.Semaphore(at_once)

    def gated(self, fetch: Fetch) -> Fetch:
        async def in_turn(after: int, upto: int | None, limit: int) -> list[Item]:
            async with self._slots:
                return await fetch(after, upto, limit)

        return in_turn


class Overflow(Exception):
    """The consumer fell more than OUTBOX_LIMIT events behind and must reconnect."""


class Reset(Exception):
    """The cursor is too far behind (or ahead) to replay: the client must reload."""


class Idle(Exception):
    """Nothing arrived within the wait ``next_batch`` was given: time for a keep-alive."""


def _expire(waiter: asyncio.Future[bool]) -> None:
    if not waiter.done():
        waiter.set_result(True)


class _Resync:
    """Marker the hub pushes after a broker outage: catch up from the store."""


RESYNC = _Resync()


class Outbox:
    # Ten thousand idle sockets each hold one: no per-instance dict, and the queue and the
    # waiter exist only while something is queued or awaited.
    __slots__ = ("_caught_up", "_closed", "_fetch", "_limit", "_overflowed", "_queue", "_waiter",
                 "cursor")  # fmt: skip

    def __init__(self, cursor: int, fetch: Fetch, *, limit: int = OUTBOX_LIMIT) -> None:
        self.cursor = cursor  # the highest seq delivered (or known to be invisible)
        self._fetch = fetch
        self._limit = limit
        self._queue: deque[Item | _Resync] | None = None
        # Its result says whether the wait ran out (True) rather than something happened.
        self._waiter: asyncio.Future[bool] | None = None
        self._overflowed = False
        self._closed = False
        self._caught_up = False

    def push(self, item: Item | _Resync) -> None:
        """Called by the hub on the event loop; never blocks, never grows past the limit."""
        if self._closed or self._overflowed:
            return
        if self._queue is None:
            self._queue = deque()
        if len(self._queue) >= self._limit:
            overflows.inc()
            self._overflowed = True
            self._queue = None
        else:
            self._queue.append(item)
        self._wake()

    def close(self) -> None:
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(False)

    async def next_batch(self, idle_s: float | None = None) -> list[Item]:
        """The next events to send, in order; [] once closed.

        Raises Overflow when the consumer fell too far behind, Reset when a catch-up would
        replay more than REPLAY_LIMIT events, and Idle when ``idle_s`` passed with nothing
        to send. Only the wait itself times out, never a catch-up from the store, so an
        Idle loses nothing: the next call carries on where this one stopped.
        """
        if self._overflowed:
            raise Overflow
        if not self._caught_up:
            self._caught_up = True
            batch = await self._fill(None)
            if batch:
                return batch
        while True:
            if self._overflowed:
                raise Overflow
            if self._closed:
                return []
            if self._queue:
                batch = await self._drain()
                if batch:
                    return batch
                # Everything queued was already delivered (a hole fill got there first):
                # nothing to send is not the end of the stream, so wait for more.
                continue
            self._queue = None
            loop = asyncio.get_running_loop()
            waiter = self._waiter = loop.create_future()
            # A timer, not a task: the keep-alive of an idle stream costs one handle.
            timer = None if idle_s is None else loop.call_later(idle_s, _expire, waiter)
            try:
                expired = await waiter
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if expired:
                raise Idle

    async def _drain(self) -> list[Item]:
        out: list[Item] = []
        while self._queue and not self._overflowed:
            item = self._queue.popleft()
            if isinstance(item, _Resync):
                out.extend(await self._fill(None))
            elif item.seq is None:
                out.append(item)
            elif item.seq > self.cursor:
                if item.seq > self.cursor + 1:
                    out.extend(await self._fill(item.seq - 1))
                out.append(item)
                self.cursor = item.seq
        return out

    async def _fill(self, upto: int | None) -> list[Item]:
        """Everything after the cursor up to ``upto`` (or the latest), from the store."""
        if upto is not None and upto - self.cursor > REPLAY_LIMIT:
            resets.inc()
            raise Reset
        items = await self._fetch(self.cursor, upto, REPLAY_LIMIT + 1)
        if len(items) > REPLAY_LIMIT:
            resets.inc()
            raise Reset
        fresh = [i for i in items if i.seq is not None and i.seq > self.cursor]
        if fresh:
            self.cursor = max(self.cursor, *(i.seq for i in fresh if i.seq is not None))
        if upto is not None:
            self.cursor = max(self.cursor, upto)
        return fresh
