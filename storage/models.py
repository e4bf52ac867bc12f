"""Plain records the Store reads and writes. They know nothing of JSON or HTTP."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Literal, TypeVar, dataclass_transform

from storage.webhooks import HookEvent

_R = TypeVar("_R")


@dataclass_transform(frozen_default=True)
def record(cls: type[_R]) -> type[_R]:
    """A frozen dataclass to the type checker, a plain one with slots at run time.

    The records below are built for every row read and every change decided, several per
    message inside the write: a frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``, which made building a 44-field Conversation ten times slower than
    plain slot stores (6.8 against 0.7 us). mypy --strict still refuses any assignment to a
    field, ``dataclasses.replace`` still checks its keywords, and the hash stays the frozen
    one (by value), so only a deliberate ``object.__setattr__`` could change a record, as it
    could a frozen one."""
    return dataclass(slots=True, unsafe_hash=True)(cls)


if TYPE_CHECKING:
    # To the type checker evolve is dataclasses.replace, whose keywords it checks against the
    # record's fields.
    from dataclasses import replace as evolve
else:

    def evolve(obj: Any, /, **changes: Any) -> Any:
        """``dataclasses.replace`` for records, in about half its time.

        replace walks the record's fields in Python on every call, and the engine copies a
        40-field Conversation several times per message inside the write. A record's fields
        are all positional ``__init__`` arguments, in order, with no ``__post_init__``: the
        copy is its values, read in one C call, with ``changes`` put in their places."""
        kind = type(obj)
        layout = _LAYOUTS.get(kind)
        if layout is None:
            # Two threads may both make a class's layout once; either one is the same.
            layout = _LAYOUTS[kind] = _layout(kind)
        values_of, places = layout
        values = list(values_of(obj))
        for name, value in changes.items():
            place = places.get(name)
            if place is None:
                raise TypeError(f"{kind.__name__} has no field {name!r}")
            values[place] = value
        return kind(*values)


# Per record class: what reads its fields' values in order, and each field's place.
_LAYOUTS: dict[type, tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]] = {}


def _layout(kind: type) -> tuple[Callable[[Any], tuple[Any, ...]], dict[str, int]]:
    fields = dataclasses.fields(kind)
    if hasattr(kind, "__post_init__") or any(f.kw_only or not f.init for f in fields):
        raise TypeError(f"{kind.__name__} is not a record evolve can copy")
    names = [f.name for f in fields]
    read = attrgetter(*names)
    places = {name: place for place, name in enumerate(names)}
    if len(names) == 1:  # attrgetter of one name returns the value itself, not a tuple
        return (lambda obj: (read(obj),)), places
    return read, places


SourceApp = Literal["chatbot", "smsbroadcast", "emailbroadcast", "liveoperator"]
Status = Literal["open", "waiting", "active", "resolved"]
Mode = Literal["bot", "operator"]
# Who answers the customer now (issue 16): the bot, nobody yet (waiting in the operators'
# queue), a human operator, or nobody because it is closed.
Control = Literal["bot", "queued", "human", "closed"]
Sender = Literal["visitor", "operator", "bot", "system"]
# delivered and undelivered come from an SMS provider's status callbacks (issue 14).
Delivery = Literal["queued", "sent", "failed", "delivered", "undelivered"]
# Seed 001's block types: `both` refuses the visitor's messages, `ai` stops only the bot,
# `operator` hides the conversation from the operators' queues.
BlockType = Literal["both", "ai", "operator"]
WidgetPosition = Literal["right", "left"]

SOURCE_APPS: tuple[SourceApp, ...] = ("chatbot", "smsbroadcast", "emailbroadcast", "liveoperator")
STATUSES: tuple[Status, ...] = ("open", "waiting", "active", "resolved")
BLOCK_TYPES: tuple[BlockType, ...] = ("both", "ai", "operator")
WIDGET_POSITIONS: tuple[WidgetPosition, ...] = ("right", "left")
# What a channel carries (issue 14): web chat, SMS, email, a bot platform.
ChannelKind = Literal["web", "sms", "email", "bot"]
# An inbound MMS picture's fetch (see SmsMedia).
MediaState = Literal["queued", "stored", "refused", "failed"]
CHANNEL_KINDS: tuple[ChannelKind, ...] = ("web", "sms", "email", "bot")
# How a contact is recognised (issue 14): a phone number in E.164, a normalised email address,
# a widget session id, a bot platform's user id ("<channel_id>:<user>").
IdentityKind = Literal["phone", "email", "session", "bot"]
IDENTITY_KINDS: tuple[IdentityKind, ...] = ("phone", "email", "session", "bot")
# Every account has this site; conversations that name none belong to it.
DEFAULT_SITE_ID = 1
# A widget id is public but must not be guessable: 128 random bits.
WIDGET_ID_BYTES = 16


@record
class Account:
    id: str
    name: str
    created: float


@record
class Operator:
    account_id: str
    id: int
    name: str
    email: str
    is_admin: bool
    created: float
    # The language live translation renders visitor messages in for this operator.
    lang: str = "en"
    # Shown beside the operator's answers where a bot platform relays them ("" for none).
    avatar_url: str = ""
    # A deactivated operator cannot sign in and takes no conversations; their name stays on
    # what they wrote (issue 18).
    active: bool = True


@record
class Invite:
    """An admin's invitation of a teammate (issue 18): whoever holds its one-time link, until
    ``expires``, chooses a password and becomes this operator. Only the token's hash is kept."""

    account_id: str
    id: int
    email: str
    name: str
    is_admin: bool
    team_ids: tuple[int, ...]
    # The admin who invited (None: the account's API key).
    invited_by: int | None
    created: float
    expires: float
    # Set, with the operator it made, when the link was used.
    used_at: float | None = None
    operator_id: int | None = None


