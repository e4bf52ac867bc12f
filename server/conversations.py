"""The conversation engine: the one write path every surface translates into.

Each write is a pure decision over the locked current state (see ``Store.write``): the rules
below never touch the database themselves, so they hold identically on every backend and are
applied atomically with the seq numbers they assign.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import secrets
import time
import unicodedata
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson

from realtime.presence import Presence, session_mark
from realtime.typing_indicators import Side, TypingIndicators
from server import sms_opt_outs, timeline
from server.adapters.translate import TranslationFailed, Translator, check_language
from server.channels import asks_rating
from server.contacts import display_name, normalized, sms_opt_outs_of, typed_identities
from server.errors import Conflict, Forbidden, Invalid, NotFound
from server.event_catalogue import CONVERSATION_UPDATED
from server.events import EventFeed, announce, announced
from server.render.operator_api import (
    addressed,
    closed_event,
    reply_event,
    select_destination_event,
)
from server.text import check_body, has_control_characters, has_invisible_formatting, is_email
from server.timeline import NO_CAUSE, NOTE_MAX_CHARS, Cause
from server.visitor_context import VisitorContext, check_context, merged
from storage.base import Decide, InboxQuery, OperatorPatch, RosterDecide, Store, owned_unresolved
from storage.models import (
    BLOCK_TYPES,
    DEFAULT_SITE_ID,
    STATUSES,
    Attachment,
    BlockType,
    Change,
    Committed,
    Contact,
    Control,
    Conversation,
    Delivery,
    Identity,
    Message,
    Operator,
    Roster,
    Sender,
    SourceApp,
    Status,
    Team,
    UserInfo,
    evolve,
)

# Seed 000: gethistory "Default 50, maximum 200".
HISTORY_DEFAULT = 50
HISTORY_MAX = 200
# The most messages one poll returns; a client that is further behind polls again.
POLL_BATCH = 200
# Conversations read at once when a deactivated operator's are handed on.
OWNED_PAGE = 200
# Waiting conversations a team's queue hands out at once when an operator becomes available
# (issue 18); more than a team answers at once, and the next event hands out the rest.
WAITING_PAGE = 50
# The statuses that hold an operator's slot in a team's round robin.
OWNED_OPEN: frozenset[Status] = frozenset({"open", "active"})
# Field limits for stored visitor details (RFC 5321 caps an address at 254 characters).
USER_INFO_LIMITS = {"fname": 100, "lname": 100, "email": 254, "phone": 32, "info": 2000}
# Fields where line breaks are fine: free-form notes about the visitor.
MULTILINE_FIELDS = frozenset({"info"})
# The visitor's name, as inboxes show it beside operators' names.
NAME_FIELDS = frozenset({"fname", "lname"})
_PHONE = re.compile(r"^[0-9+()\-. ]*$")
_MACRO = re.compile(r"\{(fname|lname|email|phone|operator)\}")
# Room for a UUID or a provider's message id with a prefix; longer is a client bug.
CLIENT_MSG_ID_MAX_CHARS = 128
# 16 random bytes: 128 bits, beyond the 96 the design requires of a capability URL.
CONVO_ID_BYTES = 16
MESSAGE_ID_BYTES = 12
# The channel of the keyless chat window and widget: its conversations belong to a visitor's
# session, never to the account key's integration (so a visitor cannot plant its keys there).
VISITOR_CHANNEL: SourceApp = "liveoperator"
# Replies on these channels leave through an outbound adapter, not the web session.
OUTBOUND_CHANNELS: frozenset[SourceApp] = frozenset({"smsbroadcast", "emailbroadcast"})
# An inbox row shows this much of the newest message.
PREVIEW_CHARS = 140
# What an inbox row shows for a message that is only an image.
IMAGE_PREVIEW = "[image]"
# Longer than any real image URL (browsers cap near 2 MB, but CDNs near 8 KB); a data: URL is
# refused outright, so this only bounds honest links.
IMAGE_URL_MAX_CHARS = 2048
_IMAGE_URL = re.compile(r"^https?://[^\s]+$")
# Widget session ids come from the visitor's browser; bounded like client message ids.
SESSION_ID_MAX_CHARS = 128
_SESSION_ID = re.compile(r"^[A-Za-z0-9_\-]{8,128}$")
# The language of an operator who has not chosen one.
DEFAULT_LANG = "en"
# Satisfaction ratings: a 1-5 scale, as Chatwoot's CSAT and Live Helper Chat's stars use.
RATING_MIN, RATING_MAX = 1, 5
# A sentence or two of feedback; longer is a letter, which belongs in a message.
RATING_COMMENT_MAX_CHARS = 1000
# What an SMS or email conversation's customer is sent when it is resolved and its channel
# asks (issue 19); short enough for one SMS segment (160 GSM-7 characters).
RATING_QUESTION = "How did we do? Reply with a number from 1 (poor) to 5 (great)."
# What may surround the digit of a reply to it: "5!", " 4 ", "(3)", and the two marks that
# make a digit the keycap emoji phones offer ("5\ufe0f\u20e3"). Other text makes it a message.
_SCORE_MARKS = frozenset("\ufe0f\u20e3")
# What mail and phone apps write under what the customer typed: RFC 3676's "-- " delimiter
# (everything after it), and the apps' default one-line signatures. "5" above them is a score.
_SIGNATURE_DELIMITER = re.compile(r"^-- ?$")
# A whole line, no clause after it: "Sent from my phone, but…" is the customer talking.
_APP_SIGNATURE = re.compile(r"^(sent from|get outlook for) [^,;:!?]{1,40}$", re.IGNORECASE)

log = logging.getLogger(__name__)

Clock = Callable[[], float]
# Awaited once a request is known to be valid, just before it changes anything: where a
# surface charges its rate limit, so that refused requests spend nothing (docs/api.md).
Admit = Callable[[], Awaitable[None]]
T = TypeVar("T")
# Seed 001's visitor fields an operator may correct (name is split into fname and lname).
VisitorPatch = dict[str, str | None]


@dataclass(frozen=True, slots=True)
class PollResult:
    conversation: Conversation
    messages: list[Message]
    typing: bool


@dataclass(frozen=True, slots=True)
class OperatorView:
    conversation: Conversation
    messages: list[Message]
    # The customer opted out of SMS on the conversation's channel: replies cannot go out.
    sms_opted_out: bool
    contact: Contact | None
    # (channel id, phone, since) where the contact texted STOP, on any of the account's channels.
    contact_opt_outs: list[tuple[int, str, float]]
    # The timeline's lines among ``messages`` (server/timeline.py), oldest first.
    timeline: list[dict[str, Any]]


def first_name(info: UserInfo) -> str:
    """What ``{fname}`` greets: a visitor who typed their whole name into the one name field
    (the chat window has only one) is greeted by its first word, not "Hi Sam Visitor"."""
    if info.lname:
        return info.fname
    words = info.fname.split()
    return words[0] if words else ""


def expand_macros(template: str, info: UserInfo, operator_name: str) -> str:
    """One pass: a value that itself looks like ``{fname}`` is never expanded again."""
    values = {
        "fname": first_name(info),
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
        if name in MULTILINE_FIELDS:
            check_body(value, limit)
        elif has_control_characters(value):
            raise Invalid("invalid_user_info", f"userInfo.{name} contains control characters")
        if name in NAME_FIELDS and has_invisible_formatting(value):
            raise Invalid(
                "invalid_user_info",
                f"userInfo.{name} contains bidi overrides or invisible characters",
            )
    if info.email and not is_email(info.email):
        raise Invalid("invalid_user_info", "userInfo.email is not one email address")
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


def check_image_url(url: str) -> str:
    if len(url) > IMAGE_URL_MAX_CHARS:
        raise Invalid("invalid_image_url", f"image_url is longer than {IMAGE_URL_MAX_CHARS}")
    if not _IMAGE_URL.fullmatch(url) or has_control_characters(url):
        raise Invalid("invalid_image_url", "image_url must be an http(s) URL")
    return url


def check_session_id(session_id: str) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        raise Invalid("invalid_session_id", "sessionID must be 8-128 letters, digits, '-' or '_'")
    return session_id


@dataclass(frozen=True, slots=True)
class Draft:
    """One message as a surface asked for it, before the rules give it a seq."""

    sender: Sender
    operator: Operator | None
    text: str
    client_msg_id: str | None = None
    image_url: str | None = None
    private: bool = False
    translation: str | None = None
    translation_lang: str | None = None
    # The event a bot platform is sent for this message (seed 004), when it is not simply an
    # operator's answer: a Closed or SelectDestination on a system line.
    platform: dict[str, Any] | None = None
    # An assistant's reply (issue 17): which assistant, its model and what it cost.
    assistant_id: int | None = None
    model: str | None = None
    tokens: int | None = None
    # A customer's mail (issue 15): the files it carried, already stored.
    attachments: tuple[Attachment, ...] = ()


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a new conversation comes from: which site, which widget session, which of the
    account's channels (an inbound SMS's), the identity that channel proves of the person
    writing (the From of a signed SMS webhook, the widget's own session, a bot platform's
    user): the conversation joins the contact holding it, or a new one does
    (server/contacts.py), and which bot platform user it belongs to."""

    source_app: SourceApp = "chatbot"
    site_id: int = DEFAULT_SITE_ID
    session_id: str | None = None
    channel_id: int | None = None
    identity: Identity | None = None
    bot_user_id: str | None = None


