"""Graceful shutdown on SIGTERM, in the order a load balancer needs it.

1. ``/readyz`` answers 503 at once (``ShutdownState``), while the process keeps serving for
   ``LIVEOP_SHUTDOWN_DRAIN_S`` so that health checks take it out of rotation first.
2. uvicorn stops accepting connections, lets in-flight requests finish, ends SSE streams
   (sse-starlette watches the same exit flag; browsers reconnect elsewhere with
   ``Last-Event-ID``) and closes WebSockets with 1012 "service restart" (the clients resume
   from their last seq), all within ``timeout_graceful_shutdown``.
3. The lifespan closes the services: the outbound worker finishes or releases its claims,
   so another process delivers them at once, then the broker and the store close.

A second signal during the drain skips the rest of the wait.
"""

from __future__ import annotations

import time
from types import FrameType

import uvicorn

from server.readiness import ShutdownState


class GracefulServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, state: ShutdownState, drain_s: float) -> None:
        super().__init__(config)
        self._state = state
        self._drain_s = drain_s
        self._exit_at: float | None = None
        self._signal: int | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._state.begun or self._drain_s <= 0:
            self._state.begin()
            super().handle_exit(sig, frame)
            return
        # Runs inside a signal handler: only flags here, the main loop's tick acts on them.
        self._state.begin()
        self._signal = sig
        self._exit_at = time.monotonic() + self._drain_s

    async def on_tick(self, counter: int) -> bool:
        if self._exit_at is not None and time.monotonic() >= self._exit_at:
            self._exit_at = None
            assert self._signal is not None
            super().handle_exit(self._signal, None)
        return await super().on_tick(counter)
