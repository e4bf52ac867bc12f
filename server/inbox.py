"""The operators' views of an account's conversations: the unified inbox, the queues seed 001
calls active chats, their counts, and blocked visitors. Every view is one InboxQuery, so the
visibility rules (teams, blocks, accounts) are written once, in storage/inbox_sql.py."""

from __future__ import annotations

import base64
import binascii
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import orjson

from server.errors import Invalid, NotFound
from server.text import has_control_characters
from storage.base import InboxQuery, Owner, Store
from storage.inbox_sql import SEARCH_WORDS_MAX
from storage.models import SOURCE_APPS, STATUSES, Conversation, Operator, SourceApp, Status

PAGE_DEFAULT = 50
PAGE_MAX = 200
SEARCH_MAX_CHARS = 200
# Unresolved: what seed 001's "active chats" lists, and what its counts split.
UNRESOLVED: tuple[Status, ...] = ("open", "waiting", "active")
PENDING: tuple[Status, ...] = ("open", "waiting")
# The inbox's channel names (seed 003's tags) for each source app.
CHANNELS: dict[str, SourceApp] = {
    "chatbot": "chatbot",
    "sms": "smsbroadcast",
    "email": "emailbroadcast",
    "chat": "liveoperator",
}
OWNERS: tuple[Owner, ...] = ("mine", "unassigned", "all")


@dataclass(frozen=True, slots=True)
class InboxFilters:
    """What a listing asks for, as it came in (names as the HTTP API spells them)."""

    statuses: Sequence[str] | None = None
    channels: Sequence[str] | None = None
    owner: str = "all"
    team_id: int | None = None
    site_id: int | None = None
    search: str | None = None
    cursor: str | None = None
    limit: int = PAGE_DEFAULT


@dataclass(frozen=True, slots=True)
class Page:
    conversations: list[Conversation]
    # Opaque; None when this page is the last.
    next_cursor: str | None


class Inbox:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def listing(self, viewer: Operator, filters: InboxFilters) -> Page:
        if not 1 <= filters.limit <= PAGE_MAX:
            raise Invalid("invalid_field", f"limit must be between 1 and {PAGE_MAX}")
        if filters.search is not None and len(filters.search) > SEARCH_MAX_CHARS:
            raise Invalid("invalid_field", f"q is longer than {SEARCH_MAX_CHARS} characters")
        if filters.search is not None and len(filters.search.split()) > SEARCH_WORDS_MAX:
            raise Invalid("invalid_field", f"q has more than {SEARCH_WORDS_MAX} words")
        if filters.search is not None and "\x00" in filters.search:
            # Line breaks and tabs are harmless in a search; NUL reaches PostgreSQL.
            raise Invalid("invalid_characters", "q contains a NUL character")
        query = await self._query(
            viewer,
            InboxQuery(
                viewer=viewer.id,
                statuses=_statuses(filters.statuses),
                source_apps=_channels(filters.channels),
                owner=_owner(filters.owner),
                team_id=filters.team_id,
                site_id=filters.site_id,
                search=(filters.search or "").strip() or None,
                after=_decode_cursor(filters.cursor) if filters.cursor else None,
                # One more than asked tells whether another page exists without a count.
                limit=filters.limit + 1,
            ),
        )
        found = await self._store.list_conversations(viewer.account_id, query)
        page, more = found[: filters.limit], len(found) > filters.limit
        return Page(page, _encode_cursor(page[-1]) if more and page else None)

    async def active(self, viewer: Operator, site_id: int | None) -> list[Conversation]:
        query = await self._query(
            viewer,
            InboxQuery(viewer=viewer.id, statuses=UNRESOLVED, site_id=site_id, limit=PAGE_MAX),
        )
        return await self._store.list_conversations(viewer.account_id, query)

    async def counts(self, viewer: Operator) -> tuple[int, int]:
        """(pending, active): unresolved conversations waiting for an operator, and taken."""
        query = await self._query(viewer, InboxQuery(viewer=viewer.id, statuses=UNRESOLVED))
        by_status = await self._store.count_conversations(viewer.account_id, query)
        return sum(by_status.get(s, 0) for s in PENDING), by_status.get("active", 0)

    async def blocked(self, viewer: Operator) -> list[Conversation]:
        query = await self._query(
            viewer, InboxQuery(viewer=viewer.id, blocked=True, limit=PAGE_MAX)
        )
        return await self._store.list_conversations(viewer.account_id, query)

    async def _query(self, viewer: Operator, asked: InboxQuery) -> InboxQuery:
        """``asked`` with what ``viewer`` may see; a team or site filter must name one of
        their account's."""
        teams = await self._store.list_teams(viewer.account_id)
        query = dataclasses.replace(
            asked,
            viewer_teams=tuple(t.id for t in teams if viewer.id in t.member_ids),
            every_team=viewer.is_admin,
        )
        if query.team_id is not None and all(t.id != query.team_id for t in teams):
            raise NotFound("team_not_found", f"no team {query.team_id}")
        site_id = query.site_id
        if site_id is not None and await self._store.get_site(viewer.account_id, site_id) is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        return query


def _statuses(names: Sequence[str] | None) -> tuple[Status, ...] | None:
    if names is None:
        return None
    chosen = tuple(s for s in STATUSES if s in names)
    if len(chosen) != len(set(names)):
        raise Invalid("invalid_field", f"status must be among {', '.join(STATUSES)}")
    return chosen


def _channels(names: Sequence[str] | None) -> tuple[SourceApp, ...] | None:
    return None if names is None else tuple(_channel(n) for n in names)


def _channel(name: str) -> SourceApp:
    """Either spelling: the inbox's tag (sms) or seed 000's source app (smsbroadcast)."""
    if name in CHANNELS:
        return CHANNELS[name]
    for app in SOURCE_APPS:
        if name == app:
            return app
    raise Invalid("invalid_field", f"channel must be among {', '.join(CHANNELS)}")


def _owner(name: str) -> Owner:
    for owner in OWNERS:
        if name == owner:
            return owner
    raise Invalid("invalid_field", f"owner must be one of {', '.join(OWNERS)}")


def _encode_cursor(last: Conversation) -> str:
    raw = orjson.dumps([last.last_activity, last.id])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        activity, convo_id = orjson.loads(raw)
        # A convo id we issued never holds a control character; a forged one must not reach
        # the query (PostgreSQL refuses NUL).
        if (
            isinstance(activity, int | float)
            and isinstance(convo_id, str)
            and not has_control_characters(convo_id)
        ):
            return float(activity), convo_id
    except (binascii.Error, ValueError, TypeError, orjson.JSONDecodeError):
        pass
    raise Invalid("invalid_cursor", "cursor is not one this server issued")