def bot_origin(channel_id: int, user_id: str) -> Origin:
    """Where a bot platform's user writes from: the channel, and the user as the identity
    the channel's key proves (their contact's, kind "bot")."""
    return Origin(
        channel_id=channel_id,
        bot_user_id=user_id,
        identity=Identity("bot", f"{channel_id}:{user_id}"),
    )


@dataclass(frozen=True, slots=True)
class HandOver:
    """A bot platform's selectDestination, validated: its user on the channel, the team, what
    operators see of the user (name, attributes as a JSON object), what they never see
    (hidden attributes, customData), and the bot's dialogue so far, oldest first."""

    channel_id: int
    user_id: str
    team_id: int
    user_info: UserInfo
    # None: not given, the conversation keeps what it has.
    attributes: str | None
    hidden_attributes: str | None
    custom_data: str | None
    dialogue: tuple[tuple[Sender, str], ...] = ()


class ConversationEngine:
    def __init__(
        self,
        store: Store,
        typing: TypingIndicators,
        feed: EventFeed,
        presence: Presence,
        *,
        max_message_chars: int,
        translator: Translator | None = None,
        clock: Clock = time.time,
    ) -> None:
        self._store = store
        self._typing = typing
        self._feed = feed
        self._presence = presence
        self._max_chars = max_message_chars
        self._translator = translator
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
        origin: Origin | None = None,
        client_msg_id: str | None = None,
        image_url: str | None = None,
        account_key: bool = False,
        admit: Admit | None = None,
        attachments: tuple[Attachment, ...] = (),
        context: VisitorContext | None = None,
        may_answer_rating: bool = False,
    ) -> Committed:
        """Appends one message; creates the conversation (from ``origin``) when ``convo_id``
        is None. ``context``: where the chat window's visitor is as they write.
        ``may_answer_rating``: the customer's SMS or email, which, when it is a lone score
        answering the conversation's rating question, records the rating and leaves the
        conversation resolved (see ``rating_answer``).

        Without ``operator_id`` the message is the visitor's (or the bot's, with ``bot``).
        A ``client_msg_id`` already stored is a retry only within what the caller holds (see
        ``_holds``): the original comes back with ``duplicate``; anywhere else it is a 409
        that names nothing. ``account_key``: the caller authenticated with the account's key.
        ``admit`` is awaited after every check that needs no lock (see ``Admit``); what only
        the locked conversation can refuse (a blocked visitor, an unknown convoID) is charged
        to that conversation's own budget, which no one else spends. ``attachments``: the
        stored files of a customer's mail.
        """
        if user_info is not None:
            check_user_info(user_info)
        if context is not None:
            check_context(context)
        if client_msg_id is not None and len(client_msg_id) > CLIENT_MSG_ID_MAX_CHARS:
            raise Invalid(
                "invalid_field", f"clientMsgID is longer than {CLIENT_MSG_ID_MAX_CHARS} characters"
            )
        if image_url is not None:
            check_image_url(image_url)
        operator = await self._operator(account_id, operator_id)
        template: str | None = None
        if canned_id is not None:
            if operator is None:
                raise Invalid("canned_requires_operator", "canned responses are sent by operators")
            canned = await self._store.get_canned(account_id, canned_id)
            # Another operator's personal response is as absent as one never written.
            if canned is None or canned.owner not in (None, operator.id):
                raise NotFound("canned_not_found", f"no canned response {canned_id}")
            template = canned.message
        elif not text.strip() and image_url is None:
            raise Invalid("empty_message", "message is empty")
        self._check_length(text)
        sender: Sender = "operator" if operator else "bot" if bot else "visitor"
        # Whether this operator reply's phone was checked against the channel's opt-outs:
        # only an SMS thread needs the lookup, and only ``decide`` knows it is one.
        consent_checked = False
        new = await self._new_conversation(account_id, origin, user_info) if not convo_id else None
        proven = normalized(origin.identity) if new and origin and origin.identity else None
        translation = await self._translation(
            account_id, convo_id, sender, operator, text, template
        )
        if admit is not None:
            await admit()

        def decide(current: Conversation | None) -> Change:
            if current is None:
                if new is None:
                    raise NotFound("conversation_not_found", "no such conversation")
                current, before = new, None
            else:
                if sender == "operator" and not consent_checked and _texted(current):
                    raise _ConsentUnchecked
                before = current
                info = _merge_user_info(current.user_info, user_info)
                # Most messages repeat what the conversation knows already: no copy of its
                # forty-odd fields for those (this runs inside the write).
                if info != current.user_info:
                    current = evolve(current, user_info=info)
            if context is not None:
                where = merged(current.visitor_context, context)
                if where != current.visitor_context:
                    current = evolve(current, visitor_context=where)
            if (
                current.source_app == VISITOR_CHANNEL
                and current.qualified_at is None
                and (current.user_info.email or current.user_info.phone)
            ):
                # The widget's visitor left a way to reach them: a lead (issue 17).
                current = evolve(current, qualified_at=self._clock())
            body = text
            if template is not None:
                assert operator is not None
                body = expand_macros(template, current.user_info, operator.name)
                self._check_length(body)
            draft = Draft(
                sender, operator, body, client_msg_id, image_url,
                translation=translation[0] if translation else None,
                translation_lang=translation[1] if translation else None,
                attachments=attachments,
            )  # fmt: skip
            change = _append(before, current, draft, self._clock())
            score = rating_answer(current, text) if may_answer_rating else None
            if score is not None:
                change = _rated_by_answer(change, score)
            return _with_contact(change, proven)

        typist: Side | None = sender if sender == "visitor" or sender == "operator" else None

        async def write() -> Committed:
            return await self._write(
                account_id, convo_id, decide, client_msg_id, Cause(by=operator),
                routed=new, typist=typist,
            )  # fmt: skip

        try:
            committed = await write()
        except _ConsentUnchecked:
            # Refused before anything is written: a reply the worker would only fail to send
            # (a customer who texted STOP) is an error the caller sees now, on every API.
            assert convo_id is not None
            await self._refuse_opted_out(account_id, convo_id)
            consent_checked = True
            committed = await write()
        if committed.duplicate and not _holds(
            committed.conversation, convo_id, origin, account_key
        ):
            raise Conflict(
                "client_msg_id_reused",
                "clientMsgID was already used for another message; send a new one",
            )
        return committed

    async def _refuse_opted_out(self, account_id: str, convo_id: str) -> None:
        current = await self._conversation(account_id, convo_id)
        if current.channel_id is not None and await sms_opt_outs.opted_out(
            self._store, account_id, current.channel_id, current.user_info.phone
        ):
            raise Conflict(
                "sms_opted_out",
                "the customer texted STOP: nothing can be sent to this phone until they text START",
            )

    async def note(self, account_id: str, convo_id: str, operator_id: int, text: str) -> Committed:
        """A private note: shown to operators with its author, never to the visitor."""
        operator = await self._require_operator(account_id, operator_id)
        if not text.strip():
            raise Invalid("empty_message", "note is empty")
        self._check_length(text)

        def decide(current: Conversation | None) -> Change:
            current = _require(current)
            draft = Draft("operator", operator, text, private=True)
            return _append(current, current, draft, self._clock())

        return await self._write(account_id, convo_id, decide)

    async def assistant_reply(
        self,
        account_id: str,
        convo_id: str,
        text: str,
        *,
        assistant_id: int,
        model: str | None,
        tokens: int,
        hand_over: bool,
    ) -> Committed:
        """An AI assistant's reply, as the bot's message with its model and cost (issue 17);
        with ``hand_over`` the bot stops in the same write, so the conversation waits for the
        operators. Refused (409 ``bot_stopped``) once an operator has taken over, even if
        that happened while the model was thinking. A reply longer than messages may be is
        cut to fit: the model's length is not the visitor's fault."""
        body = text[: self._max_chars]
        self._check_length(body)

        def decide(current: Conversation | None) -> Change:
            current = _require(current)
            draft = Draft("bot", None, body, assistant_id=assistant_id, model=model, tokens=tokens)
            change = _append(current, current, draft, self._clock())
            if not hand_over:
                return change
            return evolve(change, after=evolve(change.after, mode="operator"))

        return await self._write(account_id, convo_id, decide)

    async def record(
        self, account_id: str, *, convo_id: str | None, origin: Origin, text: str
    ) -> Committed:
        """A line of the system's in the conversation (created from ``origin`` when
        ``convo_id`` is None), for both sides to see: what a widget asked of the server,
        such as a call (issue 17). It changes neither the status nor the mode."""
        self._check_length(text)
        new = await self._new_conversation(account_id, origin, None) if not convo_id else None

        def decide(current: Conversation | None) -> Change:
            if current is None:
                if new is None:
                    raise NotFound("conversation_not_found", "no such conversation")
                return _append(None, new, Draft("system", None, text), self._clock())
            return _append(current, current, Draft("system", None, text), self._clock())

        return await self._write(account_id, convo_id, decide, routed=new)

    async def qualify(self, account_id: str, convo_id: str) -> Conversation:
        """An operator marks the conversation a qualified lead; marking it again changes
        nothing (conversation:qualified is announced once)."""
        now = self._clock()
        return await self._patch(
            account_id,
            convo_id,
            lambda c: c if c.qualified_at is not None else evolve(c, qualified_at=now),
        )

    async def to_queue(self, account_id: str, convo_id: str) -> Conversation:
        """The bot stops and the conversation waits in the operators' queue, without an
        operator message: what an assistant does when its model cannot answer. A human who
        already has it keeps it."""

        def queued(c: Conversation) -> Conversation:
            control: Control = "human" if c.control == "human" else "queued"
            return evolve(c, mode="operator", control=control)

        return await self._patch(account_id, convo_id, queued)

    async def accept(self, account_id: str, convo_id: str, operator_id: int) -> Conversation:
        """Takes over: the bot stops, the conversation is active, and the caller owns it
        unless somebody already does."""
        operator = await self._require_operator(account_id, operator_id)

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            after = evolve(
                current,
                mode="operator",
                operator_id=current.operator_id if current.operator_id is not None else operator.id,
                status="active",
                resolved_at=None,
                control="human",
            )
            return None if after == current else Change(current, after)

        return (
            await self._write(account_id, convo_id, decide, cause=Cause(by=operator))
        ).conversation

    async def transfer(
        self,
        account_id: str,
        convo_id: str,
        by: Operator,
        *,
        to_operator: int | None = None,
        to_team: int | None = None,
        note: str = "",
    ) -> Conversation:
        """Hands the conversation to another operator, or back to a team's queue (unowned,
        so the first of them to reply claims it). Only its owner or an admin may transfer
        a conversation somebody owns. ``note``: a hand-over note for the colleagues, shown on
        the timeline's line (server/timeline.py), never to the visitor."""
        if (to_operator is None) == (to_team is None):
            raise Invalid("invalid_field", "give exactly one of operator_id and team_id")
        note = note.strip()
        check_body(note, NOTE_MAX_CHARS)
        receiver: Operator | None = None
        if to_operator is not None:
            receiver = await self._require_operator(account_id, to_operator)
        team: Team | None = None
        if to_team is not None:
            team = await self._team(account_id, to_team)
        has_online = team is not None and await self._has_online(account_id, team)
        now = self._clock()

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if current.operator_id not in (None, by.id) and not by.is_admin:
                raise Forbidden("not_owner", "only its owner or an admin may transfer it")
            control: Control = current.control
            if team is None:
                after = evolve(current, operator_id=to_operator)
                control = "human" if control != "closed" else control
            else:
                # Back in a queue: pending again until one of the team replies and owns it.
                status: Status = "open" if current.status == "active" else current.status
                after = evolve(current, operator_id=None, team_id=team.id, status=status)
                control = "queued" if control != "closed" else control
            after = evolve(after, control=control)
            if after == current:
                return None
            if team is not None and current.bot_user_id is not None and team.id != current.team_id:
                # The platform learns where its user went (seed 004's SelectDestination).
                line = Draft(
                    "system", by, f"Transferred to {team.name}",
                    platform=select_destination_event(team, has_online),
                )  # fmt: skip
                return _append(current, after, line, now)
            return Change(current, after)

        cause = Cause(by=by, to_operator=receiver, to_team=team, note=note)
        committed = await self._write(account_id, convo_id, decide, cause=cause)
        await self._freed(committed)
        return committed.conversation

    # -- bot platforms (issue 16, seed 004's Operator API) --

    async def hand_over(self, account_id: str, hand: HandOver) -> Committed:
        """A bot platform hands its user to a team's queue: the user's conversation on the
        channel (a new one, or the newest, reopened when closed) takes the team, the name and
        the attributes given; a fresh hand-over brings the bot's dialogue into the history
        before control passes to the queue. A human who already has it keeps it; a team that
        auto-assigns gives it to its next operator in turn (issue 18)."""
        for _, text in hand.dialogue:
            self._check_length(text)
        team = await self._team(account_id, hand.team_id)
        found = await self._store.bot_user_conversation(account_id, hand.channel_id, hand.user_id)
        origin = bot_origin(hand.channel_id, hand.user_id)
        new = None if found else await self._new_conversation(account_id, origin, hand.user_info)
        proven = normalized(origin.identity) if new and origin.identity else None
        now = self._clock()

        def decide(current: Conversation | None) -> Change:
            before = current
            base = current or evolve(_require(new), control="bot")
            fresh = before is None or base.control in ("bot", "closed")
            base = evolve(
                base,
                team_id=team.id,
                user_info=_merge_user_info(base.user_info, hand.user_info),
                attributes=_given(hand.attributes, base.attributes),
                hidden_attributes=_given(hand.hidden_attributes, base.hidden_attributes),
                custom_data=_given(hand.custom_data, base.custom_data),
                status="open" if base.status == "resolved" else base.status,
                resolved_at=None,
                control="bot" if fresh else base.control,
            )
            messages: list[Message] = []
            for sender, text in hand.dialogue if fresh else ():
                step = _append(before, base, Draft(sender, None, text), now)
                messages.extend(step.messages)
                base = step.after
            control: Control = "human" if base.control == "human" else "queued"
            after = evolve(base, control=control)
            return _with_contact(Change(before, after, tuple(messages)), proven)

        routed = evolve(new, team_id=team.id) if new else None
        committed = await self._write(
            account_id, found.id if found else None, decide, routed=routed
        )
        # A new conversation was given its owner in the write (routed); one the user had
        # already joins the team's queue now, and goes out with what waits there.
        if found and team.auto_assign and committed.conversation.operator_id is None:
            await self._hand_out(account_id, team)
        return committed

    async def close_by_customer(
        self, account_id: str, channel_id: int, user_id: str, text: str
    ) -> Conversation | None:
        """The bot platform's user left the chat: their open conversation is resolved with
        ``text`` as a system line (nothing goes back to the platform). None when they have
        no open conversation, so a repeated call changes nothing."""
        self._check_length(text)
        found = await self._store.bot_user_conversation(account_id, channel_id, user_id)
        if found is None:
            return None
        now = self._clock()

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if current.status == "resolved":
                return None
            step = _append(current, current, Draft("system", None, text), now)
            after = evolve(step.after, status="resolved", resolved_at=now, control="closed")
            return Change(current, after, step.messages)

        return (await self._write(account_id, found.id, decide)).conversation

    async def customer_message(
        self,
        account_id: str,
        origin: Origin,
        user_info: UserInfo,
        text: str,
        image_url: str | None = None,
    ) -> Committed:
        """A bot platform's user writes (sendText, sendFile): into their newest conversation
        on the channel (reopened when closed), or a new one in the default site's queue."""
        assert origin.channel_id is not None and origin.bot_user_id is not None
        found = await self._store.bot_user_conversation(
            account_id, origin.channel_id, origin.bot_user_id
        )
        return await self.send(
            account_id,
            convo_id=found.id if found else None,
            text=text,
            user_info=user_info,
            origin=origin,
            image_url=image_url,
        )

    async def destinations(self, account_id: str) -> list[tuple[Team, bool]]:
        """The account's teams, each with whether one of its operators is online."""
        online = await self._presence.operators_online(account_id)
        return [
            (team, _has_member(team, online)) for team in await self._store.list_teams(account_id)
        ]

    async def deactivate_operator(
        self,
        account_id: str,
        operator_id: int,
        *,
        to_operator: int | None,
        by: Operator | None = None,
    ) -> tuple[Operator, int]:
        """Deactivates an operator who leaves (issue 18): they can no longer sign in or take
        conversations, and each unresolved conversation they own goes to ``to_operator``, or
        with None back to its queue (unowned, open). Their past messages keep their name.

        Repeating it finishes what an interrupted call left (it is also how a conversation
        an operator claimed in the meantime is handed on). Returns the operator and how many
        conversations moved."""
        leaving = await self._store.get_operator(account_id, operator_id)
        if leaving is None:
            raise NotFound("operator_not_found", f"no operator {operator_id}")
        if to_operator == operator_id:
            raise Invalid("invalid_field", "hand the conversations to another operator")
        colleague = None
        if to_operator is not None:
            colleague = await self._require_operator(account_id, to_operator)
        # The timeline names who moved each conversation (the admin; None: the account's key)
        # and to whom.
        cause = Cause(by=by, to_operator=colleague)
        patch = OperatorPatch(active=False)
        # Deactivated first, so they cannot claim another conversation while theirs move.
        updated = await self._store.update_operator(account_id, operator_id, patch)
        if updated is None:
            raise NotFound("operator_not_found", f"no operator {operator_id}")
        await self._store.revoke_tokens(account_id, operator_id)

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if current.operator_id != operator_id or current.status == "resolved":
                return None  # moved or resolved since it was listed
            status: Status = "open" if current.status == "active" else current.status
            if to_operator is not None:
                after = evolve(current, operator_id=to_operator)
            else:
                after = evolve(current, operator_id=None, status=status)
            return Change(current, after)

        moved = 0
        for owned in await self._owned_unresolved(account_id, operator_id):
            if (await self._write(account_id, owned.id, decide, cause=cause)).events:
                moved += 1
        return updated, moved

    async def _owned_unresolved(self, account_id: str, operator_id: int) -> list[Conversation]:
        """Every unresolved conversation the operator owns, blocked ones included."""
        found: list[Conversation] = []
        for blocked in (False, True):
            after: tuple[float, str] | None = None
            while True:
                query = owned_unresolved(
                    operator_id, blocked=blocked, limit=OWNED_PAGE, after=after
                )
                page = await self._store.list_conversations(account_id, query)
                found += page
                if len(page) < OWNED_PAGE:
                    break
                after = (page[-1].last_activity, page[-1].id)
        return list({c.id: c for c in found}.values())

    async def block(
        self, account_id: str, convo_id: str, block_type: str | None, by: Operator | None = None
    ) -> Conversation:
        """Sets (or with None lifts) the visitor's block; ``by`` is who, for the timeline."""
        if block_type is not None and block_type not in BLOCK_TYPES:
            raise Invalid(
                "invalid_block_type", f"block_type must be one of {', '.join(BLOCK_TYPES)}"
            )
        chosen: BlockType | None = block_type
        return await self._patch(
            account_id, convo_id, lambda c: evolve(c, block_type=chosen), Cause(by=by)
        )

    async def update_visitor(
        self, account_id: str, convo_id: str, given: VisitorPatch
    ) -> Conversation:
        """Operators correct what they know of the visitor: given fields replace stored ones."""

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            info = evolve(current.user_info, **{k: v for k, v in given.items() if v is not None})
            check_user_info(info)
            after = evolve(current, user_info=info)
            return None if after == current else _with_contact(Change(current, after), None)

        return (await self._write(account_id, convo_id, decide)).conversation

    async def set_translation(self, account_id: str, convo_id: str, enabled: bool) -> Conversation:
        if enabled and self._translator is None:
            # Another account's conversation is a 404 like everywhere else, not a 409.
            await self._conversation(account_id, convo_id)
            raise Conflict(
                "translation_unavailable",
                "no translator is configured on this server (LIVEOP_TRANSLATE_URL)",
            )
        return await self._patch(account_id, convo_id, lambda c: evolve(c, translate=enabled))

    async def set_visitor_lang(self, account_id: str, convo_id: str, lang: str) -> Conversation:
        lang = check_language(lang)
        return await self._patch(account_id, convo_id, lambda c: evolve(c, visitor_lang=lang))

    # -- satisfaction ratings (issue 19) --

    async def rate(
        self,
        account_id: str,
        convo_id: str,
        score: str,
        comment: str,
        admit: Admit | None = None,
    ) -> Conversation:
        """The visitor rates the conversation's current resolution: once per resolution, and
        only while it is resolved and its site asks for ratings. A new rating (after the
        conversation was reopened and resolved again) replaces the previous one. ``admit`` is
        awaited once every check has passed (see ``Admit``)."""
        rating = rating_score(score)
        comment = comment.strip()
        check_body(comment, RATING_COMMENT_MAX_CHARS)
        current = await self._conversation(account_id, convo_id)
        asks = await self._site_asks(account_id, current)
        refusal = _rating_refusal(current, asks)
        if refusal is not None:
            raise refusal
        if admit is not None:
            await admit()

        def decide(current: Conversation | None) -> Change:
            current = _require(current)
            refusal = _rating_refusal(current, asks)
            if refusal is not None:
                raise refusal
            after = evolve(
                current,
                rating=rating,
                rating_comment=comment,
                rated_resolved_at=current.resolved_at,
            )
            return Change(current, after)

        return (await self._write(account_id, convo_id, decide)).conversation

    async def may_rate(self, account_id: str, convo_id: str) -> bool:
        """Whether the chat window should ask the visitor for a rating now."""
        current = await self._conversation(account_id, convo_id)
        return _rating_refusal(current, await self._site_asks(account_id, current)) is None

    async def _channel_asks(self, account_id: str, conversation: Conversation) -> bool:
        """Whether resolving ``conversation`` sends its customer the rating question: its SMS
        or email channel asks, and (SMS) the phone has not opted out of the channel's texts."""
        if conversation.channel_id is None or conversation.source_app not in OUTBOUND_CHANNELS:
            return False
        channel = await self._store.get_channel(account_id, conversation.channel_id)
        if channel is None or not asks_rating(channel):
            return False
        return channel.kind != "sms" or not await sms_opt_outs.opted_out(
            self._store, account_id, channel.id, conversation.user_info.phone
        )

    async def _site_asks(self, account_id: str, conversation: Conversation) -> bool:
        site = await self._store.get_site(account_id, conversation.site_id)
        # A deleted site's conversations keep the default: ask.
        return site is None or site.ask_rating

    async def proactive(
        self, account_id: str, operator_id: int, site_id: int, session_id: str, text: str
    ) -> Committed:
        """An operator reaches out to a visitor browsing a site: the message goes into the
        session's newest conversation, or opens one that the visitor's window shows at once."""
        check_session_id(session_id)
        open_ones = await self._store.list_conversations(
            account_id, _session_query(site_id, session_id)
        )
        committed = await self.send(
            account_id,
            convo_id=open_ones[0].id if open_ones else None,
            text=text,
            operator_id=operator_id,
            origin=Origin(
                VISITOR_CHANNEL, site_id, session_id, identity=Identity("session", session_id)
            ),
        )
        await self._feed.session_conversation(account_id, session_id, committed.conversation.id)
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
        fetched = await self._store.list_messages(
            account_id, convo_id, after_seq=cursor, limit=POLL_BATCH, visitor_view=True
        )
        current = await self._mark_read(current, side, fetched)
        news = [m for m in fetched if _other_side(m.sender, side) and m.created > since]
        return PollResult(current, news, await self._other_typing(convo_id, side))

    async def window_poll(
        self, account_id: str, convo_id: str, *, since: float = 0.0, after_seq: int | None = None
    ) -> PollResult:
        """The chat window's view: every message of both sides after a cursor (``after_seq``,
        a visitor seq, when the client has one, else the seed's ``since`` time), newest
        POLL_BATCH at most. Marks the operators' messages as read by the visitor."""
        if after_seq is not None:
            found = await self._store.read_conversation(
                account_id,
                convo_id,
                after_seq=after_seq,
                limit=POLL_BATCH,
                visitor_view=True,
                visitor_seqs=True,
            )
        else:
            found = await self._store.read_conversation(
                account_id,
                convo_id,
                after_created=since,
                limit=POLL_BATCH,
                newest=True,
                visitor_view=True,
            )
        current, messages = _require(found)
        await self._presence.visitors_seen(account_id, [convo_id])
        current = await self._mark_read(current, "visitor", messages)
        return PollResult(current, messages, await self._other_typing(convo_id, "visitor"))

    async def window_read(self, account_id: str, convo_id: str, seq: int) -> None:
        """The chat window showed the visitor the messages up to visitor seq ``seq``, which
        its socket delivered without a poll: the visitor's read cursor moves there."""
        found = await self._store.read_conversation(
            account_id, convo_id, after_seq=seq - 1, limit=1, visitor_view=True, visitor_seqs=True
        )
        current, shown = _require(found)
        await self._mark_read(current, "visitor", shown)

    async def session_conversation(
        self, account_id: str, origin: Origin, address: str
    ) -> Conversation | None:
        """Marks a widget session online (bounded per client ``address`` and account, see
        Presence.session_seen) and finds the conversation an operator opened for it."""
        if origin.session_id is None:
            raise Invalid("missing_field", "convoID or sessionID is required")
        await self._presence.session_seen(
            account_id, session_mark(origin.site_id, origin.session_id), address
        )
        found = await self._store.list_conversations(
            account_id, _session_query(origin.site_id, origin.session_id)
        )
        return found[0] if found else None

    async def history(
        self,
        account_id: str,
        convo_id: str,
        limit: int = HISTORY_DEFAULT,
        *,
        with_notes: bool = False,
        before_seq: int | None = None,
    ) -> tuple[Conversation, list[Message]]:
        """The newest ``limit`` messages (before ``before_seq``, to page back). Notes only
        ``with_notes``: the operator panel is the one surface that shows them."""
        if not 1 <= limit <= HISTORY_MAX:
            raise Invalid("invalid_field", f"the limit must be between 1 and {HISTORY_MAX}")
        found = await self._store.read_conversation(
            account_id,
            convo_id,
            limit=limit,
            newest=True,
            visitor_view=not with_notes,
            before_seq=before_seq,
        )
        return _require(found)

    async def operator_view(
        self, account_id: str, convo_id: str, *, limit: int, before_seq: int | None
    ) -> OperatorView:
        """The operator panel's view: notes included, the visitor's messages it shows marked
        read for the operators, and the conversation's contact (None only on a conversation
        a previous release wrote during a rolling update)."""
        current, messages = await self.history(
            account_id, convo_id, limit, with_notes=True, before_seq=before_seq
        )
        opted_out = current.channel_id is not None and await sms_opt_outs.opted_out(
            self._store, account_id, current.channel_id, current.user_info.phone
        )
        marked = await self._mark_read(current, "operator", messages)
        contact = (
            None
            if current.contact_id is None
            else await self._store.get_contact(account_id, current.contact_id)
        )
        opt_outs = [] if contact is None else await sms_opt_outs_of(self._store, contact)
        lines = timeline.from_payloads(
            await self._store.event_payloads(
                account_id,
                convo_id,
                kind=CONVERSATION_UPDATED.name,
                containing=timeline.MARKER,
                limit=timeline.LINES_MAX,
            )
        )
        # The lines between the messages shown: a page further back brings its own.
        low = messages[0].seq if messages and messages[0].seq > 1 else 0
        high = before_seq if before_seq is not None else current.last_seq + 1
        shown = [line for line in lines if low <= line["after_seq"] < high]
        return OperatorView(marked, messages, opted_out, contact, opt_outs, shown)

    async def set_status(
        self, account_id: str, convo_id: str, status: str, by: Operator | None = None
    ) -> Conversation:
        """Moves the conversation to ``status``. Resolving it closes it: a bot platform's
        user's conversation then tells the platform, as closed by ``by`` (or its owner)."""
        if status not in STATUSES:
            raise Invalid("invalid_status", f"status must be one of {', '.join(STATUSES)}")
        new_status: Status = status
        now = self._clock()
        closer = by
        asks = False
        if new_status == "resolved":
            current = await self._conversation(account_id, convo_id)
            if closer is None:
                closer = await self._operator_or_none(account_id, current.operator_id)
            asks = await self._channel_asks(account_id, current)

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            if current.status == new_status:
                return None
            resolved_at = now if new_status == "resolved" else None
            control = "closed" if new_status == "resolved" else _reopened(current)
            after = evolve(
                current, status=new_status, resolved_at=resolved_at, last_activity=now,
                control=control,
            )  # fmt: skip
            line: Draft | None = None
            if new_status == "resolved" and current.bot_user_id is not None:
                who = f" by {closer.name}" if closer is not None else ""
                line = Draft("system", closer, f"Closed{who}", platform=closed_event(closer))
            elif asks:
                # The question leaves through the channel like a reply (server/outbound.py).
                line = Draft("system", None, RATING_QUESTION)
                after = evolve(after, rating_asked_resolved_at=resolved_at)
            if line is None:
                return Change(current, after)
            change = _append(current, current, line, now)
            closed = evolve(
                change.after, **_closing(after),
                rating_asked_resolved_at=after.rating_asked_resolved_at,
            )  # fmt: skip
            return Change(current, closed, change.messages, payloads=change.payloads)

        committed = await self._write(account_id, convo_id, decide, cause=Cause(by=by))
        await self._freed(committed)
        return committed.conversation

    async def set_typing(
        self,
        account_id: str,
        convo_id: str,
        *,
        operator_id: int | None,
        admit: Admit | None = None,
    ) -> None:
        side = await self._side(account_id, operator_id)
        await self._conversation(account_id, convo_id)
        if admit is not None:
            await admit()
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
        if not operator.active:
            raise Conflict("operator_deactivated", f"operator {operator_id} has been deactivated")
        return operator

    async def _require_operator(self, account_id: str, operator_id: int) -> Operator:
        operator = await self._operator(account_id, operator_id)
        assert operator is not None
        return operator

    async def _patch(
        self,
        account_id: str,
        convo_id: str,
        change: Callable[[Conversation], Conversation],
        cause: Cause = NO_CAUSE,
    ) -> Conversation:
        """Sets conversation fields that follow no rule beyond their own validity."""

        def decide(current: Conversation | None) -> Change | None:
            current = _require(current)
            after = change(current)
            return None if after == current else Change(current, after)

        return (await self._write(account_id, convo_id, decide, cause=cause)).conversation

    async def _new_conversation(
        self, account_id: str, origin: Origin | None, user_info: UserInfo | None
    ) -> Conversation:
        """A conversation not yet written, routed to its site's team."""
        origin = origin or Origin()
        if origin.session_id is not None:
            check_session_id(origin.session_id)
        site = await self._store.get_site(account_id, origin.site_id)
        if site is None:
            if await self._store.get_account(account_id) is None:
                raise NotFound("account_not_found", "no such account")
            raise NotFound("site_not_found", f"no site {origin.site_id}")
        now = self._clock()
        return Conversation(
            id=secrets.token_urlsafe(CONVO_ID_BYTES),
            account_id=account_id,
            source_app=origin.source_app,
            status="open",
            mode="bot",
            # A bot platform sends its user's messages only once it has handed the user over.
            control="queued" if origin.bot_user_id is not None else "bot",
            bot_user_id=origin.bot_user_id,
            operator_id=None,
            team_id=site.team_id,
            user_info=user_info or UserInfo(),
            created=now,
            last_activity=now,
            resolved_at=None,
            site_id=site.id,
            session_id=origin.session_id,
            channel_id=origin.channel_id,
        )

    async def _translation(
        self,
        account_id: str,
        convo_id: str | None,
        sender: Sender,
        operator: Operator | None,
        text: str,
        template: str | None = None,
    ) -> tuple[str, str] | None:
        """(translated text, its language) when the conversation translates live; a canned
        ``template`` is translated as its macros expand now.

        A translator outage never costs the message: it is stored untranslated."""
        if self._translator is None or convo_id is None or sender == "bot":
            return None
        if not (text.strip() or template):
            return None
        current = await self._store.get_conversation(account_id, convo_id)
        if current is None or not current.translate:
            return None
        if template is not None:
            assert operator is not None
            text = expand_macros(template, current.user_info, operator.name)
        if sender == "operator":
            assert operator is not None
            if not current.visitor_lang:
                return None
            source, target = operator.lang, current.visitor_lang
        else:
            owner = await self._operator_or_none(account_id, current.operator_id)
            source = current.visitor_lang or "auto"
            target = owner.lang if owner else DEFAULT_LANG
        if source == target:
            return None
        try:
            return await self._translator.translate(text, source=source, target=target), target
        except TranslationFailed:
            log.warning("translation failed; the message is kept untranslated", exc_info=True)
            return None

    async def _team(self, account_id: str, team_id: int) -> Team:
        for team in await self._store.list_teams(account_id):
            if team.id == team_id:
                return team
        raise NotFound("team_not_found", f"no team {team_id}")

    async def _has_online(self, account_id: str, team: Team) -> bool:
        return _has_member(team, await self._presence.operators_online(account_id))

    async def _operator_or_none(self, account_id: str, operator_id: int | None) -> Operator | None:
        if operator_id is None:
            return None
        return await self._store.get_operator(account_id, operator_id)

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
                return Change(current, evolve(current, visitor_read_seq=high))
            if current.operator_read_seq >= high:
                return None
            # Only messages past the cursor as it is now were still counted as unread; a view
            # that reaches the newest message has shown everything.
            seen = sum(
                1 for m in shown if m.sender == "visitor" and m.seq > current.operator_read_seq
            )
            unread = 0 if high >= current.last_seq else max(0, current.unread - seen)
            # The same cursor as the visitor numbers messages: the newest one it was shown.
            visible = [m.visitor_seq for m in shown if m.visitor_seq is not None and m.seq <= high]
            read_visitor_seq = max([current.operator_read_visitor_seq, *visible])
            after = evolve(
                current,
                operator_read_seq=high,
                unread=unread,
                operator_read_visitor_seq=read_visitor_seq,
            )
            return Change(current, after)

        committed = await self._write(current.account_id, current.id, decide)
        await self._feed.read(committed)
        return committed.conversation

    async def _write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        client_msg_id: str | None = None,
        cause: Cause = NO_CAUSE,
        *,
        routed: Conversation | None = None,
        typist: Side | None = None,
    ) -> Committed:
        """The one place a change is committed with the events it produces (server/events.py
        decides and renders them, with ``cause`` for the timeline), and announced only once
        it is. ``routed``: the conversation the change creates, as routed (its team and site),
        when it creates one; a team that auto-assigns gives it an owner in the same decision
        (issue 18). ``typist``: the side whose message this is, whose typing indicator ends
        before anybody hears of it."""
        cause = evolve(cause, at=self._clock())
        team = await self._auto_assigning(account_id, routed)
        if team is None or routed is None:
            committed = await self._store.write(
                account_id, convo_id, announced(decide, cause), client_msg_id=client_msg_id
            )
        else:
            available = await self._available(account_id, team, routed.site_id)

            def assign(current: Conversation | None, roster: Roster | None) -> Change | None:
                change = decide(current)
                if change is None:
                    return None
                return announce(round_robin(change, roster, available), cause)

            committed = await self._store.write_routed(
                account_id, team.id, assign, client_msg_id=client_msg_id
            )
        # Not for a retry (it announces nothing, and its typist may be typing the next
        # message by now) nor in a conversation this write created (nobody typed in it yet).
        if typist is None or committed.duplicate or committed.before is None:
            await self._feed.committed(committed)
            return committed
        # Started before the ring, so that no process hears of the message while its typist
        # still reads as typing; awaited after it, by then usually landed with the events.
        cleared = self._typing.clear(committed.conversation.id, typist)
        await self._feed.committed(committed)
        await cleared
        return committed

    async def assign_waiting(self, operator: Operator) -> int:
        """Issue 18: ``operator`` can take conversations again (came online, back from away,
        or finished one), so the queues of their teams that auto-assign hand out what waits
        there, oldest first, in turn, while anybody is eligible. Returns how many went."""
        assigned = 0
        for team in await self._store.list_teams(operator.account_id):
            if team.auto_assign and operator.id in team.member_ids:
                assigned += await self._hand_out(operator.account_id, team)
        return assigned

    async def _hand_out(self, account_id: str, team: Team) -> int:
        waiting = InboxQuery(
            viewer=0,
            every_team=True,
            owner="unassigned",
            team_id=team.id,
            statuses=("open",),
            limit=WAITING_PAGE,
        )
        assigned = 0
        # The listing is newest first.
        for queued in reversed(await self._store.list_conversations(account_id, waiting)):
            available = await self._available(account_id, team, queued.site_id)
            committed = await self._store.write_routed(
                account_id, team.id, _take_turn(team.id, available), convo_id=queued.id
            )
            if not committed.events:
                if committed.conversation.operator_id is None:
                    break  # nobody is eligible now: the rest waits too
                continue  # somebody claimed it meanwhile
            await self._feed.committed(committed)
            assigned += 1
        return assigned

    async def _freed(self, committed: Committed) -> None:
        """After a change that may have freed its owner's slot (resolved, set waiting, handed
        on), what waits in their teams' queues may go to somebody."""
        before, after = committed.before, committed.conversation
        if before is None or before.operator_id is None or before.status not in OWNED_OPEN:
            return
        if after.operator_id == before.operator_id and after.status in OWNED_OPEN:
            return
        owner = await self._store.get_operator(after.account_id, before.operator_id)
        if owner is not None and owner.active:
            await self.assign_waiting(owner)

    async def _auto_assigning(self, account_id: str, routed: Conversation | None) -> Team | None:
        if routed is None or routed.team_id is None:
            return None
        for team in await self._store.list_teams(account_id):
            if team.id == routed.team_id:
                return team if team.auto_assign else None
        return None

    async def _available(self, account_id: str, team: Team, site_id: int) -> frozenset[int]:
        """The team's members who take conversations of the site now: their inbox is open
        (presence) and they are not away from the site (the Online/Away switch)."""
        online = await self._presence.operators_online(account_id)
        return frozenset(
            [
                member
                for member in team.member_ids
                if member in online
                and site_id not in await self._presence.away_sites(account_id, member)
            ]
        )

    def _check_length(self, text: str) -> None:
        check_body(text, self._max_chars)