@record
class OperatorCredentials:
    operator: Operator
    password_hash: str


@record
class Team:
    account_id: str
    id: int
    name: str
    member_ids: tuple[int, ...]
    # Issue 18: each new conversation routed to the team goes to its next online operator in
    # turn, passing over those who own ``assign_limit`` open or active ones (0: no limit).
    # Off, the first operator to reply claims it.
    auto_assign: bool = False
    assign_limit: int = 0


@record
class Roster:
    """A team's round robin as a write found it, its row locked to commit (issue 18): the
    settings, its active members by id, the operator it assigned last (0 for none) and how
    many open or active conversations each member owns."""

    team_id: int
    auto_assign: bool
    assign_limit: int
    members: tuple[int, ...]
    last_assigned: int
    load: dict[int, int]


@record
class CannedResponse:
    account_id: str
    id: int
    name: str
    tag: str
    message: str
    # The operator whose personal response it is (issue 18); None for the account's.
    owner: int | None = None


@record
class OpenHours:
    """One interval a site is open, on a weekday (0 is Monday) in the site's time zone, in
    minutes from midnight: ``close`` is after ``open`` and at most 24:00."""

    weekday: int
    open: int
    close: int


@record
class Site:
    """One of an account's websites: how its widget looks, and which team its new
    conversations are routed to (None: every operator's queue)."""

    account_id: str
    id: int
    name: str
    color: str
    position: WidgetPosition
    greeting: str
    team_id: int | None
    created: float
    # Whether the visitor is asked to rate a conversation once it is resolved.
    ask_rating: bool = True
    # Seed 003's widget (issue 17): its public id, logo, default assistant, the origins whose
    # pages may call the widget API (CORS), and the number click-to-call dials ("" for none).
    widget_id: str = ""
    logo_url: str = ""
    assistant_id: int | None = None
    allowed_origins: tuple[str, ...] = ()
    voice_number: str = ""
    # Issue 18: when the site's team answers, in its own zone (none: always open), what the
    # widget says when nobody can, and when the visitor may expect a reply (free text).
    time_zone: str = "UTC"
    business_hours: tuple[OpenHours, ...] = ()
    away_message: str = ""
    reply_time: str = ""


