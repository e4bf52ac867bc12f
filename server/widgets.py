"""Seed 003's widget API (issue 17): widget tokens, and a chat in which an AI assistant answers
the visitor first and stops the moment a human has the conversation.

The hand-over is the engine's own rule, not a second state machine: the bot may not write once
the conversation's mode is ``operator``, which an operator's first reply or accept sets, and so
does a hand-over (the visitor asked for a person, the model called its ``handover`` tool, or
the model's server failed). From then on ``chat`` stores the visitor's message and calls no
model; the operators' replies reach the visitor through the visitor WebSocket and ``chatpoll``
of the same conversation id.
"""

from __future__ import annotations

import calendar
import contextlib
import datetime
import json
import math
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from server.adapters.assistant import AssistantFailed, ChatCompletions, Turn
from server.assistants import Assistants
from server.conversations import VISITOR_CHANNEL, Admit, ConversationEngine, Origin
from server.crypto import UnreadableSecret
from server.errors import (
    Conflict,
    Invalid,
    NotConfigured,
    NotFound,
    TooManyRequests,
    Unauthorized,
)
from server.security import hash_api_key
from server.text import is_email
from storage.base import InboxQuery, Store
from storage.models import (
    Assistant,
    Committed,
    Conversation,
    Identity,
    Message,
    Site,
    UserInfo,
    WidgetEvent,
    WidgetToken,
)

# 32 random bytes (256 bits): a widget token is a bearer credential.
TOKEN_BYTES = 32
# Longer than any widget id or token we issue; longer input names nothing.
WIDGET_ID_MAX = 64
TOKEN_MAX = 128
# The code a caller reads out: short enough to say, and unique enough among the calls an
# operator expects at once.
VOICE_CODE_DIGITS = 6
# Widget analytics (seed 003's track): a widget reports a handful of events per visit; past
# this a session is a script, and the table must not grow without bound.
TRACK_PER_SESSION = 200
METADATA_MAX_BYTES = 2048
TIMESTAMP_MAX = 40
_EVENT_NAME = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DAY_S = 86_400
EPOCH_ORDINAL = datetime.date(1970, 1, 1).toordinal()
SUMMARY_DEFAULT_DAYS = 30
SUMMARY_MAX_DAYS = 366
# What the summary counts: the widget's "opened" event, and what the server records itself.
OPENED = "widget_opened"
MESSAGE_SENT = "message_sent"
HANDOVER = "handover"
# How much of the conversation the model is sent: enough for the thread of a support chat,
# bounded so that a long conversation does not grow every call's cost.
HISTORY_TURNS = 20
# What the assistant says when it hands over by rule or by tool without words of its own.
HANDOVER_TEXT = "I'm passing you to a person on our team. They will answer here shortly."
# An address or a phone number written in a message: international with a leading + (7 to 15
# ASCII digits, as E.164), or North American (416) 555-0199; a date or an order number has
# neither shape.
_EMAIL = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9.\-]+\.[A-Za-z]{2,}")
_PHONE = re.compile(
    r"\+[0-9][0-9 ().\-]{5,}[0-9]|(?<![0-9])\(?[0-9]{3}\)?[ .\-][0-9]{3}[ .\-][0-9]{4}(?![0-9])"
)
PHONE_DIGITS = (7, 15)
# As visitor details keep a phone (server/conversations.py USER_INFO_LIMITS).
PHONE_MAX_CHARS = 32
# The visitor asks for a person: one of these words or phrases, anywhere in the message. A
# rule the widget's users can read in docs/api.md, applied before any model is asked.
_ASKS_FOR_HUMAN = re.compile(
    r"\b(human|operator|agent|representative|(real|live|actual) person"
    r"|(talk|speak|chat) (to|with) (a |an |some)?(person|someone|somebody|people))\b",
    re.IGNORECASE,
)