def _session_query(site_id: int, session_id: str) -> InboxQuery:
    """A session's newest conversation, whoever may see it in the inbox. Resolved ones count:
    a returning visitor's window shows (and its socket follows) the last conversation, so a
    proactive message must land there to be seen; the visitor's answer reopens it."""
    return InboxQuery(
        viewer=0,
        every_team=True,
        session_id=session_id,
        site_id=site_id,
        limit=1,
    )


def _holds(
    original: Conversation, convo_id: str | None, origin: Origin | None, account_key: bool
) -> bool:
    """Whether a caller already holds the conversation of a clientMsgID it repeats, so that
    answering it as a retry grants nothing: the conversation it names; without one, the one
    its widget session started (the session already finds it, see ``session_conversation``);
    with the account's key, one its integration opened (any channel but the chat window's)."""
    if convo_id is not None:
        return original.id == convo_id
    own_session = (
        origin is not None
        and origin.session_id is not None
        and (original.site_id, original.session_id) == (origin.site_id, origin.session_id)
    )
    return own_session or (account_key and original.source_app != VISITOR_CHANNEL)


class _ConsentUnchecked(Exception):
    """An operator's reply to an SMS thread, decided before the phone's opt-out was looked up:
    the write is abandoned (nothing written) and made again once it was."""


