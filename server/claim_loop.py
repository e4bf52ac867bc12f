"""The loop every leased worker runs: claim a batch from the store, handle it, and wait for
more only when nothing was due. The outbound worker, the MMS picture fetcher and the signed
webhook deliveries share it; each says what a batch is (``run_once``)."""

from __future__ import annotations

import abc
import asyncio
import logging
from contextlib import suppress

log = logging.getLogger(__name__)

# How long stop() lets the batch in flight finish; an unfinished claim lapses with its lease
# and another worker takes it, so a slow provider never holds a shutdown.
STOP_GRACE_S = 5.0


class ClaimLoop(abc.ABC):
    def __init__(self, name: str, poll_s: float) -> None:
        self._name = name
        self._poll_s = poll_s
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    @abc.abstractmethod
    async def run_once(self) -> int:
        """Claims one batch and handles it; returns how many were claimed."""

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        """Lets the batch in flight finish (STOP_GRACE_S at most), then stops."""
        self._stopping.set()
        if self._task is None:
            return
        done, _ = await asyncio.wait({self._task}, timeout=STOP_GRACE_S)
        if not done:
            self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                claimed = await self.run_once()
            except Exception:
                log.exception("%s: claiming a batch failed; trying again", self._name)
                claimed = 0
            if claimed == 0:
                with suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_s)
