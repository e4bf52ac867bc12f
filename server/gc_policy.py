"""Garbage collection for a process holding thousands of idle connections.

Each idle connection keeps about 150 objects the cyclic collector tracks (uvicorn's protocol,
its queues and timers, the suspended coroutines of the middleware stack). CPython's full
collection walks every one of them: at 5,000 connections that is 750,000 objects and an event
loop stopped for 0.5 to 0.9 s, however little of it is garbage.

So what has survived a moment is moved out of the collector's sight (``gc.freeze``): first
what startup built, then, every ``SETTLE_EVERY_S``, whatever outlived a young collection,
which is mostly connections. The automatic collections then only walk objects younger than
that, and stay short. Frozen objects are still freed by their reference counts (a closed
connection's objects mostly are); only garbage held in reference cycles waits, frozen, for the
next ``reclaim``, which puts everything back and runs one full collection: the long pause,
once every ``RECLAIM_EVERY_S`` instead of whenever a quarter more objects reached the oldest
generation.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable

SETTLE_EVERY_S = 1.0
# Bounds how long cyclic garbage that was frozen stays in memory, at the price of one full
# collection per interval.
RECLAIM_EVERY_S = 3600.0


class GcPolicy:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._reclaimed_at = clock()
        self._task: asyncio.Task[None] | None = None

    def settle(self) -> None:
        """Freezes what outlived a young collection (collected first, so that young garbage
        is freed rather than frozen), or reclaims when it is time."""
        if self._clock() - self._reclaimed_at >= RECLAIM_EVERY_S:
            self.reclaim()
            return
        gc.collect(1)
        gc.freeze()

    def reclaim(self) -> None:
        """Frees the cyclic garbage frozen so far: one full collection, then freezes again."""
        gc.unfreeze()
        gc.collect()
        gc.freeze()
        self._reclaimed_at = self._clock()

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
