"""Who is here: operators by heartbeat, visitors by connection or recent poll. Ephemeral state
with expiry, in memory for one process or in Redis for many; never in the message log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

# Seed 001: operators heartbeat "every ~30s"; two missed beats and a margin mean offline.
OPERATOR_TTL_S = 75.0
# The definition of an online visitor: connected, or polled within the last minute.
VISITOR_TTL_S = 60.0
# Presence is a convenience: a slow Redis must not hold up the request that asked.
REDIS_PRESENCE_TIMEOUT_S = 0.5
# Visitor marks between two sweeps of expired ones in the memory backend: often enough to
# bound memory, rarely enough that the sweep costs nothing per poll.
SWEEP_EVERY = 10_000
# Connected visitors are re-marked this often by one task per process, well inside the TTL.
VISITOR_REFRESH_S = 20.0
# Live widget-session marks (visitors without a conversation yet) one client address may hold
# in an account: a household or an office with several visitors fits, a script inventing
# session ids does not. Per account, fewer than an online listing scans, so a flood from many
# addresses cannot push every real visitor out of it.
SESSIONS_PER_ADDRESS = 30
SESSIONS_PER_ACCOUNT = 500

Clock = Callable[[], float]


def session_mark(site_id: int, session_id: str) -> str:
    """A visitor mark for a widget session that has no conversation yet. Marks are otherwise
    conversation ids, which never contain ':'."""
    return f"s{site_id}:{session_id}"


def parse_session_mark(mark: str) -> tuple[int, str] | None:
    """(site id, session id) of a session mark; None for a conversation id."""
    site, sep, session_id = mark.partition(":")
    if not sep or not site.startswith("s") or not site[1:].isdigit():
        return None
    return int(site[1:]), session_id


class Presence(Protocol):
    """Guarantees: a mark lasts its TTL after the last refresh; reads never raise for an
    outage of the backing service (they answer as if nobody were there)."""

    async def operator_beat(self, account_id: str, operator_id: int) -> bool:
        """Marks the operator online; True when they were not online before."""

    async def operators_online(self, account_id: str) -> set[int]: ...

    async def set_away(self, account_id: str, operator_id: int, site_id: int, away: bool) -> None:
        """An operator's own availability toggle per site; kept until changed."""

    async def away_sites(self, account_id: str, operator_id: int) -> set[int]: ...

    async def visitors_seen(self, account_id: str, convo_ids: Iterable[str]) -> None:
        """Marks visitors online: by conversation id, or by session_mark() before they have one."""

    async def visitors_online(self, account_id: str) -> list[str]:
        """Marks of visitors seen within VISITOR_TTL_S, most recent first."""

    async def session_seen(self, account_id: str, mark: str, address: str) -> bool:
        """Marks a widget session (a session_mark()) online, as visitors_seen, unless it is
        new and ``address`` already holds SESSIONS_PER_ADDRESS live session marks in the
        account, or the account SESSIONS_PER_ACCOUNT; a live one is always refreshed.
        True when marked."""