def _texted(conversation: Conversation) -> bool:
    return conversation.source_app == "smsbroadcast" and conversation.channel_id is not None


def _rating_refusal(current: Conversation, site_asks: bool) -> Conflict | None:
    """Why ``current`` cannot be rated now, or None when it can."""
    if not site_asks:
        return Conflict("rating_disabled", "this site does not ask for ratings")
    if current.status != "resolved":
        return Conflict("not_resolved", "only a resolved conversation can be rated")
    if current.rated_resolved_at == current.resolved_at:
        return Conflict("already_rated", "this resolution has been rated already")
    return None


def rating_answer(current: Conversation, text: str) -> int | None:
    """The score a customer's SMS or email gives: a lone digit from RATING_MIN to RATING_MAX
    (see ``reply_score``), while ``current`` is resolved and the rating question of this
    resolution went out and is unanswered. None: the text is a message like any other, so a
    second digit after the rating, or one to a conversation never asked, reopens it."""
    if (
        current.status != "resolved"
        or current.rating_asked_resolved_at is None
        or current.rating_asked_resolved_at != current.resolved_at
        or current.rated_resolved_at == current.resolved_at
    ):
        return None
    return reply_score(text)


def reply_score(text: str) -> int | None:
    """The digit a reply to the rating question is, or None. NFKC makes the digits phones
    type in other widths or shapes ASCII (U+FF15 fullwidth five, U+2464 circled five);
    digits of other scripts (U+0665 Arabic-Indic five) stay text, as the chat window's
    ``rate`` refuses them. Around the digit only punctuation, spaces and the keycap emoji's
    marks may stand."""
    kept = [
        c
        for c in unicodedata.normalize("NFKC", _without_signature(text))
        if not (c.isspace() or c in _SCORE_MARKS or _around_score(unicodedata.category(c)))
    ]
    if len(kept) != 1 or not ("0" <= kept[0] <= "9"):
        return None
    score = int(kept[0])
    return score if RATING_MIN <= score <= RATING_MAX else None


