"""Operator availability and online visitors, announced to the account as they change."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from realtime.presence import (
    VISITOR_REFRESH_S,
    ConnectedVisitors,
    Presence,
    parse_session_mark,
    session_mark,
)
from server.business_hours import is_open, next_opening
from server.errors import Invalid, NotFound
from server.event_catalogue import PRESENCE
from server.events import EventFeed
from storage.base import InboxQuery, Store
from storage.models import Conversation, Operator, Site

# The most visitors one listing returns; the busiest sites page through the inbox instead.
VISITORS_MAX = 200
# Presence marks one listing looks at, newest first: each conversation mark costs a store read,
# so a site filter over a busy account stops here even with fewer than VISITORS_MAX matches.
VISITORS_SCAN_MAX = 1000
# A widget session's conversations checked for an open socket (its newest ones; a window
# follows the newest it remembers).
SESSION_CONVERSATIONS_MAX = 20
# A heartbeat names the sites an operator serves; more than this is a client bug.
SITES_MAX = 100


@dataclass(frozen=True, slots=True)
class Visitor:
    site_id: int
    session_id: str | None
    conversation: Conversation | None


@dataclass(frozen=True, slots=True)
class OperatorStatus:
    online: bool
    away_site_ids: tuple[int, ...]
    # Away on every site of the account: the inbox's Online/Away switch set to Away.
    away: bool = False


# Told when an operator can take conversations again (issue 18: their teams' queues hand out
# what waits there, ConversationEngine.assign_waiting).
OnAvailable = Callable[[Operator], Awaitable[object]]


@dataclass(frozen=True, slots=True)
class SiteAvailability:
    """What a site's widget tells its visitor (issue 18)."""

    staffed: bool
    open: bool
    # When a closed site opens next (epoch seconds); None while it is open.
    opens_at: float | None

    @property
    def away(self) -> bool:
        return not (self.staffed and self.open)