def new_widget_id() -> str:
    return secrets.token_urlsafe(WIDGET_ID_BYTES)


def default_site(account_id: str, created: float) -> Site:
    """What every account starts with: one site, the widget in its default look."""
    return Site(
        account_id, DEFAULT_SITE_ID, "Default", "#2563eb", "right", "", None, created,
        widget_id=new_widget_id(),
    )  # fmt: skip


@record
class WidgetToken:
    """A credential of one site's widget; only its SHA-256 hash is stored."""

    account_id: str
    id: int
    site_id: int
    token_hash: str
    created: float


@record
class WidgetEvent:
    """One widget analytics event: reported by a widget (``source`` "widget") or recorded by
    the server ("server"). ``day`` is the UTC day of its arrival (days since 1970-01-01);
    ``occurred`` the widget's own timestamp, when it gave one; ``metadata`` JSON text."""

    account_id: str
    id: int
    site_id: int
    session_id: str
    source: Literal["widget", "server"]
    event: str
    occurred: float | None
    metadata: str
    day: int
    created: float


@record
class Assistant:
    """An account's AI assistant: an OpenAI-compatible Chat Completions endpoint.
    ``credentials`` is the API key sealed with the installation's keys (server/crypto.py)."""

    account_id: str
    id: int
    name: str
    base_url: str
    model: str
    credentials: str
    system_prompt: str
    max_tokens: int
    monthly_token_budget: int
    created: float


@record
class Channel:
    """One of an account's ways in and out. ``key`` names it in its public webhook URLs;
    ``settings`` is public JSON and ``credentials`` a sealed token (server/crypto.py) that
    only a holder of the installation's encryption keys can open. The last four fields are
    its health line."""

    account_id: str
    id: int
    kind: ChannelKind
    name: str
    key: str
    settings: str
    credentials: str
    created: float
    last_inbound: float | None = None
    last_outbound: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None


@record
class Identity:
    """One way of recognising a person, its value already normalised (server/contacts.py)."""

    kind: IdentityKind
    value: str


@record
class ContactIdentity:
    """An identity a contact holds: ``verified`` when a channel proved it (it then belongs to
    no other contact of the account), else somebody typed it."""

    identity: Identity
    verified: bool
    created: float


@record
class Contact:
    """The person behind conversations, per account."""

    account_id: str
    id: int
    name: str
    created: float
    identities: tuple[ContactIdentity, ...] = ()


@record
class UserInfo:
    fname: str = ""
    lname: str = ""
    email: str = ""
    phone: str = ""
    # Free-form notes operators keep about the visitor (seed 001's `info`).
    info: str = ""


