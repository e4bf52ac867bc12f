"""Rate limits by GCRA (the generic cell rate algorithm), in memory for one process or in
Redis for many.

GCRA keeps one number per key, the theoretical arrival time (TAT): when the key's budget
would be whole again if the hits it allowed had come evenly spaced. A hit is allowed when,
after adding one interval (``per_s / limit``), the TAT stays within ``burst`` intervals of
now. So a fresh key takes ``burst`` hits at once and then one every interval: smooth, with no
window edge where twice the limit gets through, and O(1) state per key that is worthless (and
dropped) once its TAT has passed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

# Keys are kept until their TAT passes; the table is swept of spent keys when it outgrows
# this, and again only once it has doubled, so sweeping stays O(1) per hit however many keys
# are live.
SWEEP_ABOVE = 10_000
# A limit is a guard, not a feature: no request waits longer than this on Redis for one.
REDIS_LIMIT_TIMEOUT_S = 0.5

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Rule:
    """``limit`` hits per ``per_s`` seconds sustained, and up to ``burst`` (default:
    ``limit``) at once from a key that has been idle."""

    limit: int
    per_s: float
    burst: int | None = None

    def __post_init__(self) -> None:
        if self.limit < 1 or not self.per_s > 0 or (self.burst is not None and self.burst < 1):
            raise ValueError(f"a rule needs a positive limit, period and burst: {self}")

    @property
    def interval_s(self) -> float:
        return self.per_s / self.limit

    @property
    def capacity(self) -> int:
        """Hits a fresh key takes at once."""
        return self.limit if self.burst is None else self.burst

    @property
    def tolerance_s(self) -> float:
        """How far ahead of now a TAT may run: ``capacity`` intervals."""
        return self.interval_s * self.capacity


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    # 0 when allowed; otherwise how long until the same hit would be allowed.
    retry_after_s: float


ALLOWED = Decision(True, 0.0)


class RateLimiter(Protocol):
    """Guarantee: a denied hit spends nothing, so hammering a spent key does not push its
    next allowance later."""

    async def hit(self, key: str, rule: Rule) -> Decision: ...


class Unlimited:
    """Allows everything: for installations that turned rate limits off (benchmarks)."""

    async def hit(self, key: str, rule: Rule) -> Decision:
        return ALLOWED


class MemoryRateLimiter:
    """One process's limits, for the embedded default."""

    def __init__(self, clock: Clock = time.monotonic) -> None:
        self._clock = clock
        self._tat: dict[str, float] = {}
        self._sweep_above = SWEEP_ABOVE

    def __len__(self) -> int:
        return len(self._tat)

    async def hit(self, key: str, rule: Rule) -> Decision:
        now = self._clock()
        new_tat = max(self._tat.get(key, now), now) + rule.interval_s
        allow_at = new_tat - rule.tolerance_s
        if allow_at > now:
            return Decision(False, allow_at - now)
        if len(self._tat) >= self._sweep_above:
            # Every key is a client-chosen string (a conversation id, an address): without
            # the sweep, a stream of new ones would grow the table for good.
            self._tat = {k: tat for k, tat in self._tat.items() if tat > now}
            self._sweep_above = max(SWEEP_ABOVE, 2 * len(self._tat))
        self._tat[key] = new_tat
        return ALLOWED


# Atomic, so that processes racing on one key cannot both spend its last unit. The clock is
# Redis's own TIME, so processes whose clocks disagree still agree on every limit. Times are
# in milliseconds; the TAT is stored with microsecond precision, and the key expires when
# its TAT passes, so Redis forgets idle keys by itself. The wait comes back in microseconds
# because Redis truncates Lua numbers to integers.
_GCRA_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now) or now
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - tolerance
if allow_at > now then
  return {0, math.ceil((allow_at - now) * 1000)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, 0}
"""


class RedisRateLimiter:
    """Limits shared by every process: one Redis key per limited thing.

    When Redis fails or is slow, every hit is allowed (fail open) and a warning is logged
    once per outage: rate limits protect the chat, and a Redis hiccup must not take the chat
    down with it. During an outage nothing is limited.

    Each call bounds itself (REDIS_LIMIT_TIMEOUT_S); build ``redis`` with
    ``socket_timeout=None`` for the reason given in realtime.backends.redis."""

    def __init__(self, redis: Redis, key_prefix: str = "liveop:") -> None:
        # Imported here so that the embedded default never pays for loading redis-py.
        from redis.exceptions import RedisError

        # Everything an outage can raise: redis-py wraps most socket errors, not all of them.
        self._outage_errors = (RedisError, OSError)
        self._script = redis.register_script(_GCRA_SCRIPT)
        self._key_prefix = key_prefix
        self._failing = False

    async def hit(self, key: str, rule: Rule) -> Decision:
        args = [f"{rule.interval_s * 1000:.3f}", f"{rule.tolerance_s * 1000:.3f}"]
        try:
            async with asyncio.timeout(REDIS_LIMIT_TIMEOUT_S):
                allowed, wait_us = await self._script(keys=[self._key_prefix + key], args=args)
        except self._outage_errors as exc:
            if not self._failing:
                log.warning("rate limits: Redis unavailable, allowing every request: %r", exc)
            self._failing = True
            return ALLOWED
        self._failing = False
        return ALLOWED if allowed else Decision(False, int(wait_us) / 1_000_000)