def _without_signature(text: str) -> str:
    typed: list[str] = []
    for line in text.splitlines():
        if _SIGNATURE_DELIMITER.match(line):
            break
        if not _APP_SIGNATURE.match(line.strip()):
            typed.append(line)
    return "\n".join(typed)


def _around_score(category: str) -> bool:
    """Whether a character of this Unicode category may stand around a score: separators and
    punctuation, but not a dash, which makes "-1" a number rather than a one."""
    return category[0] == "Z" or (category[0] == "P" and category != "Pd")


def _rated_by_answer(change: Change, score: int) -> Change:
    """``change`` (the customer's answer appended) recording ``score`` as the rating of the
    resolution asked about: unlike other messages, the answer leaves the conversation
    resolved, with the owner and the unread count it had."""
    before = change.before
    assert before is not None
    after = evolve(
        change.after,
        status=before.status,
        resolved_at=before.resolved_at,
        control=before.control,
        unread=before.unread,
        rating=score,
        rating_comment="",
        rated_resolved_at=before.resolved_at,
    )
    return evolve(change, after=after)


def rating_score(value: str) -> int:
    """The score a client sent (a JSON number arrives as its digits), from RATING_MIN to
    RATING_MAX in ASCII digits only: "5.0" and U+0665 (Arabic-Indic five, which int()
    would take) are refused, not coerced."""
    if not (value.isascii() and value.isdigit() and RATING_MIN <= int(value) <= RATING_MAX):
        raise Invalid("invalid_rating", f"rating must be a whole number {RATING_MIN}-{RATING_MAX}")
    return int(value)