@record
class Conversation:
    id: str
    account_id: str
    source_app: SourceApp
    status: Status
    mode: Mode
    operator_id: int | None
    team_id: int | None
    user_info: UserInfo
    created: float
    last_activity: float
    resolved_at: float | None
    # Highest message seq in this conversation; the next message gets last_seq + 1.
    last_seq: int = 0
    # Visitor messages the operators have not read yet.
    unread: int = 0
    # Read cursors: the highest seq each side has been shown by a poll.
    operator_read_seq: int = 0
    visitor_read_seq: int = 0
    site_id: int = DEFAULT_SITE_ID
    # The widget session that opened it (or that a proactive message was sent to).
    session_id: str | None = None
    block_type: BlockType | None = None
    # Live translation: visitor messages into the operator's language, replies into visitor_lang.
    translate: bool = False
    visitor_lang: str = ""
    # The newest message the visitor can see, cut short, for inbox rows.
    preview: str = ""
    # The visitor's satisfaction (1-5) and optional comment, and the resolution they rated
    # (its resolved_at): one rating per resolution, so a reopened and re-resolved conversation
    # may be rated again, replacing the last rating.
    rating: int | None = None
    rating_comment: str = ""
    rated_resolved_at: float | None = None
    # For reports, kept as messages arrive so no report reads messages: when the visitor first
    # wrote, when and by whom the first operator reply after that came, and whether the bot
    # ever answered.
    asked_at: float | None = None
    replied_at: float | None = None
    replied_by: int | None = None
    bot_answered: bool = False
    # Highest visitor seq: the visitor's own numbering of the messages it sees, gapless
    # whatever notes lie between them; the next such message gets visitor_last_seq + 1.
    visitor_last_seq: int = 0
    # The channel it came in on; None for web chat and conversations from before channels.
    channel_id: int | None = None
    # Its contact: the Store's to assign when the change that creates the conversation commits
    # (found or created by the change's identity), moved only by a merge. None on a row a
    # previous release wrote during a rolling update, and on a change not yet committed.
    contact_id: int | None = None
    control: Control = "bot"
    # The bot platform's user whose conversation this is (issue 16), with what the platform
    # handed over, each a JSON object: attributes operators see, hidden ones they never see,
    # and its customData.
    bot_user_id: str | None = None
    attributes: str = "{}"
    hidden_attributes: str = "{}"
    custom_data: str = "{}"
    # When it became a qualified lead (issue 17): the widget's visitor gave an email or phone,
    # or an operator marked it; None until then.
    qualified_at: float | None = None
    # Where the widget's visitor is (issue 18, server/visitor_context.py): a JSON object.
    visitor_context: str = "{}"
    # The operators' read cursor as the visitor numbers messages: the highest visitor seq the
    # operators have been shown (issue 18's "Seen" on the visitor's side).
    operator_read_visitor_seq: int = 0
    # The resolution (its resolved_at) whose rating question went out as an SMS or email
    # (issue 19): the customer's lone digit answers it until it is rated or reopened.
    rating_asked_resolved_at: float | None = None


@record
class Attachment:
    """A file a customer's mail carried (issue 15). ``url`` is where the stored copy is served;
    None when it was not kept (over the size limit)."""

    name: str
    content_type: str
    size: int
    url: str | None


@record
class Message:
    id: str
    convo_id: str
    seq: int
    sender: Sender
    operator_id: int | None
    operator_name: str | None
    text: str
    created: float
    client_msg_id: str | None
    # None for conversations delivered to a live web session; a status for SMS/email.
    delivery: Delivery | None = None
    # A note: operators only, on every surface.
    private: bool = False
    image_url: str | None = None
    # With live translation: the text in the other side's language; `text` stays the original.
    translation: str | None = None
    translation_lang: str | None = None
    # The seq the visitor's surfaces show (see Conversation.visitor_last_seq); None on notes.
    visitor_seq: int | None = None
    # An assistant's reply: which assistant, the model that wrote it and the tokens it cost.
    assistant_id: int | None = None
    model: str | None = None
    tokens: int | None = None
    # An email's attachments, for operators.
    attachments: tuple[Attachment, ...] = ()


@record
class NewEvent:
    """An event the engine announces with a change: its kind, the message it is about, and its
    payloads exactly as each audience receives them (JSON text, opaque to the Store). The kinds
    and their audiences are the engine's (server/event_catalogue.py)."""

    kind: str
    msg_seq: int | None
    # What the account's operators receive.
    data: str
    # What the conversation's visitor receives; None when the visitor does not see it.
    visitor_data: str | None = None


@record
class Event:
    """A committed account event, numbered by the Store. ``data`` and ``visitor_data`` are the
    payloads it was sent with; both are None on events written before migration 0006."""

    account_id: str
    seq: int
    kind: str
    convo_id: str
    msg_seq: int | None
    created: float
    data: str | None = None
    visitor_data: str | None = None


