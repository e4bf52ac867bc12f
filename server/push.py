"""Push notifications to operators' phones when a visitor needs them and they are away.

A new conversation, or a new message from the visitor, reaches the operators who would
handle it: the owner when there is one, otherwise everybody the conversation is routed to
(its team, or the whole account). Operators who are online (heartbeating) see it on their
dashboard and get no push; nor does anybody for a conversation hidden from operators.

Pushes are sent after the commit, in the background: the request that caused them never
waits for FCM. They are best effort: a push FCM cannot take gets one retry, then is dropped;
one FCM calls dead is forgotten, so the device is not tried again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Literal

from realtime.presence import Presence
from server.adapters.fcm import Push, PushFailed, PushSender, create_push_sender
from server.conversations import IMAGE_PREVIEW
from server.settings import Settings
from storage.base import Store
from storage.models import Committed, Conversation, Message, UserInfo

log = logging.getLogger(__name__)

Kind = Literal["new_conversation", "new_message"]
# A lock screen shows two lines or so; the rest is in the app.
PREVIEW_CHARS = 100
# Requests to FCM in flight at once, over all conversations.
CONCURRENCY = 16
# Commits whose pushes are still being worked on; past this (FCM stalled under a burst of
# visitors), new ones are dropped rather than piled up in memory.
MAX_PENDING = 1000
# A push FCM could not take for a passing reason is tried once more after this long.
RETRY_AFTER_S = 2.0
# On shutdown, pushes under way get this long to go out before they are cancelled.
STOP_GRACE_S = 2.0
# Seed 001's block types that take the conversation out of the operators' sight.
_HIDDEN_BLOCKS = frozenset({"operator", "both"})


@dataclass(frozen=True, slots=True)
class Notice:
    conversation: Conversation
    push: Push


def notice_for(committed: Committed) -> Notice | None:
    """The push a change calls for: a conversation opened by anybody but an operator, or a
    message from the visitor once a human is in charge (or no bot ever was). Operators'
    replies, notes and the bot's answers call for none."""
    conversation = committed.conversation
    if conversation.block_type in _HIDDEN_BLOCKS or not committed.messages:
        return None
    kind: Kind
    if committed.before is None:
        message, kind = committed.messages[0], "new_conversation"
        if message.sender == "operator":  # a proactive message: its author owns it
            return None
    elif conversation.mode == "bot" and conversation.source_app == "chatbot":
        # The bot is answering: one push when it starts, not one per line of the chat.
        return None
    else:
        said = [m for m in committed.messages if m.sender == "visitor"]
        if not said:
            return None
        message, kind = said[-1], "new_message"
    who = _visitor_name(conversation.user_info)
    title = f"{who} started a conversation" if kind == "new_conversation" else who
    data = {"conversation_id": conversation.id, "account_id": conversation.account_id}
    return Notice(conversation, Push(title, _preview(message), {**data, "kind": kind}))


class PushNotifier:
    """Listens to commits (``committed``) and sends their pushes in background tasks."""

    def __init__(
        self,
        sender: PushSender,
        store: Store,
        presence: Presence,
        *,
        retry_after_s: float = RETRY_AFTER_S,
        max_pending: int = MAX_PENDING,
    ) -> None:
        self._sender = sender
        self._store = store
        self._presence = presence
        self._retry_after_s = retry_after_s
        self._max_pending = max_pending
        self._slots = asyncio.Semaphore(CONCURRENCY)
        # Strong references: the event loop keeps only weak ones to running tasks.
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    async def committed(self, committed: Committed) -> None:
        """Schedules the change's pushes and returns at once."""
        notice = notice_for(committed)
        if notice is None or self._closed:
            return
        if len(self._tasks) >= self._max_pending:
            log.warning(
                "push notifications are backing up; dropped the one for conversation %s",
                notice.conversation.id,
            )
            return
        task = asyncio.create_task(self._notify(notice))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def idle(self) -> None:
        """Returns once every push scheduled so far has been sent or given up on."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))

    async def aclose(self) -> None:
        self._closed = True
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=STOP_GRACE_S)
        for task in late:
            task.cancel()
        await asyncio.gather(*late, return_exceptions=True)

    async def _notify(self, notice: Notice) -> None:
        conversation = notice.conversation
        account_id = conversation.account_id
        try:
            recipients = await self._recipients(conversation)
            tokens = await self._store.push_tokens(account_id, recipients) if recipients else {}
            outcomes = await asyncio.gather(
                *(
                    self._send(account_id, operator_id, token, notice.push)
                    for operator_id, devices in tokens.items()
                    for token in devices
                ),
                return_exceptions=True,
            )
        except Exception:
            log.exception("push notifications for conversation %s failed", conversation.id)
            return
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                log.error("a push for conversation %s failed", conversation.id, exc_info=outcome)

    async def _recipients(self, conversation: Conversation) -> list[int]:
        """Who would handle the conversation, less whoever is online to see it already."""
        account_id = conversation.account_id
        if conversation.operator_id is not None:
            chosen = [conversation.operator_id]
        elif conversation.team_id is None:
            chosen = [o.id for o in await self._store.list_operators(account_id)]
        else:
            teams = {t.id: t for t in await self._store.list_teams(account_id)}
            team = teams.get(conversation.team_id)
            if team is not None:
                chosen = list(team.member_ids)
            else:  # the team was deleted: only admins still see its conversations
                operators = await self._store.list_operators(account_id)
                chosen = [o.id for o in operators if o.is_admin]
        online = await self._presence.operators_online(account_id)
        return [operator_id for operator_id in chosen if operator_id not in online]

    async def _send(self, account_id: str, operator_id: int, token: str, push: Push) -> None:
        try:
            try:
                delivered = await self._send_once(token, push)
            except PushFailed as exc:
                if not exc.retryable:
                    raise
                await asyncio.sleep(self._retry_after_s)
                delivered = await self._send_once(token, push)
        except PushFailed as exc:
            log.warning("a push to operator %s of %s was dropped: %s", operator_id, account_id, exc)
            return
        if not delivered:
            await self._store.remove_push_tokens(account_id, operator_id, token)
            log.info("forgot a dead push token of operator %s of %s", operator_id, account_id)

    async def _send_once(self, token: str, push: Push) -> bool:
        async with self._slots:
            return await self._sender.send(token, push)


@asynccontextmanager
async def push_notifications(
    settings: Settings, store: Store, presence: Presence
) -> AsyncIterator[PushNotifier | None]:
    """The notifier for the configured FCM project, or None when pushes are off; on exit,
    pushes under way get STOP_GRACE_S to finish."""
    sender = create_push_sender(settings.fcm_credentials, settings.fcm_url)
    if sender is None:
        yield None
        return
    notifier = PushNotifier(sender, store, presence)
    try:
        yield notifier
    finally:
        await notifier.aclose()
        await sender.aclose()


def _visitor_name(info: UserInfo) -> str:
    full = " ".join(n for n in (info.fname, info.lname) if n)
    return full or info.email or info.phone or "Visitor"


def _preview(message: Message) -> str:
    text = " ".join(message.text.split()) or IMAGE_PREVIEW
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"