class Availability:
    def __init__(
        self, presence: Presence, feed: EventFeed, store: Store, on_available: OnAvailable
    ) -> None:
        self._presence = presence
        self._feed = feed
        self._store = store
        self._on_available = on_available
        self.connected = ConnectedVisitors(presence)

    async def heartbeat(self, operator: Operator, site_ids: Sequence[int]) -> None:
        if len(site_ids) > SITES_MAX:
            raise Invalid("invalid_field", f"site_ids may name at most {SITES_MAX} sites")
        if any(s < 1 for s in site_ids):
            raise Invalid("invalid_field", "site_ids must be positive whole numbers")
        await self._require_sites(operator.account_id, site_ids)
        if await self._presence.operator_beat(operator.account_id, operator.id):
            await self._announce(operator, online=True)
            await self._on_available(operator)

    async def status(self, operator: Operator, site_id: int | None) -> OperatorStatus:
        await self._require_sites(operator.account_id, [] if site_id is None else [site_id])
        beating = operator.id in await self._presence.operators_online(operator.account_id)
        away = await self._presence.away_sites(operator.account_id, operator.id)
        online = beating and (site_id not in away if site_id is not None else True)
        everywhere = await self._away_everywhere(operator.account_id, away)
        return OperatorStatus(online, tuple(sorted(away)), everywhere)

    async def set_status(self, operator: Operator, site_id: int, online: bool) -> None:
        await self._require_sites(operator.account_id, [site_id])
        await self._presence.set_away(operator.account_id, operator.id, site_id, not online)
        await self._announce(operator, online=online, site_id=site_id)
        if online:
            await self._on_available(operator)

    async def set_away(self, operator: Operator, away: bool) -> None:
        """The inbox's Online/Away switch: away from (or back on) every site of the account,
        sites added later included once the switch is set again."""
        for site in await self._store.list_sites(operator.account_id):
            await self._presence.set_away(operator.account_id, operator.id, site.id, away)
        # Still at their inbox: online, and ``away`` in the event says they take no chats.
        beating = operator.id in await self._presence.operators_online(operator.account_id)
        await self._announce(operator, online=beating)
        if beating and not away:
            await self._on_available(operator)

    async def online_visitors(self, account_id: str, site_id: int | None = None) -> list[Visitor]:
        """Visitors seen lately, newest first: those in a conversation, and widget sessions
        that have none yet (the ones a proactive message can reach)."""
        await self._require_sites(account_id, [] if site_id is None else [site_id])
        visitors: list[Visitor] = []
        sessions_in_conversations: set[str] = set()
        marks = (await self._presence.visitors_online(account_id))[:VISITORS_SCAN_MAX]
        for mark in marks:
            session = parse_session_mark(mark)
            if session is not None:
                visitors.append(Visitor(session[0], session[1], None))
                continue
            conversation = await self._store.get_conversation(account_id, mark)
            if conversation is not None:
                visitors.append(
                    Visitor(conversation.site_id, conversation.session_id, conversation)
                )
                if conversation.session_id is not None:
                    sessions_in_conversations.add(conversation.session_id)
        listed = [
            v for v in visitors
            if (site_id is None or v.site_id == site_id)
            and (v.conversation is not None or v.session_id not in sessions_in_conversations)
        ]  # fmt: skip
        return listed[:VISITORS_MAX]

    async def session_online(self, account_id: str, site_id: int, session_id: str) -> bool:
        """Whether the session's widget is here: waiting without a conversation, or following
        one of its conversations. Two reads, however many visitors the account has."""
        marks = set(await self._presence.visitors_online(account_id))
        if session_mark(site_id, session_id) in marks:
            return True
        mine = InboxQuery(
            viewer=0,
            every_team=True,
            session_id=session_id,
            site_id=site_id,
            limit=SESSION_CONVERSATIONS_MAX,
        )
        return any(c.id in marks for c in await self._store.list_conversations(account_id, mine))

    async def operators(self, account_id: str) -> list[tuple[Operator, bool, bool]]:
        """Every operator of the account, with whether they are online now (their inbox is
        open) and whether they set themselves away everywhere."""
        online = await self._presence.operators_online(account_id)
        site_ids = {s.id for s in await self._store.list_sites(account_id)}
        found = []
        for o in await self._store.list_operators(account_id):
            away = site_ids <= await self._presence.away_sites(account_id, o.id)
            found.append((o, o.id in online, away))
        return found

    async def site_availability(self, site: Site, now: float) -> SiteAvailability:
        """Whether anybody of the site's team (every operator, for a site routed to no team)
        is online and not away from it, and whether the site is within its business hours."""
        online = await self._presence.operators_online(site.account_id)
        if site.team_id is not None:
            team = next(
                (t for t in await self._store.list_teams(site.account_id) if t.id == site.team_id),
                None,
            )
            # A site whose team was deleted routes to nobody in particular: anybody answers.
            if team is not None:
                online &= set(team.member_ids)
        staffed = False
        for operator_id in online:
            if site.id not in await self._presence.away_sites(site.account_id, operator_id):
                staffed = True
                break
        return SiteAvailability(staffed, is_open(site, now), next_opening(site, now))

    async def _away_everywhere(self, account_id: str, away: set[int]) -> bool:
        return {s.id for s in await self._store.list_sites(account_id)} <= away

    async def visitor_polled(self, account_id: str, convo_id: str) -> None:
        await self._presence.visitors_seen(account_id, [convo_id])

    async def refresh_connected(self) -> None:
        """Runs for the app's lifetime, keeping open sockets' visitors marked online."""
        while True:
            await asyncio.sleep(VISITOR_REFRESH_S)
            with contextlib.suppress(Exception):
                await self.connected.refresh()

    async def _require_sites(self, account_id: str, site_ids: Sequence[int]) -> None:
        """A site of another account is as absent as one that never existed."""
        if not site_ids:
            return
        unknown = set(site_ids) - {s.id for s in await self._store.list_sites(account_id)}
        if unknown:
            raise NotFound("site_not_found", f"no site {min(unknown)}")

    async def _announce(
        self, operator: Operator, *, online: bool, site_id: int | None = None
    ) -> None:
        account_id = operator.account_id
        away = await self._away_everywhere(
            account_id, await self._presence.away_sites(account_id, operator.id)
        )
        data = orjson.dumps(
            {"operator_id": operator.id, "online": online, "site_id": site_id, "away": away}
        )
        await self._feed.ephemeral(operator.account_id, PRESENCE, data)