def _read_seq(conversation: Conversation, side: Side) -> int:
    if side == "operator":
        return conversation.operator_read_seq
    return conversation.visitor_read_seq


def _require(current: T | None) -> T:
    if current is None:
        raise NotFound("conversation_not_found", "no such conversation")
    return current


def _append(before: Conversation | None, current: Conversation, draft: Draft, now: float) -> Change:
    """The rules of seed 000 for one new message, and seed 001's blocks and notes."""
    # Never earlier than what the conversation already holds, so `since` filters stay exact.
    created = max(now, current.last_activity)
    status, mode, owner, control = (
        current.status,
        current.mode,
        current.operator_id,
        current.control,
    )
    resolved_at, unread, preview = current.resolved_at, current.unread, current.preview
    delivery: Delivery | None = None
    sender, operator = draft.sender, draft.operator
    firsts = _first_response(current, draft, created)
    if draft.private:
        pass  # a note changes nothing the visitor or the queue would notice
    elif sender == "operator":
        assert operator is not None
        mode = "operator"  # the bot never answers again
        owner = owner if owner is not None else operator.id  # first replier owns it, for good
        status = "active" if status == "open" else status
        control = "human"
    elif sender == "bot" and control != "bot":
        raise Conflict(
            "bot_stopped", f"the bot is not in control of this conversation (control: {control})"
        )
    elif sender == "bot" and current.block_type in ("ai", "both"):
        raise Conflict("bot_blocked", "the bot is blocked from this conversation")
    elif sender == "visitor" and current.block_type == "both":
        raise Forbidden("visitor_blocked", "this visitor has been blocked")
    else:
        if sender == "visitor":
            unread += 1
        if status == "resolved":  # the customer wrote again: back in the queue, owner kept
            status, resolved_at, control = "open", None, _reopened(current)
        elif status == "waiting" and sender == "visitor":  # the answer we waited for came
            status = "open"
    message_id = secrets.token_urlsafe(MESSAGE_ID_BYTES)
    platform = draft.platform
    if not draft.private:
        preview = (draft.text.strip() or IMAGE_PREVIEW)[:PREVIEW_CHARS]
        if sender != "visitor" and current.source_app in OUTBOUND_CHANNELS:
            delivery = "queued"
    seq = current.last_seq + 1
    # A bot platform hears of every operator answer, and of the system lines that carry one of
    # its events; never of its own user's messages or a note.
    to_platform = (
        current.bot_user_id is not None
        and not draft.private
        and (platform is not None or sender == "operator")
    )
    if to_platform:
        delivery = "queued"
    # Notes have no visitor seq, so the visitor's numbering has no gap where one lies.
    visitor_seq = None if draft.private else current.visitor_last_seq + 1
    message = Message(
        id=message_id,
        convo_id=current.id,
        seq=seq,
        sender=sender,
        operator_id=operator.id if operator else None,
        operator_name=operator.name if operator else None,
        text=draft.text,
        created=created,
        client_msg_id=draft.client_msg_id,
        delivery=delivery,
        private=draft.private,
        image_url=draft.image_url,
        translation=draft.translation,
        translation_lang=draft.translation_lang,
        visitor_seq=visitor_seq,
        assistant_id=draft.assistant_id,
        model=draft.model,
        tokens=draft.tokens,
        attachments=draft.attachments,
    )
    payloads: tuple[tuple[int, str], ...] = ()
    if to_platform:
        assert current.bot_user_id is not None
        if platform is None:
            assert operator is not None
            platform = reply_event(message, operator)
        event = addressed(platform, message_id, current.bot_user_id)
        payloads = ((seq, orjson.dumps(event).decode()),)
    after = evolve(
        current,
        status=status,
        mode=mode,
        operator_id=owner,
        resolved_at=resolved_at,
        unread=unread,
        last_seq=seq,
        visitor_last_seq=current.visitor_last_seq if visitor_seq is None else visitor_seq,
        last_activity=created,
        preview=preview,
        control=control,
        **firsts,
    )
    return Change(before, after, (message,), payloads=payloads)


