"""The conversation engine: the one write path every surface translates into.

Each write is a pure decision over the locked current state (see ``Store.write``): the rules
below never touch the database themselves, so they hold identically on every backend and are
applied atomically with the seq numbers they assign.
"""

from __future__ import annotations

import dataclasses
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from realtime.presence import Presence
from realtime.typing import Side, TypingIndicators
from server.errors import Conflict, Invalid, NotFound
from server.events import EventFeed
from server.text import check_body, has_control_characters
from storage.base import Decide, Store
from storage.models import (
    STATUSES,
    Change,
    Committed,
    Conversation,
    Delivery,
    Message,
    Operator,
    Sender,
    SourceApp,
    Status,
    UserInfo,
)

# Seed 000: gethistory "Default 50, maximum 200".
HISTORY_DEFAULT = 50
HISTORY_MAX = 200
# The most messages one poll returns; a client that is further behind polls again.
POLL_BATCH = 200
# Field limits for stored visitor details (RFC 5321 caps an address at 254 characters).
USER_INFO_LIMITS = {"fname": 100, "lname": 100, "email": 254, "phone": 32}
_PHONE = re.compile(r"^[0-9+()\-. ]*$")
_MACRO = re.compile(r"\{(fname|lname|email|phone|operator)\}")
# Room for a UUID or a provider's message id with a prefix; longer is a client bug.
CLIENT_MSG_ID_MAX_CHARS = 128
# 16 random bytes: 128 bits, beyond the 96 the design requires of a capability URL.
CONVO_ID_BYTES = 16
MESSAGE_ID_BYTES = 12
# Replies on these channels leave through an outbound adapter, not the web session.
OUTBOUND_CHANNELS: frozenset[SourceApp] = frozenset({"smsbroadcast", "emailbroadcast"})

Clock = Callable[[], float]
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class PollResult:
    conversation: Conversation
    messages: list[Message]
    typing: bool


def expand_macros(template: str, info: UserInfo, operator_name: str) -> str:
    """One pass: a value that itself looks like ``{fname}`` is never expanded again."""
    values = {
        "fname": info.fname,
        "lname": info.lname,
        "email": info.email,
        "phone": info.phone,
        "operator": operator_name,
    }
    return _MACRO.sub(lambda m: values[m.group(1)], template)


def check_user_info(info: UserInfo) -> None:
    for name, limit in USER_INFO_LIMITS.items():
        value = getattr(info, name)
        if len(value) > limit:
            raise Invalid("invalid_user_info", f"userInfo.{name} is longer than {limit} characters")
        if has_control_characters(value):
            raise Invalid("invalid_user_info", f"userInfo.{name} contains control characters")
    if info.email and "@" not in info.email:
        raise Invalid("invalid_user_info", "userInfo.email is not an email address")
    if not _PHONE.match(info.phone):
        raise Invalid("invalid_user_info", "userInfo.phone may hold only digits, spaces and +-().")


def _merge_user_info(known: UserInfo, given: UserInfo | None) -> UserInfo:
    """Fills fields the conversation does not know yet; never overwrites what it knows."""
    if given is None:
        return known
    return UserInfo(**{
        f.name: getattr(known, f.name) or getattr(given, f.name)
        for f in dataclasses.fields(UserInfo)
    })  # fmt: skip


def _other_side(sender: Sender, side: Side) -> bool:
    """Whether a message by ``sender`` is news to ``side`` (what its poll returns)."""
    return sender != side


