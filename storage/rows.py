"""Records to rows and back, by column name, for every SQL backend.

The column lists are the ones in ``storage.base.TABLES``: statements select and insert exactly
those, and records are read by name, so a column added to a table and to TABLES is exported,
imported and written without a list to keep in step elsewhere (the contract suite checks the
migrated schema against TABLES).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from operator import itemgetter
from typing import Any, Protocol

from storage.base import TABLES_BY_NAME, Table
from storage.models import (
    Assistant,
    Attachment,
    CannedResponse,
    Channel,
    Contact,
    ContactIdentity,
    Conversation,
    EmailRecord,
    EmailThread,
    Event,
    Identity,
    Invite,
    Message,
    OpenHours,
    Operator,
    Site,
    SmsMedia,
    UserInfo,
    WidgetToken,
)


class Row(Protocol):
    """A fetched row: an asyncpg Record or the dict the SQLite driver makes of a row."""

    def __getitem__(self, name: str, /) -> Any: ...

    def values(self) -> Iterable[Any]:
        """The row's values in the order of the statement's columns."""


ACCOUNTS = TABLES_BY_NAME["accounts"]
API_KEYS = TABLES_BY_NAME["api_keys"]
OPERATORS = TABLES_BY_NAME["operators"]
TEAMS = TABLES_BY_NAME["teams"]
TEAM_MEMBERS = TABLES_BY_NAME["team_members"]
PUSH_TOKENS = TABLES_BY_NAME["push_tokens"]
CANNED = TABLES_BY_NAME["canned"]
SITES = TABLES_BY_NAME["sites"]
CHANNELS = TABLES_BY_NAME["channels"]
CONTACTS = TABLES_BY_NAME["contacts"]
CONTACT_IDENTITIES = TABLES_BY_NAME["contact_identities"]
CONTACT_MERGES = TABLES_BY_NAME["contact_merges"]
SMS_OPT_OUTS = TABLES_BY_NAME["sms_opt_outs"]
SMS_MEDIA = TABLES_BY_NAME["sms_media"]
WIDGET_TOKENS = TABLES_BY_NAME["widget_tokens"]
WIDGET_EVENTS = TABLES_BY_NAME["widget_events"]
ASSISTANTS = TABLES_BY_NAME["assistants"]
CONVERSATIONS = TABLES_BY_NAME["conversations"]
MESSAGES = TABLES_BY_NAME["messages"]
EVENTS = TABLES_BY_NAME["events"]
OUTBOUND = TABLES_BY_NAME["outbound"]
EMAIL_THREADS = TABLES_BY_NAME["email_threads"]
EMAILS = TABLES_BY_NAME["emails"]
INVITES = TABLES_BY_NAME["invites"]


def select_list(table: Table, alias: str = "") -> str:
    """The table's columns for a SELECT; with ``alias``, qualified and renamed
    ``alias_column``, so a join's rows keep each table's columns apart by name."""
    if not alias:
        return ", ".join(table.column_names)
    return ", ".join(f"{alias}.{name} AS {alias}_{name}" for name in table.column_names)


def insert_sql(table: Table) -> str:
    """An INSERT of every column, values in column order (see ``values``)."""
    marks = ", ".join(f"${i}" for i in range(1, len(table.columns) + 1))
    return f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})"


def values(table: Table, row: Mapping[str, Any]) -> tuple[Any, ...]:
    """``row``'s values in the table's column order; a KeyError names a column that a
    record-to-row mapping below has not learnt yet."""
    picked = _IN_ORDER[table.name](row)
    # itemgetter of one name returns the value itself, of several a tuple.
    return picked if len(table.columns) > 1 else (picked,)


# Each table's columns picked in one C call: every row a write stores is laid out by them.
_IN_ORDER = {name: itemgetter(*t.column_names) for name, t in TABLES_BY_NAME.items()}


def convo_row(c: Conversation) -> dict[str, Any]:
    u = c.user_info
    return {
        "id": c.id, "account_id": c.account_id, "source_app": c.source_app, "status": c.status,
        "mode": c.mode, "operator_id": c.operator_id, "team_id": c.team_id, "fname": u.fname,
        "lname": u.lname, "email": u.email, "phone": u.phone, "created": c.created,
        "last_activity": c.last_activity, "resolved_at": c.resolved_at, "last_seq": c.last_seq,
        "unread": c.unread, "operator_read_seq": c.operator_read_seq,
        "visitor_read_seq": c.visitor_read_seq, "site_id": c.site_id,
        "session_id": c.session_id, "block_type": c.block_type, "translate": c.translate,
        "visitor_lang": c.visitor_lang, "info": u.info, "preview": c.preview,
        "rating": c.rating, "rating_comment": c.rating_comment,
        "rated_resolved_at": c.rated_resolved_at, "asked_at": c.asked_at,
        "replied_at": c.replied_at, "replied_by": c.replied_by, "bot_answered": c.bot_answered,
        "visitor_last_seq": c.visitor_last_seq,
        "channel_id": c.channel_id, "contact_id": c.contact_id, "control": c.control,
        "bot_user_id": c.bot_user_id, "attributes": c.attributes,
        "hidden_attributes": c.hidden_attributes, "custom_data": c.custom_data,
        "qualified_at": c.qualified_at, "visitor_context": c.visitor_context,
        "operator_read_visitor_seq": c.operator_read_visitor_seq,
        "rating_asked_resolved_at": c.rating_asked_resolved_at,
    }  # fmt: skip


# The prefixes select_list's aliases give a table's columns in a join (see storage/sql.py).
PREFIXES = ("", "e_", "c_", "m_")


def _getters(columns: Sequence[str]) -> dict[str, Callable[[Row], tuple[Any, ...]]]:
    """For each prefix, what reads ``columns`` (so named) from a row, in that order, in one
    call: a listing maps thousands of rows, and this is the cheapest read by name."""
    return {p: itemgetter(*(p + c for c in columns)) for p in PREFIXES}


_CONVO_COLUMNS = (
    "id", "account_id", "source_app", "status", "mode", "operator_id", "team_id", "fname",
    "lname", "email", "phone", "info", "created", "last_activity", "resolved_at", "last_seq",
    "unread", "operator_read_seq", "visitor_read_seq", "site_id", "session_id", "block_type",
    "translate", "visitor_lang", "preview", "rating", "rating_comment", "rated_resolved_at",
    "asked_at", "replied_at", "replied_by", "bot_answered", "visitor_last_seq", "channel_id",
    "contact_id",
    "control", "bot_user_id", "attributes", "hidden_attributes", "custom_data",
    "qualified_at", "visitor_context", "operator_read_visitor_seq", "rating_asked_resolved_at",
)  # fmt: skip
_CONVO_GETTERS = _getters(_CONVO_COLUMNS)


def convo(r: Row, p: str = "") -> Conversation:
    """The conversation in ``r``, its columns named with prefix ``p`` (see select_list)."""
    (id_, account_id, source_app, status, mode, operator_id, team_id, fname, lname, email, phone,
     info, created, last_activity, resolved_at, last_seq, unread, operator_read_seq,
     visitor_read_seq, site_id, session_id, block_type, translate, visitor_lang, preview,
     rating, rating_comment, rated_resolved_at, asked_at, replied_at, replied_by,
     bot_answered, visitor_last_seq, channel_id, contact_id, control, bot_user_id, attributes,
     hidden_attributes, custom_data, qualified_at,
     visitor_context, operator_read_visitor_seq,
     rating_asked_resolved_at) = _CONVO_GETTERS[p](r)  # fmt: skip
    return Conversation(
        id_, account_id, source_app, status, mode, operator_id, team_id,
        UserInfo(fname, lname, email, phone, info), created, last_activity, resolved_at,
        last_seq, unread, operator_read_seq, visitor_read_seq, site_id, session_id, block_type,
        # SQLite has no boolean type: flags come back as 0 or 1.
        bool(translate), visitor_lang, preview, rating, rating_comment, rated_resolved_at,
        asked_at, replied_at, replied_by, bool(bot_answered), visitor_last_seq, channel_id,
        contact_id,
        control, bot_user_id, attributes, hidden_attributes, custom_data, qualified_at,
        visitor_context, operator_read_visitor_seq, rating_asked_resolved_at,
    )  # fmt: skip


def message_row(account_id: str, m: Message) -> dict[str, Any]:
    return {
        "convo_id": m.convo_id, "seq": m.seq, "id": m.id, "account_id": account_id,
        "sender": m.sender, "operator_id": m.operator_id, "operator_name": m.operator_name,
        "text": m.text, "created": m.created, "client_msg_id": m.client_msg_id,
        "delivery": m.delivery, "private": m.private, "image_url": m.image_url,
        "translation": m.translation, "translation_lang": m.translation_lang,
        "visitor_seq": m.visitor_seq,
        # Learnt when the provider accepts the message (Store.finish_outbound).
        "provider_id": None,
        "assistant_id": m.assistant_id, "model": m.model, "tokens": m.tokens,
        "attachments": attachments_column(m.attachments),
    }  # fmt: skip


def attachments_column(attachments: tuple[Attachment, ...]) -> str | None:
    # Most messages have none: NULL, not "[]", so the column costs them nothing.
    return json.dumps([dataclasses.asdict(a) for a in attachments]) if attachments else None


# A message's columns are named as its fields.
_MESSAGE_GETTERS = _getters([f.name for f in dataclasses.fields(Message)])


def message(r: Row, p: str = "") -> Message:
    (id_, convo_id, seq, sender, operator_id, operator_name, text, created, client_msg_id,
     delivery, private, image_url, translation, translation_lang,
     visitor_seq, assistant_id, model, tokens, attachments) = _MESSAGE_GETTERS[p](r)  # fmt: skip
    return Message(
        id_, convo_id, seq, sender, operator_id, operator_name, text, created, client_msg_id,
        delivery, bool(private), image_url, translation, translation_lang, visitor_seq,
        assistant_id, model, tokens,
        tuple(Attachment(**a) for a in json.loads(attachments)) if attachments else (),
    )  # fmt: skip


def event_row(e: Event) -> dict[str, Any]:
    return {
        "account_id": e.account_id, "seq": e.seq, "kind": e.kind, "convo_id": e.convo_id,
        "msg_seq": e.msg_seq, "created": e.created, "data": e.data,
        "visitor_data": e.visitor_data,
    }  # fmt: skip


# An event's columns are named as its fields.
_EVENT_GETTERS = _getters([f.name for f in dataclasses.fields(Event)])


def event(r: Row, p: str = "") -> Event:
    return Event(*_EVENT_GETTERS[p](r))


def operator(r: Row) -> Operator:
    return Operator(
        account_id=r["account_id"], id=r["id"], name=r["name"], email=r["email"],
        is_admin=bool(r["is_admin"]), created=r["created"], lang=r["lang"],
        avatar_url=r["avatar_url"],
        active=bool(r["active"]),
    )  # fmt: skip


def site(r: Row) -> Site:
    return Site(
        account_id=r["account_id"], id=r["id"], name=r["name"], color=r["color"],
        position=r["position"], greeting=r["greeting"], team_id=r["team_id"],
        created=r["created"], ask_rating=bool(r["ask_rating"]), widget_id=r["widget_id"],
        logo_url=r["logo_url"], assistant_id=r["assistant_id"],
        allowed_origins=tuple(json.loads(r["allowed_origins"])),
        voice_number=r["voice_number"], time_zone=r["time_zone"],
        business_hours=tuple(OpenHours(*h) for h in json.loads(r["business_hours"])),
        away_message=r["away_message"], reply_time=r["reply_time"],
    )  # fmt: skip


def site_row(s: Site) -> dict[str, Any]:
    """The origins are one JSON list in their column, the business hours another."""
    return {
        **dataclasses.asdict(s),
        "allowed_origins": json.dumps(list(s.allowed_origins)),
        "business_hours": hours_json(s.business_hours),
    }


def hours_json(hours: Sequence[OpenHours]) -> str:
    return json.dumps([[h.weekday, h.open, h.close] for h in hours])


def invite(r: Row) -> Invite:
    return Invite(
        account_id=r["account_id"], id=r["id"], email=r["email"], name=r["name"],
        is_admin=bool(r["is_admin"]), team_ids=tuple(json.loads(r["team_ids"])),
        invited_by=r["invited_by"], created=r["created"], expires=r["expires"],
        used_at=r["used_at"], operator_id=r["operator_id"],
    )  # fmt: skip


def invite_row(i: Invite, token_hash: str) -> dict[str, Any]:
    """The token's hash is a column of the row only: the record never carries it."""
    return {**dataclasses.asdict(i), "team_ids": json.dumps(list(i.team_ids)),
            "token_hash": token_hash}  # fmt: skip


