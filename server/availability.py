"""Operator availability and online visitors, announced to the account as they change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from realtime.presence import VISITOR_REFRESH_S, ConnectedVisitors, Presence
from server.auth import Principal
from server.errors import Invalid
from server.events import EventFeed
from storage.base import Store
from storage.models import Conversation

# The most visitors one listing returns; the busiest sites page through the inbox instead.
VISITORS_MAX = 200
PRESENCE = "presence"
# A heartbeat names the sites an operator serves; more than this is a client bug.
SITES_MAX = 100


@dataclass(frozen=True, slots=True)
class OperatorStatus:
    online: bool
    away_site_ids: tuple[int, ...]


class Availability:
    def __init__(self, presence: Presence, feed: EventFeed, store: Store) -> None:
        self._presence = presence
        self._feed = feed
        self._store = store
        self.connected = ConnectedVisitors(presence)

    async def heartbeat(self, principal: Principal, site_ids: Sequence[int]) -> None:
        operator = _operator_id(principal)
        if len(site_ids) > SITES_MAX:
            raise Invalid("invalid_field", f"site_ids may name at most {SITES_MAX} sites")
        if any(s < 1 for s in site_ids):
            raise Invalid("invalid_field", "site_ids must be positive whole numbers")
        if await self._presence.operator_beat(principal.account_id, operator):
            await self._announce(principal, online=True)

    async def status(self, principal: Principal, site_id: int | None) -> OperatorStatus:
        operator = _operator_id(principal)
        beating = operator in await self._presence.operators_online(principal.account_id)
        away = await self._presence.away_sites(principal.account_id, operator)
        online = beating and (site_id not in away if site_id is not None else True)
        return OperatorStatus(online, tuple(sorted(away)))

    async def set_status(self, principal: Principal, site_id: int, online: bool) -> None:
        operator = _operator_id(principal)
        await self._presence.set_away(principal.account_id, operator, site_id, not online)
        await self._announce(principal, online=online, site_id=site_id)

    async def online_visitors(self, account_id: str) -> list[Conversation]:
        convo_ids = (await self._presence.visitors_online(account_id))[:VISITORS_MAX]
        found = [await self._store.get_conversation(account_id, c) for c in convo_ids]
        return [c for c in found if c is not None]

    async def visitor_polled(self, account_id: str, convo_id: str) -> None:
        await self._presence.visitors_seen(account_id, [convo_id])

    async def refresh_connected(self) -> None:
        """Runs for the app's lifetime, keeping open sockets' visitors marked online."""
        while True:
            await asyncio.sleep(VISITOR_REFRESH_S)
            with contextlib.suppress(Exception):
                await self.connected.refresh()

    async def _announce(
        self, principal: Principal, *, online: bool, site_id: int | None = None
    ) -> None:
        data = orjson.dumps(
            {"operator_id": _operator_id(principal), "online": online, "site_id": site_id}
        )
        await self._feed.ephemeral(principal.account_id, PRESENCE, data)


def _operator_id(principal: Principal) -> int:
    if principal.operator is None:
        raise Invalid("operator_required", "this needs an operator's token, not the API key")
    return principal.operator.id