class ConversationEngine:
    def __init__(
        self,
        store: Store,
        typing: TypingIndicators,
        feed: EventFeed,
        presence: Presence,
        *,
        max_message_chars: int,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._typing = typing
        self._feed = feed
        self._presence = presence
        self._max_chars = max_message_chars
        self._clock = clock

    async def send(
        self,
        account_id: str,
        *,
        convo_id: str | None,
        text: str,
        operator_id: int | None = None,
        bot: bool = False,
        canned_id: int | None = None,
        user_info: UserInfo | None = None,
        source_app: SourceApp = "chatbot",
        client_msg_id: str | None = None,
    ) -> Committed:
        """Appends one message; creates the conversation when ``convo_id`` is None.

        Without ``operator_id`` the message is the visitor's (or the bot's, with ``bot``).
        """
        if user_info is not None:
            check_user_info(user_info)
        if client_msg_id is not None and len(client_msg_id) > CLIENT_MSG_ID_MAX_CHARS:
            raise Invalid(
                "invalid_field", f"clientMsgID is longer than {CLIENT_MSG_ID_MAX_CHARS} characters"
            )
        if convo_id is None and await self._store.get_account(account_id) is None:
            raise NotFound("account_not_found", "no such account")
        operator = await self._operator(account_id, operator_id)
        template: str | None = None
        if canned_id is not None:
            if operator is None:
                raise Invalid("canned_requires_operator", "canned responses are sent by operators")
            canned = await self._store.get_canned(account_id, canned_id)
            if canned is None:
                raise NotFound("canned_not_found", f"no canned response {canned_id}")
            template = canned.message
        elif not text.strip():
            raise Invalid("empty_message", "message is empty")
        self._check_length(text)
        sender: Sender = "operator" if operator else "bot" if bot else "visitor"
        now = self._clock()

        def decide(current: Conversation | None) -> Change:
            if current is None:
                if convo_id is not None:
                    raise NotFound("conversation_not_found", "no such conversation")
                current = self._new_conversation(account_id, source_app, user_info, now)
                before = None
            else:
                before = current
                current = dataclasses.replace(
                    current, user_info=_merge_user_info(current.user_info, user_info)
                )
            body = text
            if template is not None:
                assert operator is not None
                body = expand_macros(template, current.user_info, operator.name)
                self._check_length(body)
            return _append(before, current, sender, operator, body, client_msg_id, now)

        committed = await self._write(account_id, convo_id, decide, client_msg_id)
        if committed.duplicate and convo_id is not None and committed.conversation.id != convo_id:
            raise Conflict(
                "client_msg_id_reused",
                "clientMsgID was already used for a message in another conversation",
            )
        if sender == "visitor" or sender == "operator":
            await self._typing.clear(committed.conversation.id, sender)
        return committed

    async def poll(
        self, account_id: str, convo_id: str, *, operator_id: int | None, since: float = 0.0
    ) -> PollResult:
        """The other side's unread messages created after ``since``; marks them read.

        With ``operator_id`` this is the operators' side, without it the visitor's.
        """
        side = await self._side(account_id, operator_id)
        current = await self._conversation(account_id, convo_id)
        cursor = _read_seq(current, side)
        fetched = await self._store.list_messages(convo_id, after_seq=cursor, limit=POLL_BATCH)
        current = await self._mark_read(current, side, fetched)
        news = [m for m in fetched if _other_side(m.sender, side) and m.created > since]
        return PollResult(current, news, await self._other_typing(convo_id, side))

    async def window_poll(
        self, account_id: str, convo_id: str, *, since: float = 0.0, after_seq: int | None = None
    ) -> PollResult:
        """The chat window's view: every message of both sides after a cursor (``after_seq``
        when the client has one, else the seed's ``since`` time), newest POLL_BATCH at most.
        Marks the operators' messages as read by the visitor."""
        if after_seq is not None:
            found = await self._store.read_conversation(
                account_id, convo_id, after_seq=after_seq, limit=POLL_BATCH
            )
        else:
            found = await self._store.read_conversation(
                account_id, convo_id, after_created=since, limit=POLL_BATCH, newest=True
            )
        current, messages = _require(found)
        await self._presence.visitors_seen(account_id, [convo_id])
        current = await self._mark_read(current, "visitor", messages)
        return PollResult(current, messages, await self._other_typing(convo_id, "visitor"))

    async def history(
        self, account_id: str, convo_id: str, limit: int = HISTORY_DEFAULT
    ) -> tuple[Conversation, list[Message]]:
        if not 1 <= limit <= HISTORY_MAX:
            raise Invalid("invalid_field", f"numMessages must be between 1 and {HISTORY_MAX}")
        found = await self._store.read_conversation(account_id, convo_id, limit=limit, newest=True)
        return _require(found)

    async def set_status(self, account_id: str, convo_id: str, status: str) -> Conversation:
        if status not in STATUSES:
            raise Invalid("invalid_status", f"status must be one of {', '.join(STATUSES)}")
        new_status: Status = status
        now = self._clock()

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if current.status == new_status:
                return None
            resolved_at = now if new_status == "resolved" else None
            after = dataclasses.replace(
                current, status=new_status, resolved_at=resolved_at, last_activity=now
            )
            return Change(current, after)

        return (await self._write(account_id, convo_id, decide)).conversation

    async def set_typing(self, account_id: str, convo_id: str, *, operator_id: int | None) -> None:
        side = await self._side(account_id, operator_id)
        await self._conversation(account_id, convo_id)
        await self._typing.touch(convo_id, side)
        await self._feed.typing(account_id, convo_id, side)

    async def _side(self, account_id: str, operator_id: int | None) -> Side:
        return "operator" if await self._operator(account_id, operator_id) else "visitor"

    async def conversation(self, account_id: str, convo_id: str) -> Conversation:
        return await self._conversation(account_id, convo_id)

    async def _conversation(self, account_id: str, convo_id: str) -> Conversation:
        return _require(await self._store.get_conversation(account_id, convo_id))

    async def _operator(self, account_id: str, operator_id: int | None) -> Operator | None:
        if operator_id is None:
            return None
        operator = await self._store.get_operator(account_id, operator_id)
        if operator is None:
            raise NotFound("operator_not_found", f"no operator {operator_id}")
        return operator

    async def _other_typing(self, convo_id: str, side: Side) -> bool:
        return await self._typing.is_typing(
            convo_id, "visitor" if side == "operator" else "operator"
        )

    async def _mark_read(
        self, current: Conversation, side: Side, shown: list[Message]
    ) -> Conversation:
        """Moves ``side``'s read cursor past ``shown`` (a contiguous run of seqs), writing only
        when it actually moves."""
        if not shown or _read_seq(current, side) >= shown[-1].seq:
            return current
        high = shown[-1].seq

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if side == "visitor":
                if current.visitor_read_seq >= high:
                    return None
                return Change(current, dataclasses.replace(current, visitor_read_seq=high))
            if current.operator_read_seq >= high:
                return None
            # Only messages past the cursor as it is now were still counted as unread.
            seen = sum(
                1 for m in shown if m.sender == "visitor" and m.seq > current.operator_read_seq
            )
            after = dataclasses.replace(
                current, operator_read_seq=high, unread=max(0, current.unread - seen)
            )
            return Change(current, after)

        return (await self._write(current.account_id, current.id, decide)).conversation

    async def _write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        client_msg_id: str | None = None,
    ) -> Committed:
        """The one place a change is committed, and announced only once it is."""
        committed = await self._store.write(
            account_id, convo_id, decide, client_msg_id=client_msg_id
        )
        await self._feed.committed(committed)
        return committed

    def _check_length(self, text: str) -> None:
        check_body(text, self._max_chars)

    @staticmethod
    def _new_conversation(
        account_id: str, source_app: SourceApp, user_info: UserInfo | None, now: float
    ) -> Conversation:
        return Conversation(
            id=secrets.token_urlsafe(CONVO_ID_BYTES),
            account_id=account_id,
            source_app=source_app,
            status="open",
            mode="bot",
            operator_id=None,
            team_id=None,
            user_info=user_info or UserInfo(),
            created=now,
            last_activity=now,
            resolved_at=None,
        )


