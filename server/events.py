"""From engine changes to client events: decide and render them before commit, ring after.

Two kinds of channel, each with its own seq:
- ``acct:{account}`` carries every event of an account to its operators (SSE, tenant
  WebSocket), sequenced by the account event seq, rendered in the operator format.
- ``conv:{conversation}`` carries what the visitor may see (WebSocket), sequenced by the
  visitor seq (gapless: notes have none), rendered in seed 000's camelCase.
Which kinds exist, which are log and which state, and who hears each: server/event_catalogue.py.

Log events are rendered once per audience when the engine decides the change (``announced``)
and committed with it, so the live ring and every later replay send the very same bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from operator import attrgetter
from typing import Any

import orjson

from realtime.hub import Hub
from realtime.outbox import Fetch, Item
from realtime.typing_indicators import Side
from server.event_catalogue import (
    CONTROL_CHANGED,
    CONVERSATION_NEW,
    CONVERSATION_QUALIFIED,
    CONVERSATION_UPDATED,
    MESSAGE_NEW,
    READ,
    SESSION_CONVERSATION,
    STATUS,
    TYPING,
    Audience,
    EventKind,
)
from server.render.camel_case import message_json
from server.render.snake_case import conversation_data, message_data
from server.timeline import NO_CAUSE, TIMELINE_KEY, Cause, lines
from server.webhooks import hooks_of
from storage.base import Decide, Store
from storage.models import (
    Change,
    Committed,
    Conversation,
    Event,
    EventDetail,
    Message,
    MessageReplay,
    NewEvent,
)

log = logging.getLogger(__name__)

# Seconds a typing event stays true on the client without another heartbeat (seed 000).
TYPING_EXPIRES_S = 5


def account_channel(account_id: str) -> str:
    return f"acct:{account_id}"


def conversation_channel(convo_id: str) -> str:
    return f"conv:{convo_id}"


def session_channel(account_id: str, session_id: str) -> str:
    """A widget session's sockets that follow no conversation yet, so an operator's
    proactive message can hand them one."""
    return f"sess:{account_id}:{session_id}"


# Called with every change after its events rang, e.g. to send push notifications.
CommitListener = Callable[[Committed], Awaitable[None]]


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


# Fields whose change is worth a conversation:updated event on its own. last_seq and
# last_activity move with every message, which message:new already announces.
_ANNOUNCED_FIELDS = (
    "status", "mode", "operator_id", "team_id", "user_info", "resolved_at", "site_id",
    "block_type", "translate", "visitor_lang", "rating", "rating_comment", "rated_resolved_at",
    "control", "attributes",
)  # fmt: skip


def announced(decide: Decide, cause: Cause = NO_CAUSE) -> Decide:
    """``decide`` with the events of each change it makes attached, rendered as each audience
    receives them. Runs where the Store runs ``decide``, so the payloads show the conversation
    exactly as this change commits it; ``cause`` says who made it (server/timeline.py)."""

    def decide_and_announce(current: Conversation | None) -> Change | None:
        change = decide(current)
        return None if change is None else announce(change, cause)

    return decide_and_announce


def announce(change: Change, cause: Cause = NO_CAUSE) -> Change:
    """``change`` with the events it produces, and those of them webhooks may hear."""
    # The constructor, not dataclasses.replace: this runs inside the write, for every change.
    events = _events(change, cause)
    return Change(
        change.before,
        change.after,
        change.messages,
        events,
        change.identity,
        change.typed,
        change.contact_name,
        change.payloads,
        hooks_of(change.before, change.after, events),
    )


def _events(change: Change, cause: Cause) -> tuple[NewEvent, ...]:
    before, after = change.before, change.after
    conversation = conversation_data(after)
    events: list[NewEvent] = []
    if before is None:
        events.append(NewEvent(CONVERSATION_NEW.name, None, _text(conversation)))
    events.extend(
        NewEvent(
            MESSAGE_NEW.name,
            m.seq,
            _text(_message_new(m, conversation)),
            None if m.private else _text(message_json(m, visitor=True)),
        )
        for m in change.messages
    )
    if before is not None and _announces_update(before, change):
        timeline = lines(change, cause)
        updated = conversation | {TIMELINE_KEY: timeline} if timeline else conversation
        events.append(NewEvent(CONVERSATION_UPDATED.name, None, _text(updated)))
    previous = before.control if before is not None else "bot"
    if previous != after.control:
        events.append(NewEvent(CONTROL_CHANGED.name, None, _text(_control(previous, after))))
    if after.qualified_at is not None and (before is None or before.qualified_at is None):
        events.append(NewEvent(CONVERSATION_QUALIFIED.name, None, _text(conversation)))
    return tuple(events)


def _control(previous: str, after: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": after.id,
        "control": after.control,
        "previous": previous,
        "operator_id": after.operator_id,
        "conversation": conversation_data(after),
    }


_ANNOUNCED = attrgetter(*_ANNOUNCED_FIELDS)


def _announces_update(before: Conversation, change: Change) -> bool:
    after = change.after
    if _ANNOUNCED(before) != _ANNOUNCED(after):
        return True
    # A read cursor moving without a new message changes the unread badge operators see.
    return not change.messages and before.unread != after.unread


def _text(data: Any) -> str:
    return orjson.dumps(data).decode()


def _message_new(message: Message, conversation: dict[str, Any]) -> dict[str, Any]:
    return {
        "conversation_id": message.convo_id,
        "message": message_data(message),
        "conversation": conversation,
    }


def operator_payload(event: Event, conversation: Conversation, message: Message | None) -> bytes:
    """What the account's operators receive for ``event``: as committed; for an event written
    before migration 0006, rendered from its rows as they are now."""
    if event.data is not None:
        return event.data.encode()
    if event.kind == MESSAGE_NEW.name and message is not None:
        return _json(_message_new(message, conversation_data(conversation)))
    return _json(conversation_data(conversation))


def visitor_payload(replay: MessageReplay) -> bytes:
    """What the visitor receives for a message, as committed (or rendered, see above)."""
    if replay.data is not None:
        return replay.data.encode()
    return _json(message_json(replay.message, visitor=True))


def visitor_status(conversation: Conversation) -> bytes:
    return _json({"convoID": conversation.id, "status": conversation.status})


class EventFeed:
    def __init__(self, hub: Hub, store: Store, listeners: Sequence[CommitListener] = ()) -> None:
        self._hub = hub
        self._store = store
        self._listeners = tuple(listeners)

    async def committed(self, committed: Committed) -> None:
        """Rings every channel the change concerns, then tells the listeners. Never raises:
        the change is committed, and a client that misses the ring catches up from the store."""
        if committed.duplicate or not committed.events:
            return
        try:
            await self._ring(committed)
        except Exception:
            log.exception("publishing committed events failed; clients will catch up")
        for listener in self._listeners:
            try:
                await listener(committed)
            except Exception:
                log.exception("a post-commit listener failed")

    async def _ring(self, committed: Committed) -> None:
        conversation = committed.conversation
        by_seq = {m.seq: m for m in committed.messages}
        account = account_channel(conversation.account_id)
        visitor = conversation_channel(conversation.id)
        for event in committed.events:
            message = by_seq.get(event.msg_seq) if event.msg_seq is not None else None
            data = operator_payload(event, conversation, message)
            await self._hub.publish(account, event.seq, event.kind, data)
            if event.visitor_data is not None and message is not None:
                await self._hub.publish(
                    visitor, _visitor_seq(message), event.kind, event.visitor_data.encode()
                )
            elif event.kind == CONVERSATION_UPDATED.name and _status_changed(committed):
                await self._hub.publish(visitor, None, STATUS.name, visitor_status(conversation))

    async def read(self, committed: Committed) -> None:
        """Tells each side how far the other has read, when a read cursor moved."""
        before, after = committed.before, committed.conversation
        if before is None:
            return
        try:
            if before.visitor_read_seq != after.visitor_read_seq:
                data = {"conversation_id": after.id, "visitor_read_seq": after.visitor_read_seq}
                await self._hub.publish(
                    account_channel(after.account_id), None, READ.name, _json(data)
                )
            if before.operator_read_visitor_seq != after.operator_read_visitor_seq:
                seen = {"convoID": after.id, "seenSeq": after.operator_read_visitor_seq}
                await self._hub.publish(
                    conversation_channel(after.id), None, READ.name, _json(seen)
                )
        except Exception:
            log.exception("publishing a read receipt failed")

    async def typing(self, account_id: str, convo_id: str, side: Side) -> None:
        data = _json({"conversation_id": convo_id, "side": side, "expires_in": TYPING_EXPIRES_S})
        try:
            await self._hub.publish(account_channel(account_id), None, TYPING.name, data)
            if side == "operator":
                await self._hub.publish(conversation_channel(convo_id), None, TYPING.name, data)
        except Exception:
            log.exception("publishing a typing event failed")

    async def session_conversation(self, account_id: str, session_id: str, convo_id: str) -> None:
        try:
            await self._hub.publish(
                session_channel(account_id, session_id),
                None,
                SESSION_CONVERSATION.name,
                _json({"convoID": convo_id}),
            )
        except Exception:
            log.exception("telling a session about its conversation failed")

    async def ephemeral(self, account_id: str, kind: EventKind, data: bytes) -> None:
        """A state event for the account's operators (presence, delivery): never replayed."""
        if kind.sequenced or Audience.ACCOUNT not in kind.audiences:
            raise ValueError(f"{kind.name} is not a state event for the account")
        try:
            await self._hub.publish(account_channel(account_id), None, kind.name, data)
        except Exception:
            log.exception("publishing a %s event failed", kind.name)

    async def account_head(self, account_id: str) -> int:
        return await self._store.head_event_seq(account_id)

    def account_fetch(self, account_id: str) -> Fetch:
        async def fetch(after: int, upto: int | None, limit: int) -> list[Item]:
            details = await self._store.replay_events(account_id, after_seq=after, limit=limit)
            return [_operator_item(d) for d in details if upto is None or d.event.seq <= upto]

        return fetch

    def visitor_fetch(self, account_id: str, convo_id: str) -> Fetch:
        async def fetch(after: int, upto: int | None, limit: int) -> list[Item]:
            replays = await self._store.replay_messages(
                account_id, convo_id, after_seq=after, limit=limit
            )
            return [
                Item(_visitor_seq(r.message), MESSAGE_NEW.name, visitor_payload(r))
                for r in replays
                if upto is None or _visitor_seq(r.message) <= upto
            ]

        return fetch


def _visitor_seq(message: Message) -> int:
    """The seq of a message the visitor sees (only notes have none, and they are not sent)."""
    assert message.visitor_seq is not None, "a note is never sent to the visitor"
    return message.visitor_seq


def _status_changed(committed: Committed) -> bool:
    before = committed.before
    return before is None or before.status != committed.conversation.status


def _operator_item(detail: EventDetail) -> Item:
    event = detail.event
    return Item(event.seq, event.kind, operator_payload(event, detail.conversation, detail.message))
