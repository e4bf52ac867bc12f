"""From committed changes to client events: render once per audience, ring after commit.

Two kinds of channel, each with its own seq:
- ``acct:{account}`` carries every event of an account to its operators (SSE, tenant
  WebSocket), sequenced by the account event seq, rendered in the operator format.
- ``conv:{conversation}`` carries what the visitor may see (WebSocket), sequenced by the
  message seq, rendered in seed 000's camelCase.
Typing and status changes ride along unsequenced: they are state, not log.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson

from realtime.hub import Hub
from realtime.outbox import Fetch, Item
from realtime.typing_indicators import Side
from server.render.camel_case import message_json
from server.render.snake_case import conversation_data, message_data
from storage.base import Store
from storage.models import Committed, Conversation, EventDetail, EventKind, Message

log = logging.getLogger(__name__)

TYPING = "typing"
STATUS = "status"
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


# The frame a session's socket gets when a conversation is opened for it.
SESSION_CONVERSATION = "conversation"


# Called with every change after its events rang, e.g. to send push notifications.
CommitListener = Callable[[Committed], Awaitable[None]]


def _json(data: Any) -> bytes:
    return orjson.dumps(data)


def operator_event(kind: EventKind, conversation: Conversation, message: Message | None) -> bytes:
    if kind == "message:new" and message is not None:
        return _json(
            {
                "conversation_id": conversation.id,
                "message": message_data(message),
                "conversation": conversation_data(conversation),
            }
        )
    return _json(conversation_data(conversation))


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
            data = operator_event(event.kind, conversation, message)
            await self._hub.publish(account, event.seq, event.kind, data)
            if message is not None and not message.private:
                await self._hub.publish(
                    visitor, message.seq, event.kind, _json(message_json(message))
                )
            elif event.kind == "conversation:updated" and _status_changed(committed):
                await self._hub.publish(visitor, None, STATUS, visitor_status(conversation))

    async def typing(self, account_id: str, convo_id: str, side: Side) -> None:
        data = _json({"conversation_id": convo_id, "side": side, "expires_in": TYPING_EXPIRES_S})
        try:
            await self._hub.publish(account_channel(account_id), None, TYPING, data)
            if side == "operator":
                await self._hub.publish(conversation_channel(convo_id), None, TYPING, data)
        except Exception:
            log.exception("publishing a typing event failed")

    async def session_conversation(self, account_id: str, session_id: str, convo_id: str) -> None:
        try:
            await self._hub.publish(
                session_channel(account_id, session_id),
                None,
                SESSION_CONVERSATION,
                _json({"convoID": convo_id}),
            )
        except Exception:
            log.exception("telling a session about its conversation failed")

    async def ephemeral(self, account_id: str, kind: str, data: bytes) -> None:
        """An unsequenced event for the account's operators (presence): state, not log."""
        try:
            await self._hub.publish(account_channel(account_id), None, kind, data)
        except Exception:
            log.exception("publishing a %s event failed", kind)

    async def account_head(self, account_id: str) -> int:
        return await self._store.head_event_seq(account_id)

    def account_fetch(self, account_id: str) -> Fetch:
        async def fetch(after: int, upto: int | None, limit: int) -> list[Item]:
            details = await self._store.replay_events(account_id, after_seq=after, limit=limit)
            return [_operator_item(d) for d in details if upto is None or d.event.seq <= upto]

        return fetch

    def visitor_fetch(self, account_id: str, convo_id: str) -> Fetch:
        async def fetch(after: int, upto: int | None, limit: int) -> list[Item]:
            messages = await self._store.list_messages(
                account_id, convo_id, after_seq=after, limit=limit, visitor_view=True
            )
            return [
                Item(m.seq, "message:new", _json(message_json(m)))
                for m in messages
                if upto is None or m.seq <= upto
            ]

        return fetch


def _status_changed(committed: Committed) -> bool:
    before = committed.before
    return before is None or before.status != committed.conversation.status


def _operator_item(detail: EventDetail) -> Item:
    event = detail.event
    return Item(
        event.seq, event.kind, operator_event(event.kind, detail.conversation, detail.message)
    )