def _read_seq(conversation: Conversation, side: Side) -> int:
    if side == "operator":
        return conversation.operator_read_seq
    return conversation.visitor_read_seq


def _require(current: T | None) -> T:
    if current is None:
        raise NotFound("conversation_not_found", "no such conversation")
    return current


def _append(
    before: Conversation | None,
    current: Conversation,
    sender: Sender,
    operator: Operator | None,
    text: str,
    client_msg_id: str | None,
    now: float,
) -> Change:
    """The rules of seed 000 for one new message."""
    # Never earlier than what the conversation already holds, so `since` filters stay exact.
    created = max(now, current.last_activity)
    status, mode, owner = current.status, current.mode, current.operator_id
    resolved_at, unread = current.resolved_at, current.unread
    delivery: Delivery | None = None
    if sender == "operator":
        assert operator is not None
        mode = "operator"  # the bot never answers again
        owner = owner if owner is not None else operator.id  # first replier owns it, for good
        status = "active" if status == "open" else status
    elif sender == "bot" and mode == "operator":
        raise Conflict("bot_stopped", "an operator has taken over this conversation")
    else:
        if sender == "visitor":
            unread += 1
        if status == "resolved":  # the customer wrote again: back in the queue, owner kept
            status, resolved_at = "open", None
    if sender != "visitor" and current.source_app in OUTBOUND_CHANNELS:
        delivery = "queued"
    seq = current.last_seq + 1
    message = Message(
        id=secrets.token_urlsafe(MESSAGE_ID_BYTES),
        convo_id=current.id,
        seq=seq,
        sender=sender,
        operator_id=operator.id if operator else None,
        operator_name=operator.name if operator else None,
        text=text,
        created=created,
        client_msg_id=client_msg_id,
        delivery=delivery,
    )
    after = dataclasses.replace(
        current,
        status=status,
        mode=mode,
        operator_id=owner,
        resolved_at=resolved_at,
        unread=unread,
        last_seq=seq,
        last_activity=created,
    )
    return Change(before, after, (message,))