@record
class EventDetail:
    """An account event with what it refers to, as they are now (for replays)."""

    event: Event
    conversation: Conversation
    message: Message | None


@record
class MessageReplay:
    """A message the visitor can see, with the payload its event was sent with (None for
    messages written before migration 0006)."""

    message: Message
    data: str | None


@record
class Change:
    """What one engine decision does to one conversation, applied atomically by the Store.

    ``messages`` carry their final seq (assigned by the engine from the locked row), so the
    Store only has to write them; ``after.last_seq`` must equal the last message's seq, and
    ``after.visitor_last_seq`` the last visitor seq.
    ``events`` are appended in order, numbered by the Store in the same transaction.
    ``payloads`` are what a bot platform is sent for queued messages, by message seq (JSON
    text, opaque to the Store, kept on the outbound row).
    """

    before: Conversation | None
    after: Conversation
    messages: tuple[Message, ...] = field(default=())
    events: tuple[NewEvent, ...] = field(default=())
    # For a change that creates the conversation: the identity its channel proves. The Store
    # finds its contact, or creates one, in the same transaction (a fresh contact when None).
    identity: Identity | None = None
    # Identities somebody typed (userInfo), recorded unverified on the conversation's contact.
    typed: tuple[Identity, ...] = field(default=())
    # The contact's name when it has none yet ("" leaves it as it is).
    contact_name: str = ""
    payloads: tuple[tuple[int, str], ...] = field(default=())
    # The events webhooks may hear (storage/webhooks.py), queued for them with the change.
    hooks: tuple[HookEvent, ...] = field(default=())


@record
class Committed:
    """The outcome of Store.write: the conversation as committed, plus what was appended."""

    conversation: Conversation
    messages: tuple[Message, ...] = ()
    events: tuple[Event, ...] = ()
    # True when a message with the same client id already existed: nothing was written and
    # ``messages`` holds the original.
    duplicate: bool = False
    # The conversation before the change (None when the change created it, or wrote nothing).
    before: Conversation | None = None


# What became of a mail a channel received (issue 15): a customer's message, or why it is
# not one. Sent mail is "sent".
EmailOutcome = Literal["message", "automatic", "bounce", "own", "refused", "sent"]


@record
class EmailThread:
    """An email conversation's threading: ``token`` is the local part suffix of the
    ``reply+TOKEN@`` address our replies carry, ``tag`` goes in their subjects, ``customer``
    is the contact's normalised address."""

    convo_id: str
    account_id: str
    channel_id: int
    token: str
    tag: str
    customer: str
    subject: str
    created: float


@record
class EmailRecord:
    """One mail a channel received or sent, by ``source_key`` (the source's identity for it).
    ``original`` is the raw message in base64; ``html`` its sanitised HTML, if it had any."""

    account_id: str
    channel_id: int
    source_key: str
    direction: Literal["in", "out"]
    message_id: str | None
    outcome: EmailOutcome
    reason: str | None
    sender: str
    convo_id: str | None
    msg_id: str | None
    original: str | None
    html: str | None
    created: float


@record
class ImapCursor:
    """How far an IMAP mailbox is imported: its UIDVALIDITY (None before the first
    connection) and the highest UID taken in."""

    uidvalidity: int | None
    last_uid: int


@record
class SmsMedia:
    """One picture of an inbound MMS (``MediaUrl{n}`` of message ``seq``), to fetch from the
    provider with the channel's credentials. ``attempts`` counts claims (the fencing token of
    Store.finish_sms_media); ``image_url`` is where it is served once stored."""

    convo_id: str
    seq: int
    n: int
    account_id: str
    channel_id: int
    url: str
    content_type: str
    state: MediaState
    attempts: int
    claimed_by: str | None
    lease_until: float | None
    next_attempt_at: float
    last_error: str | None
    image_url: str | None
    created: float