def next_in_turn(roster: Roster, available: frozenset[int]) -> int | None:
    """The round robin (issue 18): the first of the roster's members, by id, after the one it
    assigned last (wrapping around), who is available and owns fewer than the limit of open or
    active conversations; None when nobody is."""
    limit = roster.assign_limit
    eligible = [
        m
        for m in roster.members
        if m in available and (limit == 0 or roster.load.get(m, 0) < limit)
    ]
    later = [m for m in eligible if m > roster.last_assigned]
    return next(iter(later or eligible), None)


def round_robin(change: Change, roster: Roster | None, available: frozenset[int]) -> Change:
    """``change`` with the owner its team's round robin gives the conversation, when the
    team auto-assigns and nobody owns it yet (an operator's proactive message makes its author
    the owner). With nobody eligible it stays in the team's queue, unowned."""
    if change.after.operator_id is not None:
        return change
    if roster is None or not roster.auto_assign:
        return change
    owner = next_in_turn(roster, available)
    if owner is None:
        return change
    return evolve(change, after=evolve(change.after, operator_id=owner))


def _take_turn(team_id: int, available: frozenset[int]) -> RosterDecide:
    """The decision that gives a conversation waiting in the team's queue its owner in turn;
    none when it no longer waits there (claimed, moved or no longer open meanwhile)."""

    def decide(current: Conversation | None, roster: Roster | None) -> Change | None:
        current = _require(current)
        if current.operator_id is not None or current.team_id != team_id:
            return None
        if current.status != "open":
            return None
        change = round_robin(Change(current, current), roster, available)
        return None if change.after == current else announce(change)

    return decide