def contact_in(text: str) -> UserInfo | None:
    """The first email address and phone number the visitor wrote, which the conversation
    keeps unless it knows them already (what makes it a qualified lead)."""
    email = next((m for m in _EMAIL.findall(text) if is_email(m)), "")
    phone = next((m.strip() for m in _PHONE.findall(text) if _is_phone(m.strip())), "")
    return UserInfo(email=email, phone=phone) if email or phone else None


def _is_phone(found: str) -> bool:
    digits = sum(c.isdigit() for c in found)
    return len(found) <= PHONE_MAX_CHARS and PHONE_DIGITS[0] <= digits <= PHONE_DIGITS[1]


def _origin(site: Site, session_id: str) -> Origin:
    """A widget conversation belongs to its session's contact, as the chat window's do."""
    return Origin(VISITOR_CHANNEL, site.id, session_id, identity=Identity("session", session_id))


def _ai_blocked(conversation: Conversation) -> bool:
    """An operator blocked the bot from this conversation (seed 001's block types)."""
    return conversation.block_type in ("ai", "both")


def asks_for_human(text: str) -> bool:
    return _ASKS_FOR_HUMAN.search(text) is not None


def month_start(now: float) -> float:
    """The first instant of the current UTC month: budgets are monthly, in UTC."""
    t = time.gmtime(now)
    return float(calendar.timegm((t.tm_year, t.tm_mon, 1, 0, 0, 0)))


def next_month(now: float) -> float:
    t = time.gmtime(now)
    year, month = (t.tm_year + 1, 1) if t.tm_mon == 12 else (t.tm_year, t.tm_mon + 1)
    return float(calendar.timegm((year, month, 1, 0, 0, 0)))


@dataclass(frozen=True, slots=True)
class ChatAnswer:
    """What ``chat`` did: the conversation as it is now, and the assistant's reply (None when
    a human has the conversation, or when the reply was dropped because one took it meanwhile)."""

    conversation: Conversation
    reply: Message | None

    @property
    def human_active(self) -> bool:
        return self.conversation.mode == "operator"


@dataclass(slots=True)
class DaySummary:
    day: int
    opened: int = 0
    messages_sent: int = 0
    handovers: int = 0
    events: dict[str, int] = field(default_factory=dict)

    @property
    def date(self) -> str:
        return time.strftime("%Y-%m-%d", time.gmtime(self.day * DAY_S))