class MemoryPresence:
    def __init__(self, clock: Clock = time.time) -> None:
        self._clock = clock
        self._operators: dict[str, dict[int, float]] = {}
        self._away: dict[tuple[str, int], set[int]] = {}
        self._visitors: dict[str, dict[str, float]] = {}
        # account -> session mark -> (address, expiry)
        self._sessions: dict[str, dict[str, tuple[str, float]]] = {}
        self._marks = 0

    async def operator_beat(self, account_id: str, operator_id: int) -> bool:
        now = self._clock()
        beats = self._operators.setdefault(account_id, {})
        was_online = beats.get(operator_id, 0.0) > now
        beats[operator_id] = now + OPERATOR_TTL_S
        return not was_online

    async def operators_online(self, account_id: str) -> set[int]:
        now = self._clock()
        beats = self._operators.get(account_id, {})
        for operator_id in [o for o, expiry in beats.items() if expiry <= now]:
            del beats[operator_id]
        return set(beats)

    async def set_away(self, account_id: str, operator_id: int, site_id: int, away: bool) -> None:
        sites = self._away.setdefault((account_id, operator_id), set())
        if away:
            sites.add(site_id)
        else:
            sites.discard(site_id)

    async def away_sites(self, account_id: str, operator_id: int) -> set[int]:
        return set(self._away.get((account_id, operator_id), set()))

    async def visitors_seen(self, account_id: str, convo_ids: Iterable[str]) -> None:
        now = self._clock()
        seen = self._visitors.setdefault(account_id, {})
        for convo_id in convo_ids:
            seen[convo_id] = now + VISITOR_TTL_S
        self._marks += 1
        if self._marks > SWEEP_EVERY:
            # Reads trim only the account they read; an account nobody lists would keep
            # every visitor it ever had.
            self._marks = 0
            self._visitors = {
                account: live
                for account, marks in self._visitors.items()
                if (live := {c: e for c, e in marks.items() if e > now})
            }
            self._sessions = {
                account: kept
                for account, sessions in self._sessions.items()
                if (kept := {m: held for m, held in sessions.items() if held[1] > now})
            }

    async def visitors_online(self, account_id: str) -> list[str]:
        now = self._clock()
        seen = self._visitors.get(account_id, {})
        for convo_id in [c for c, expiry in seen.items() if expiry <= now]:
            del seen[convo_id]
        return sorted(seen, key=seen.__getitem__, reverse=True)

    async def session_seen(self, account_id: str, mark: str, address: str) -> bool:
        now = self._clock()
        sessions = self._sessions.setdefault(account_id, {})
        for stale in [m for m, (_, expiry) in sessions.items() if expiry <= now]:
            del sessions[stale]
        if mark not in sessions:
            from_address = sum(1 for held, _ in sessions.values() if held == address)
            if from_address >= SESSIONS_PER_ADDRESS or len(sessions) >= SESSIONS_PER_ACCOUNT:
                return False
        sessions[mark] = (address, now + VISITOR_TTL_S)
        await self.visitors_seen(account_id, [mark])
        return True


class RedisPresence:
    """Sorted sets scored by expiry time, so every process sees the same presence and stale
    members are trimmed on read.

    Each call bounds itself (REDIS_PRESENCE_TIMEOUT_S); build ``client`` with
    ``socket_timeout=None`` for the reason given in realtime.backends.redis."""

    def __init__(self, client: Redis, prefix: str = "liveop:", clock: Clock = time.time) -> None:
        # Imported here so that the embedded default never pays for loading redis-py.
        from redis.exceptions import RedisError

        # Everything an outage can raise: redis-py wraps most socket errors, not all of them.
        self._outage = (RedisError, OSError)
        self._redis = client
        self._prefix = prefix
        self._clock = clock

    def _key(self, kind: str, account_id: str) -> str:
        return f"{self._prefix}{kind}:{account_id}"

    async def operator_beat(self, account_id: str, operator_id: int) -> bool:
        now = self._clock()
        key = self._key("operators", account_id)
        try:
            async with (
                asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S),
                self._redis.pipeline(transaction=True) as pipe,
            ):
                pipe.zscore(key, str(operator_id))
                pipe.zadd(key, {str(operator_id): now + OPERATOR_TTL_S})
                previous, _ = await pipe.execute()
        except self._outage:
            log.warning("presence unavailable: operator heartbeat not recorded")
            return False
        return previous is None or float(previous) <= now

    async def operators_online(self, account_id: str) -> set[int]:
        return {int(m) for m in await self._live(self._key("operators", account_id))}

    async def set_away(self, account_id: str, operator_id: int, site_id: int, away: bool) -> None:
        key = self._key(f"away:{operator_id}", account_id)
        try:
            async with asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S):
                if away:
                    await self._redis.sadd(key, str(site_id))
                else:
                    await self._redis.srem(key, str(site_id))
        except self._outage:
            log.warning("presence unavailable: availability not recorded")

    async def away_sites(self, account_id: str, operator_id: int) -> set[int]:
        try:
            async with asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S):
                members = await self._redis.smembers(self._key(f"away:{operator_id}", account_id))
        except self._outage:
            return set()
        return {int(m) for m in members}

    async def visitors_seen(self, account_id: str, convo_ids: Iterable[str]) -> None:
        expiry = self._clock() + VISITOR_TTL_S
        mapping = {convo_id: expiry for convo_id in convo_ids}
        if not mapping:
            return
        try:
            async with asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S):
                await self._redis.zadd(self._key("visitors", account_id), mapping)
        except self._outage:
            log.warning("presence unavailable: visitors not recorded")

    async def visitors_online(self, account_id: str) -> list[str]:
        return await self._live(self._key("visitors", account_id))

    async def session_seen(self, account_id: str, mark: str, address: str) -> bool:
        now = self._clock()
        keys = [
            self._key("visitors", account_id),
            self._key("sessions", account_id),
            self._key(f"sessions:{address}", account_id),
        ]
        args: list[str | float] = [
            mark, now, now + VISITOR_TTL_S, SESSIONS_PER_ADDRESS, SESSIONS_PER_ACCOUNT,
        ]  # fmt: skip
        try:
            async with asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S):
                marked = await self._redis.eval(_SESSION_SEEN, len(keys), *keys, *args)
        except self._outage:
            log.warning("presence unavailable: visitors not recorded")
            return False
        return bool(marked)

    async def _live(self, key: str) -> list[str]:
        now = self._clock()
        try:
            async with (
                asyncio.timeout(REDIS_PRESENCE_TIMEOUT_S),
                self._redis.pipeline(transaction=True) as pipe,
            ):
                pipe.zremrangebyscore(key, "-inf", now)
                pipe.zrevrangebyscore(key, "+inf", now)
                _, members = await pipe.execute()
        except self._outage:
            return []
        return [m.decode() if isinstance(m, bytes) else str(m) for m in members]


