"""Garbage collection for a process holding thousands of idle connections.

Each idle connection keeps about 150 objects the cyclic collector tracks (uvicorn's protocol,
its queues and timers, the suspended coroutines of the middleware stack). CPython's full
collection walks every one of them: at 5,000 connections that is 750,000 objects and an event
loop stopped for 0.5 to 0.9 s, however little of it is garbage.

So what has survived a moment is moved out of the collector's sight (``gc.freeze``): first
what startup built, then, every ``SETTLE_EVERY_S``, whatever outlived a young collection,
which is mostly connections. The automatic collections then only walk objects younger than
that, and stay short. Frozen objects are still freed by their reference counts; only garbage
held in reference cycles (a closed connection's objects that point at each other) waits, frozen,
for the next ``reclaim``, which puts everything back and runs one full collection: the long
pause, taken only once the process's peak memory has grown by ``RECLAIM_GROWTH`` since the
last one (CPython's own rule is a quarter more objects reaching the oldest generation, which
traffic alone keeps meeting). So frozen garbage can take the process at most that far past its
peak at the last reclaim, and a process whose memory stays flat makes no full collection.
"""

from __future__ import annotations

import asyncio
import gc
import resource
from collections.abc import Callable

SETTLE_EVERY_S = 1.0
RECLAIM_GROWTH = 1.25


def peak_memory() -> int:
    """The process's peak resident memory, in the platform's unit: only ratios are used."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class GcPolicy:
    def __init__(self, memory: Callable[[], int] = peak_memory) -> None:
        self._memory = memory
        self._reclaim_above = memory() * RECLAIM_GROWTH
        self._task: asyncio.Task[None] | None = None

    def settle(self) -> None:
        """Freezes what outlived a young collection (collected first, so that young garbage
        is freed rather than frozen), or reclaims when memory has grown enough."""
        if self._memory() > self._reclaim_above:
            self.reclaim()
            return
        gc.collect(1)
        gc.freeze()

    def reclaim(self) -> None:
        """Frees the cyclic garbage frozen so far: one full collection, then freezes again."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._reclaim_above = self._memory() * RECLAIM_GROWTH

    def start(self) -> None:
        self.settle()
        self._task = asyncio.create_task(self._run(), name="gc-policy")

    def stop(self) -> None:
        """Gives everything back to the collector: a process (a test run) that builds more
        apps must not keep each one's garbage frozen."""
        if self._task is not None:
            self._task.cancel()
        gc.unfreeze()

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(SETTLE_EVERY_S)
            self.settle()
