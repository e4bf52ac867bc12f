"""Typing indicators: ephemeral flags that expire on their own, never written to the log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Literal, Protocol

Side = Literal["visitor", "operator"]

# Seed 000: "The indicator expires after 5 seconds"; clients heartbeat every 3-4 s.
TYPING_TTL_S = 5.0
# Expired entries are swept when the table grows past this many, so abandoned conversations
# do not accumulate; live ones are re-added by their next heartbeat.
SWEEP_ABOVE = 10_000


class TypingIndicators(Protocol):
    """Guarantee: ``is_typing`` is true for TYPING_TTL_S after the last ``touch`` of that
    conversation and side, and false afterwards."""

    async def touch(self, convo_id: str, side: Side) -> None: ...

    async def is_typing(self, convo_id: str, side: Side) -> bool: ...


class MemoryTypingIndicators:
    """One process's indicators, for the embedded default."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._expiry: dict[tuple[str, Side], float] = {}

    async def touch(self, convo_id: str, side: Side) -> None:
        now = self._clock()
        if len(self._expiry) > SWEEP_ABOVE:
            self._expiry = {k: v for k, v in self._expiry.items() if v > now}
        self._expiry[(convo_id, side)] = now + TYPING_TTL_S

    async def is_typing(self, convo_id: str, side: Side) -> bool:
        return self._expiry.get((convo_id, side), 0.0) > self._clock()