# One round trip, atomic, so concurrent polls cannot slip past the bounds together. KEYS: the
# account's visitors, its session marks, the address's session marks; ARGV: mark, now,
# expiry, the two bounds. Session sets expire with their last member.
_SESSION_SEEN = """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  if redis.call('ZCARD', KEYS[3]) >= tonumber(ARGV[4])
      or redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then
    return 0
  end
end
local ttl = math.ceil(tonumber(ARGV[3]) - tonumber(ARGV[2]))
for i = 1, 3 do
  redis.call('ZADD', KEYS[i], ARGV[3], ARGV[1])
end
redis.call('EXPIRE', KEYS[2], ttl)
redis.call('EXPIRE', KEYS[3], ttl)
return 1
"""


class ConnectedVisitors:
    """This process's open visitor sockets, re-marked online by one task for all of them
    rather than a timer per connection."""

    def __init__(self, presence: Presence) -> None:
        self._presence = presence
        self._open: dict[tuple[str, str], int] = {}

    async def opened(self, account_id: str, convo_id: str) -> None:
        key = (account_id, convo_id)
        self._open[key] = self._open.get(key, 0) + 1
        await self._presence.visitors_seen(account_id, [convo_id])

    async def session_opened(self, account_id: str, mark: str, address: str) -> bool:
        """A socket waiting in a widget session, bounded as Presence.session_seen; True when
        it counts as online (and is then kept so until closed)."""
        if not await self._presence.session_seen(account_id, mark, address):
            return False
        key = (account_id, mark)
        self._open[key] = self._open.get(key, 0) + 1
        return True

    def closed(self, account_id: str, convo_id: str) -> None:
        key = (account_id, convo_id)
        left = self._open.get(key, 0) - 1
        if left > 0:
            self._open[key] = left
        else:
            self._open.pop(key, None)

    async def refresh(self) -> None:
        by_account: dict[str, list[str]] = {}
        for account_id, convo_id in self._open:
            by_account.setdefault(account_id, []).append(convo_id)
        for account_id, convo_ids in by_account.items():
            await self._presence.visitors_seen(account_id, convo_ids)
