"""``GET /readyz``: can this process serve? The store reads and the data directory takes a
write, the broker answers, and the process is not shutting down.

``/healthz`` only says the process runs (liveness: restart it when it does not answer);
``/readyz`` (server.api.operations) says whether to send it traffic. Each check is bounded by
CHECK_TIMEOUT_S, and a check still running (a stalled disk) is joined, never started again, so
probes cannot pile up.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from storage.base import Store

log = logging.getLogger(__name__)

# A load balancer probes every few seconds and wants an answer well within its own timeout.
CHECK_TIMEOUT_S = 1.0
OK = "ok"
PROBE_FILE = ".readyz-probe"
# A probe writes this many bytes, so that a full disk fails it (an empty file needs no block).
PROBE_BYTES = 4096
# An account id no account has (ids are generated tokens): reading it is a real round trip to
# the store that returns nothing.
_NO_ACCOUNT = "readyz-probe"


class ShutdownState:
    """Set once, as soon as the process is asked to stop (server.shutdown)."""

    def __init__(self) -> None:
        self.begun = False

    def begin(self) -> None:
        self.begun = True


def data_dir_problem(data_dir: Path) -> str | None:
    """Why ``data_dir`` cannot take a write (missing and not creatable, read-only, full), or
    None. Writes, syncs and removes a small file: nothing less tells a full disk apart."""
    probe = data_dir / f"{PROBE_FILE}.{os.getpid()}"
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.write(fd, b"\0" * PROBE_BYTES)
            os.fsync(fd)
        finally:
            os.close(fd)
            probe.unlink(missing_ok=True)
    except OSError as exc:
        return f"the data directory {data_dir} cannot be written: {exc.strerror or exc}"
    return None


class Readiness:
    def __init__(
        self,
        store: Store,
        data_dir: Path,
        broker_ping: Callable[[], Awaitable[Any]] | None,
        shutdown: ShutdownState,
    ) -> None:
        self._store = store
        self._data_dir = data_dir
        self._broker_ping = broker_ping
        self._shutdown = shutdown
        self._running: dict[str, asyncio.Task[str]] = {}

    @property
    def shutting_down(self) -> bool:
        return self._shutdown.begun

    async def checks(self) -> dict[str, str]:
        """Each check's result: "ok", or what failed."""
        if self._shutdown.begun:
            return {"shutdown": "the process is shutting down"}
        names = ["store", "broker"]
        results = await asyncio.gather(*(self._bounded(name) for name in names))
        return dict(zip(names, results, strict=True))

    async def _bounded(self, name: str) -> str:
        task = self._running.get(name)
        if task is None:
            task = self._running[name] = asyncio.create_task(self._check(name))
            task.add_done_callback(lambda _: self._running.pop(name, None))
        try:
            return await asyncio.wait_for(asyncio.shield(task), CHECK_TIMEOUT_S)
        except TimeoutError:
            return f"no answer within {CHECK_TIMEOUT_S:g} s"

    async def _check(self, name: str) -> str:
        try:
            if name == "store":
                await self._store.get_account(_NO_ACCOUNT)
                problem = await asyncio.to_thread(data_dir_problem, self._data_dir)
                return problem or OK
            if self._broker_ping is not None:
                await self._broker_ping()
            return OK
        except Exception as exc:
            # The details (hosts, ports) are for the log, not for an anonymous caller.
            log.warning("readiness check %s failed: %r", name, exc)
            return f"failing: {type(exc).__name__}"