def widget_token(r: Row) -> WidgetToken:
    return WidgetToken(*(r[f.name] for f in dataclasses.fields(WidgetToken)))


def assistant(r: Row) -> Assistant:
    return Assistant(*(r[f.name] for f in dataclasses.fields(Assistant)))


def canned(r: Row) -> CannedResponse:
    return CannedResponse(
        account_id=r["account_id"], id=r["id"], name=r["name"], tag=r["tag"],
        message=r["message"], owner=r["operator_id"],
    )  # fmt: skip


def canned_row(c: CannedResponse) -> dict[str, Any]:
    """The owner is the ``operator_id`` column."""
    return {
        "account_id": c.account_id, "id": c.id, "name": c.name, "tag": c.tag,
        "message": c.message, "operator_id": c.owner,
    }  # fmt: skip


# A channel's columns are named as its fields.
def channel(r: Row) -> Channel:
    return Channel(*(r[f.name] for f in dataclasses.fields(Channel)))


# Email threads and mails have columns named as their fields.
def email_thread(r: Row) -> EmailThread:
    return EmailThread(*(r[f.name] for f in dataclasses.fields(EmailThread)))


def email_record(r: Row) -> EmailRecord:
    return EmailRecord(*(r[f.name] for f in dataclasses.fields(EmailRecord)))


def contact_identity(r: Row) -> ContactIdentity:
    return ContactIdentity(Identity(r["kind"], r["value"]), bool(r["verified"]), r["created"])


def contact(r: Row, identities: Iterable[ContactIdentity] = ()) -> Contact:
    return Contact(r["account_id"], r["id"], r["name"], r["created"], tuple(identities))


def sms_media(r: Row) -> SmsMedia:
    return SmsMedia(*(r[f.name] for f in dataclasses.fields(SmsMedia)))