def _today() -> int:
    return int(time.time() // DAY_S)


def _day(value: str, name: str) -> int:
    if not (value.isascii() and _DATE.fullmatch(value)):
        raise Invalid("invalid_field", f"{name} must be a date YYYY-MM-DD")
    try:
        moment = datetime.date.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_field", f"{name} must be a date YYYY-MM-DD") from None
    return moment.toordinal() - EPOCH_ORDINAL


def _instant(value: str | None) -> float | None:
    """A widget's ISO 8601 timestamp as Unix time (UTC when it names no offset)."""
    if value is None:
        return None
    try:
        if not value.isascii() or len(value) > TIMESTAMP_MAX:
            raise ValueError(value)
        moment = datetime.datetime.fromisoformat(value)
    except ValueError:
        raise Invalid(
            "invalid_field", "timestamp must be ISO 8601, e.g. 2024-01-15T10:00:00Z"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=datetime.UTC)
    return moment.timestamp()


@dataclass(frozen=True, slots=True)
class VoiceStart:
    conversation: Conversation
    assistant_id: int | None
    phone_number: str
    session_code: str


class ProviderDown(Exception):
    """The model's server failed: the visitor's message is kept and the conversation waits in
    the operators' queue (503 ``assistant_unavailable``, carrying the conversation id)."""

    def __init__(self, conversation: Conversation, reason: str) -> None:
        super().__init__(reason)
        self.conversation = conversation
        self.reason = reason


def _bearer(authorization: str | None) -> str:
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > TOKEN_MAX:
        raise Unauthorized("invalid_widget_token", "send Authorization: Bearer <widget token>")
    return token


class Widgets:
    def __init__(
        self,
        store: Store,
        engine: ConversationEngine,
        assistants: Assistants,
        completions: ChatCompletions,
    ) -> None:
        self._store = store
        self._engine = engine
        self._assistants = assistants
        self._completions = completions

    # admin: widget tokens

    async def create_token(self, account_id: str, site_id: int) -> tuple[WidgetToken, str]:
        """A new token for the site's widget and its secret, which is never shown again."""
        secret = secrets.token_urlsafe(TOKEN_BYTES)
        token = await self._store.create_widget_token(account_id, site_id, hash_api_key(secret))
        if token is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        return token, secret

    async def list_tokens(self, account_id: str, site_id: int) -> list[WidgetToken]:
        if await self._store.get_site(account_id, site_id) is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        return await self._store.list_widget_tokens(account_id, site_id)

    async def revoke_token(self, account_id: str, site_id: int, token_id: int) -> None:
        if not await self._store.delete_widget_token(account_id, site_id, token_id):
            raise NotFound("widget_token_not_found", f"no widget token {token_id}")

    # the public widget API

    async def site(self, widget_id: str) -> Site:
        """The site a widget id names: 404 ``widget_not_found`` for anything else."""
        site = (
            await self._store.site_by_widget_id(widget_id)
            if len(widget_id) <= WIDGET_ID_MAX
            else None
        )
        if site is None:
            raise NotFound("widget_not_found", "no such widget")
        return site

    async def authenticate(self, site: Site, authorization: str | None) -> None:
        """401 unless the bearer token is one of the site's tokens, not revoked."""
        token = await self._store.widget_token(hash_api_key(_bearer(authorization)))
        if token is None or (token.account_id, token.site_id) != (site.account_id, site.id):
            raise Unauthorized("invalid_widget_token", "the widget token is unknown or revoked")

    async def chat(
        self,
        site: Site,
        *,
        session_id: str,
        text: str,
        assistant_id: int | None,
        convo_id: str | None,
        admit: Admit,
    ) -> ChatAnswer:
        """Stores the visitor's message and, unless a human has the conversation, the
        assistant's reply. Raises TooManyRequests when the assistant's monthly token budget
        is spent (nothing stored) and ProviderDown when its model fails (message kept)."""
        account_id = site.account_id
        current = await self._conversation(site, session_id, convo_id)
        assistant: Assistant | None = None
        if current is None or current.mode != "operator":
            assistant = await self._assistant(site, assistant_id)
            await self._check_budget(assistant)
        committed = await self._engine.send(
            account_id,
            convo_id=current.id if current else None,
            text=text,
            user_info=contact_in(text),
            origin=_origin(site, session_id),
            admit=admit,
        )
        conversation = committed.conversation
        await self._event(site, session_id, "server", MESSAGE_SENT)
        if assistant is None or conversation.mode == "operator" or _ai_blocked(conversation):
            return ChatAnswer(conversation, None)
        return await self._answer(site, assistant, conversation, text)

    async def answer_window(self, committed: Committed) -> None:
        """The chat window's turn (``postmessage``): when its site has an assistant and no
        human has the conversation yet, the assistant answers the visitor's new message; the
        window receives the reply as it receives operators' (socket or chatpoll). Nothing
        here fails the visitor's message: a spent budget or a failing model hands the
        conversation to the operators instead."""
        conversation = committed.conversation
        if (
            committed.duplicate
            or conversation.mode == "operator"
            or conversation.source_app != VISITOR_CHANNEL
            or _ai_blocked(conversation)
        ):
            return
        site = await self._store.get_site(conversation.account_id, conversation.site_id)
        if site is None or site.assistant_id is None:
            return
        assistant = await self._store.get_assistant(site.account_id, site.assistant_id)
        if assistant is None:
            return
        try:
            await self._check_budget(assistant)
        except TooManyRequests:
            await self._engine.to_queue(site.account_id, conversation.id)
            await self._event(site, conversation.session_id or "", "server", HANDOVER)
            return
        with contextlib.suppress(ProviderDown):
            await self._answer(site, assistant, conversation, committed.messages[0].text)

    async def _answer(
        self, site: Site, assistant: Assistant, conversation: Conversation, text: str
    ) -> ChatAnswer:
        """The assistant's reply to ``text``, the conversation's newest visitor message."""
        account_id = site.account_id
        if asks_for_human(text):
            return await self._reply(site, assistant, conversation, HANDOVER_TEXT, None, 0, True)
        try:
            api_key = self._assistants.api_key(assistant)
            completion = await self._completions.complete(
                base_url=assistant.base_url,
                api_key=api_key,
                model=assistant.model,
                turns=await self._turns(assistant, conversation),
                max_tokens=assistant.max_tokens,
            )
        except (AssistantFailed, UnreadableSecret) as exc:
            queued = await self._engine.to_queue(account_id, conversation.id)
            await self._event(site, conversation.session_id or "", "server", HANDOVER)
            raise ProviderDown(queued, str(exc)) from None
        return await self._reply(
            site,
            assistant,
            conversation,
            completion.text or HANDOVER_TEXT,
            completion.model,
            completion.tokens,
            completion.handover,
        )

    async def track(
        self,
        site: Site,
        *,
        session_id: str,
        event: str,
        timestamp: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> None:
        """Stores a widget's analytics event; a session holds at most TRACK_PER_SESSION."""
        if not _EVENT_NAME.fullmatch(event):
            raise Invalid(
                "invalid_field", "event must be 1-64 letters, digits, '_', '-', '.' or ':'"
            )
        packed = json.dumps(dict(metadata or {}), ensure_ascii=False, sort_keys=True)
        if len(packed.encode("utf-8")) > METADATA_MAX_BYTES or "\\u0000" in packed:
            raise Invalid(
                "invalid_field",
                f"metadata must be a JSON object of at most {METADATA_MAX_BYTES} bytes",
            )
        stored = await self._event(site, session_id, "widget", event, _instant(timestamp), packed)
        if not stored:
            raise Conflict(
                "session_event_limit",
                f"this session has reported {TRACK_PER_SESSION} events, the most it may",
            )

    async def summary(
        self, account_id: str, site_id: int, first: str | None, last: str | None
    ) -> list[DaySummary]:
        """The site's widget events per UTC day from ``first`` to ``last`` (YYYY-MM-DD,
        default the last 30 days): opened, messages sent, hand-overs, and every event a
        widget reported, by name."""
        if await self._store.get_site(account_id, site_id) is None:
            raise NotFound("site_not_found", f"no site {site_id}")
        today = _today()
        last_day = _day(last, "to") if last else today
        first_day = _day(first, "from") if first else last_day - SUMMARY_DEFAULT_DAYS + 1
        if not 0 <= last_day - first_day < SUMMARY_MAX_DAYS:
            raise Invalid(
                "invalid_field", f"from must be on or before to, at most {SUMMARY_MAX_DAYS} days"
            )
        days: dict[int, DaySummary] = {}
        for day, source, name, count in await self._store.widget_event_counts(
            account_id, site_id, first_day, last_day
        ):
            found = days.setdefault(day, DaySummary(day))
            if source == "widget":
                found.events[name] = count
                if name == OPENED:
                    found.opened = count
            elif name == MESSAGE_SENT:
                found.messages_sent = count
            elif name == HANDOVER:
                found.handovers = count
        return list(days.values())

    async def _event(
        self,
        site: Site,
        session_id: str,
        source: Literal["widget", "server"],
        name: str,
        occurred: float | None = None,
        metadata: str = "{}",
    ) -> bool:
        now = time.time()
        event = WidgetEvent(
            site.account_id, 0, site.id, session_id, source, name, occurred, metadata,
            int(now // DAY_S), now,
        )  # fmt: skip
        return (
            await self._store.add_widget_event(event, session_limit=TRACK_PER_SESSION) is not None
        )

    async def voice_start(
        self,
        site: Site,
        *,
        session_id: str,
        assistant_id: int | None,
        convo_id: str | None,
        admit: Admit,
    ) -> VoiceStart:
        """Click-to-call: the site's number and a short code the visitor gives on the phone,
        recorded in the conversation so the operator who answers finds it. No call is
        started here: the visitor dials. 501 ``voice_not_configured`` without a number."""
        if not site.voice_number:
            raise NotConfigured("voice_not_configured", "this widget has no voice number")
        current = await self._conversation(site, session_id, convo_id)
        assistant = (
            await self._assistants.get(site.account_id, assistant_id) if assistant_id else None
        )
        code = f"{secrets.randbelow(10**VOICE_CODE_DIGITS):0{VOICE_CODE_DIGITS}d}"
        await admit()
        committed = await self._engine.record(
            site.account_id,
            convo_id=current.id if current else None,
            origin=_origin(site, session_id),
            text=f"The visitor asked to call {site.voice_number}; their session code is {code}.",
        )
        chosen = assistant.id if assistant else site.assistant_id
        return VoiceStart(committed.conversation, chosen, site.voice_number, code)

    async def _reply(
        self,
        site: Site,
        assistant: Assistant,
        conversation: Conversation,
        text: str,
        model: str | None,
        tokens: int,
        hand_over: bool,
    ) -> ChatAnswer:
        try:
            committed = await self._engine.assistant_reply(
                assistant.account_id,
                conversation.id,
                text,
                assistant_id=assistant.id,
                model=model,
                tokens=tokens,
                hand_over=hand_over,
            )
        except Conflict as exc:
            if exc.code != "bot_stopped":
                raise
            # An operator took over while the model was thinking: the human's word stands.
            now = await self._engine.conversation(assistant.account_id, conversation.id)
            return ChatAnswer(now, None)
        if hand_over:
            await self._event(site, conversation.session_id or "", "server", HANDOVER)
        return ChatAnswer(committed.conversation, committed.messages[0])

    async def _conversation(
        self, site: Site, session_id: str, convo_id: str | None
    ) -> Conversation | None:
        """The conversation named, which must be this widget session's; without a name, the
        session's newest one on this site (None: the message opens one)."""
        if convo_id is None:
            query = InboxQuery(
                viewer=0, every_team=True, session_id=session_id, site_id=site.id, limit=1
            )
            found = await self._store.list_conversations(site.account_id, query)
            return found[0] if found else None
        current = await self._store.get_conversation(site.account_id, convo_id)
        if current is None or (current.site_id, current.session_id, current.source_app) != (
            site.id,
            session_id,
            VISITOR_CHANNEL,
        ):
            raise NotFound("conversation_not_found", "no such conversation for this session")
        return current

    async def _assistant(self, site: Site, assistant_id: int | None) -> Assistant:
        chosen = assistant_id if assistant_id is not None else site.assistant_id
        if chosen is None:
            raise Invalid("no_assistant", "this widget has no assistant; name one in assistantId")
        return await self._assistants.get(site.account_id, chosen)

    async def _check_budget(self, assistant: Assistant) -> None:
        now = time.time()
        spent = await self._store.assistant_tokens_since(
            assistant.account_id, assistant.id, month_start(now)
        )
        if spent >= assistant.monthly_token_budget:
            raise TooManyRequests(
                "token_budget_spent",
                "the assistant's monthly token budget is spent",
                max(1, math.ceil(next_month(now) - now)),
            )

    async def _turns(self, assistant: Assistant, conversation: Conversation) -> list[Turn]:
        """The system prompt, then the conversation's newest messages as the model's roles."""
        messages = await self._store.list_messages(
            conversation.account_id,
            conversation.id,
            limit=HISTORY_TURNS,
            newest=True,
            visitor_view=True,
        )
        turns = [Turn("system", assistant.system_prompt)] if assistant.system_prompt else []
        for m in messages:
            if m.text.strip():
                turns.append(Turn("user" if m.sender == "visitor" else "assistant", m.text))
        return turns
