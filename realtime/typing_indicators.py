"""Typing indicators: ephemeral flags that expire on their own, never written to the log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Literal, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

    from realtime.backends.redis import RedisBroker

log = logging.getLogger(__name__)

Side = Literal["visitor", "operator"]

# Seed 000: "The indicator expires after 5 seconds"; clients heartbeat every 3-4 s.
TYPING_TTL_S = 5.0
# Expired entries are swept when the table grows past this many, so abandoned conversations
# do not accumulate; live ones are re-added by their next heartbeat.
SWEEP_ABOVE = 10_000
# A typing flag is worth little: no request waits longer than this on Redis for one.
REDIS_TYPING_TIMEOUT_S = 0.5


class TypingIndicators(Protocol):
    """Guarantee: ``is_typing`` is true for TYPING_TTL_S after the last ``touch`` of that
    conversation and side, and false afterwards."""

    async def touch(self, convo_id: str, side: Side) -> None: ...

    async def is_typing(self, convo_id: str, side: Side) -> bool: ...

    def clear(self, convo_id: str, side: Side) -> Awaitable[bool]:
        """Ends the indicator: the message it announced has arrived. Called, not yet awaited,
        it already holds in every other process by the time that process hears of anything
        this one publishes afterwards (the message's own events). Awaiting it waits until
        every reader, this process's included, sees it ended; False when a shared store could
        not be told (the indicator then expires by itself)."""


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

    def clear(self, convo_id: str, side: Side) -> Awaitable[bool]:
        self._expiry.pop((convo_id, side), None)
        cleared = asyncio.get_running_loop().create_future()
        cleared.set_result(True)
        return cleared


class RedisTypingIndicators:
    """Indicators shared by every process: one Redis key per conversation and side, which
    Redis expires itself. Typing is ephemeral, so a Redis outage reads as "nobody is typing"
    instead of failing the request that asked.

    ``clear`` goes through ``broker``'s publishing connection, queued ahead of the message's
    publishes: it needs no round trip of its own (one per message otherwise), and Redis has
    deleted the key before any process hears of the message. Whether anybody was typing is
    known only to Redis (any process may have touched the key), so it is always sent.

    Each call bounds itself; build ``redis`` with ``socket_timeout=None``, since redis-py's
    socket timeout routes every write through asyncio.wait_for, which on Python 3.11 can
    swallow the caller's cancellation (see realtime.backends.redis)."""

    def __init__(
        self,
        redis: Redis,
        broker: RedisBroker,
        key_prefix: str = "liveop:typing:",
        ttl_s: float = TYPING_TTL_S,
    ) -> None:
        # Imported here so that the embedded default never pays for loading redis-py.
        from redis.exceptions import RedisError

        # Everything an outage can raise: redis-py wraps most socket errors, not all of them.
        self._outage_errors = (RedisError, OSError)
        self._redis = redis
        self._broker = broker
        self._key_prefix = key_prefix
        self._ttl_ms = max(1, round(ttl_s * 1000))
        self._failing = False

    def _key(self, convo_id: str, side: Side) -> str:
        return f"{self._key_prefix}{convo_id}:{side}"

    async def touch(self, convo_id: str, side: Side) -> None:
        try:
            async with asyncio.timeout(REDIS_TYPING_TIMEOUT_S):
                await self._redis.set(self._key(convo_id, side), b"1", px=self._ttl_ms)
        except self._outage_errors as exc:
            self._outage(exc)
        else:
            self._failing = False

    async def is_typing(self, convo_id: str, side: Side) -> bool:
        try:
            async with asyncio.timeout(REDIS_TYPING_TIMEOUT_S):
                found = await self._redis.exists(self._key(convo_id, side))
        except self._outage_errors as exc:
            self._outage(exc)
            return False
        self._failing = False
        return bool(found)

    def clear(self, convo_id: str, side: Side) -> Awaitable[bool]:
        # Bounded and logged by the broker, like the publishes beside it.
        return self._broker.delete(self._key(convo_id, side))

    def _outage(self, exc: BaseException) -> None:
        # Warn once per outage: every typing client heartbeats every few seconds.
        if not self._failing:
            log.warning("typing indicators: Redis unavailable, nobody reads as typing: %r", exc)
        self._failing = True