def _has_member(team: Team, online: set[int]) -> bool:
    """Whether one of the team's operators is online (seed 004's ``hasOnline``)."""
    return any(member in online for member in team.member_ids)


def _given(value: str | None, kept: str) -> str:
    return kept if value is None else value


def _reopened(current: Conversation) -> Control:
    """Who has a closed conversation that opens again: its owner, if an operator ever spoke
    in it; the operators' queue, if a bot already handed it over; else the bot again."""
    if current.control != "closed":
        return current.control
    if current.mode == "operator" and current.operator_id is not None:
        return "human"
    if current.mode == "operator" or current.bot_user_id is not None:
        return "queued"
    return "bot"


def _closing(after: Conversation) -> dict[str, Any]:
    """The fields resolving sets, applied after the closing line is appended."""
    return {
        "status": after.status,
        "resolved_at": after.resolved_at,
        "control": after.control,
    }


def _with_contact(change: Change, proven: Identity | None) -> Change:
    """``change`` with what it tells of the conversation's contact: the identity a channel
    proved, when it creates the conversation, and whenever the visitor's details are new or
    changed, the identities and name somebody typed there (recorded on the contact, never
    linking it to anybody: server/contacts.py)."""
    info = change.after.user_info
    if change.before is not None and change.before.user_info == info:
        return change
    return evolve(
        change,
        identity=proven if change.before is None else None,
        typed=typed_identities(info),
        contact_name=display_name(info),
    )


def _first_response(current: Conversation, draft: Draft, created: float) -> dict[str, Any]:
    """What reports need of a new message (issue 19): the visitor's first message, the first
    operator reply after it (notes do not count), and whether the bot ever answered."""
    if draft.private:
        return {}
    if draft.sender == "visitor" and current.asked_at is None:
        return {"asked_at": created}
    if draft.sender == "operator" and current.asked_at is not None and current.replied_at is None:
        assert draft.operator is not None
        return {"replied_at": created, "replied_by": draft.operator.id}
    if draft.sender == "bot":
        return {"bot_answered": True}
    return {}
