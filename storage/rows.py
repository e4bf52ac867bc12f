"""What every SQL backend shares: column lists in table order and the mapping of a row (by
position) to a record. Only the statements differ between dialects (placeholders)."""

from __future__ import annotations

from typing import Any, Protocol

from storage.models import Conversation, Event, Message, Operator, Site, UserInfo


class Row(Protocol):
    """A fetched row or a slice of one: sqlite3 tuples and asyncpg Records alike."""

    def __getitem__(self, index: int, /) -> Any: ...


CONVO_COLS = (
    "id, account_id, source_app, status, mode, operator_id, team_id, fname, lname, email, phone,"
    " created, last_activity, resolved_at, last_seq, unread, operator_read_seq, visitor_read_seq,"
    " site_id, session_id, block_type, translate, visitor_lang, info, preview, rating,"
    " rating_comment, rated_resolved_at, asked_at, replied_at, replied_by, bot_answered"
)
CONVO_WIDTH = len(CONVO_COLS.split(","))
# What an update assigns: every column but the keys (id, account_id), which stay out of the SET
# list. Assigning a primary key, even to itself, makes SQLite re-check every message that
# references it, and PostgreSQL take a stronger lock than FOR NO KEY UPDATE did.
CONVO_SET_COLS = ", ".join(c.strip() for c in CONVO_COLS.split(",")[2:])
MSG_COLS = (
    "id, convo_id, seq, sender, operator_id, operator_name, text, created, client_msg_id, delivery,"
    " private, image_url, translation, translation_lang"
)
MSG_WIDTH = len(MSG_COLS.split(","))
EVENT_COLS = "account_id, seq, kind, convo_id, msg_seq, created"
OPERATOR_COLS = "account_id, id, name, email, is_admin, created, lang"
SITE_COLS = "account_id, id, name, color, position, greeting, team_id, created, ask_rating"


def prefixed(columns: str, alias: str) -> str:
    return ", ".join(f"{alias}.{c.strip()}" for c in columns.split(","))


def convo(row: Row) -> Conversation:
    return Conversation(
        id=row[0],
        account_id=row[1],
        source_app=row[2],
        status=row[3],
        mode=row[4],
        operator_id=row[5],
        team_id=row[6],
        user_info=UserInfo(fname=row[7], lname=row[8], email=row[9], phone=row[10], info=row[23]),
        created=row[11],
        last_activity=row[12],
        resolved_at=row[13],
        last_seq=row[14],
        unread=row[15],
        operator_read_seq=row[16],
        visitor_read_seq=row[17],
        site_id=row[18],
        session_id=row[19],
        block_type=row[20],
        translate=bool(row[21]),
        visitor_lang=row[22],
        preview=row[24],
        rating=row[25],
        rating_comment=row[26],
        rated_resolved_at=row[27],
        asked_at=row[28],
        replied_at=row[29],
        replied_by=row[30],
        bot_answered=bool(row[31]),
    )


def convo_params(c: Conversation) -> tuple[Any, ...]:
    u = c.user_info
    return (
        c.id, c.account_id, c.source_app, c.status, c.mode, c.operator_id, c.team_id,
        u.fname, u.lname, u.email, u.phone, c.created, c.last_activity, c.resolved_at,
        c.last_seq, c.unread, c.operator_read_seq, c.visitor_read_seq, c.site_id, c.session_id,
        c.block_type, c.translate, c.visitor_lang, u.info, c.preview, c.rating,
        c.rating_comment, c.rated_resolved_at, c.asked_at, c.replied_at, c.replied_by,
        c.bot_answered,
    )  # fmt: skip


def message_params(m: Message) -> tuple[Any, ...]:
    return (
        m.id, m.convo_id, m.seq, m.sender, m.operator_id, m.operator_name, m.text, m.created,
        m.client_msg_id, m.delivery, m.private, m.image_url, m.translation, m.translation_lang,
    )  # fmt: skip


def message(row: Row) -> Message:
    return Message(
        id=row[0],
        convo_id=row[1],
        seq=row[2],
        sender=row[3],
        operator_id=row[4],
        operator_name=row[5],
        text=row[6],
        created=row[7],
        client_msg_id=row[8],
        delivery=row[9],
        private=bool(row[10]),
        image_url=row[11],
        translation=row[12],
        translation_lang=row[13],
    )


def event(row: Row) -> Event:
    return Event(
        account_id=row[0], seq=row[1], kind=row[2], convo_id=row[3], msg_seq=row[4],
        created=row[5],
    )  # fmt: skip


def operator(row: Row) -> Operator:
    # SQLite stores the flag as 0/1.
    return Operator(
        account_id=row[0], id=row[1], name=row[2], email=row[3], is_admin=bool(row[4]),
        created=row[5], lang=row[6],
    )  # fmt: skip


def site(row: Row) -> Site:
    return Site(
        account_id=row[0], id=row[1], name=row[2], color=row[3], position=row[4],
        greeting=row[5], team_id=row[6], created=row[7], ask_rating=bool(row[8]),
    )  # fmt: skip
