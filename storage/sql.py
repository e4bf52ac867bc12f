"""The Store's logic for every SQL database, written once; backends are drivers.

Every operation is an ``async`` function of a ``Conn`` (fetch, fetchrow, execute, executemany)
that the backend runs where it must: PostgreSQL awaits it in a transaction on a pooled
connection (storage/postgres.py), SQLite runs it to completion inside its writer thread's group
commit or on a reader thread, where its connection never suspends (storage/sqlite.py).

Statements are written once, with PostgreSQL's numbered placeholders (``$1``); the SQLite driver
renumbers them (``?1``). What else differs between the databases is in a ``Dialect``: the
case-insensitive LIKE, the row-locking clauses, which exceptions mean a constraint refused a row,
and what an import does first. Columns come from ``storage.base.TABLES`` through storage/rows.py,
and rows are read by column name.
"""

from __future__ import annotations

import abc
import contextlib
import functools
import itertools
import operator
import time
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Iterable,
    Mapping,
    Sequence,
)
from dataclasses import asdict, dataclass, replace
from typing import Any, Literal, Protocol, TypeVar

from storage import contacts_sql as _contacts
from storage import invites_sql as _invites
from storage import outbound as _outbound
from storage import rows
from storage import webhooks_sql as _webhooks
from storage.base import (
    NO_ASSISTANT,
    NO_TEAM,
    SEQ_END,
    TABLES,
    TRANSFER_BATCH_ROWS,
    AssistantPatch,
    CannedPatch,
    ChannelPatch,
    Decide,
    DuplicateEmail,
    DuplicateKey,
    HandoverFigures,
    InboxQuery,
    InvalidRow,
    OperatorPatch,
    RatingFigures,
    ReportQuery,
    ResponseFigures,
    RosterDecide,
    SitePatch,
    StoreNotEmpty,
    Table,
    TeamPatch,
    UnknownReference,
    VolumeFigures,
    patch_values,
    row_values,
)
from storage.inbox_sql import InboxSql, escape_like
from storage.models import (
    DEFAULT_SITE_ID,
    Account,
    Assistant,
    Attachment,
    CannedResponse,
    Channel,
    ChannelKind,
    Committed,
    Contact,
    Conversation,
    Delivery,
    EmailRecord,
    EmailThread,
    Event,
    EventDetail,
    ImapCursor,
    MediaState,
    Message,
    MessageReplay,
    NewEvent,
    Operator,
    OperatorCredentials,
    Roster,
    Site,
    SmsMedia,
    Status,
    Team,
    WidgetEvent,
    WidgetPosition,
    WidgetToken,
    default_site,
    evolve,
    new_widget_id,
)
from storage.outbound import Claim, OutboundChannel, OutboundJob
from storage.reports_sql import Report, ReportsSql
from storage.rows import Row

T = TypeVar("T")
R = TypeVar("R")


class Conn(Protocol):
    """What an operation may do with its connection (asyncpg's names and signatures)."""

    async def fetch(self, query: str, *args: Any) -> Sequence[Row]: ...

    async def fetchrow(self, query: str, *args: Any) -> Row | None: ...

    async def execute(self, query: str, *args: Any) -> object: ...

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> object: ...


# One operation of the Store: everything it reads and writes goes through the Conn it is given.
Op = Callable[[Conn], Coroutine[Any, Any, T]]


@dataclass(frozen=True, slots=True)
class Dialect:
    """What the shared statements and operations need to know of one database."""

    # The case-insensitive LIKE operator.
    ilike: str
    # Raised by the driver when a unique index, a foreign key, or any constraint refuses a row.
    unique_violation: type[Exception]
    foreign_key_violation: type[Exception]
    integrity_violation: type[Exception]
    # Ends the SELECT of the conversation a write decides on: the next writer of that
    # conversation waits for this commit. Empty where one writer commits at a time.
    lock_for_update: str = ""
    # Ends the lookup of the team a site is about to route to, so the team cannot be deleted
    # before the site commits (and of a contact a new conversation joins, so a merge cannot
    # absorb it first). Empty where one writer commits at a time.
    lock_key_share: str = ""
    # Ends the lookup of rows about to be deleted: waits for every lock another writer holds
    # on them, KEY SHARE included. Empty where one writer commits at a time.
    lock_exclusive: str = ""
    # Run first in an import's transaction.
    import_prelude: tuple[str, ...] = ()
    # Rounds a non-negative real expression ``{}`` down to a whole number.
    round_down: str = "floor({})"
    # Ends the SELECT of rows a worker is about to claim: rows another transaction is
    # claiming are passed over. Empty where one writer commits at a time.
    lock_skip_locked: str = ""
    # Run first in a report's read transaction.
    report_prelude: tuple[str, ...] = ()
    # Whether one statement may hold several writes (data-modifying WITH clauses, rows passed
    # as one array per column): a write then sends its last statements in one round trip.
    # Where the database runs in process, a statement costs no round trip.
    chains_writes: bool = False


_SELECT_CONVO = (
    f"SELECT {rows.select_list(rows.CONVERSATIONS)} FROM conversations"
    " WHERE id = $1 AND account_id = $2"
)
# What an update assigns: every column but the keys, which stay out of the SET list. Assigning
# a primary key, even to itself, makes SQLite re-check every message that references it, and
# PostgreSQL take a stronger lock than FOR NO KEY UPDATE did. The contact is the Store's own:
# set when the conversation is created, moved only by a merge.
_CONVO_SET = tuple(
    n for n in rows.CONVERSATIONS.column_names if n not in ("id", "account_id", "contact_id")
)
_CONVO_SET_VALUES = operator.itemgetter(*_CONVO_SET)

# Statement texts kept for conversation updates, one per set of columns a write changed (and
# as many chained with the events' numbering on PostgreSQL): the engine's writes make a few
# dozen sets; the bound keeps an unforeseen variety from growing the caches.
UPDATE_SHAPES = 256


@functools.lru_cache(maxsize=UPDATE_SHAPES)
def _update_convo(columns: tuple[str, ...]) -> str:
    """The update of a conversation's ``columns`` (those a write changed). Only those: SQLite
    rewrites the entry of every index over a column the SET list names, changed or not, and
    the conversations table has nine besides its key; a message changes three to six of its
    forty-odd columns. (PostgreSQL compares values itself and gains only the parameters it is
    not sent.) The engine's writes make few combinations: each statement's text is made once."""
    assignments = ", ".join(f"{c} = ${i}" for i, c in enumerate(columns, start=3))
    return f"UPDATE conversations SET {assignments} WHERE id = $1 AND account_id = $2"


def _select_messages(visitor_view: bool, newest: bool, visitor_seqs: bool) -> str:
    # Notes are for operators: the limit counts only what the visitor may see. Notes have no
    # visitor seq, so a window by visitor seq leaves them out already.
    hidden = " AND NOT private" if visitor_view and not visitor_seqs else ""
    seq = "visitor_seq" if visitor_seqs else "seq"
    return (
        f"SELECT {rows.select_list(rows.MESSAGES)} FROM messages WHERE account_id = $1"
        f" AND convo_id = $2 AND {seq} > $3 AND {seq} < $4 AND created > $5{hidden}"
        f" ORDER BY {seq} {'DESC' if newest else 'ASC'} LIMIT $6"
    )


# By (visitor_view, newest, visitor_seqs): statements are built once, so the drivers' caches
# find them at once.
_SELECT_MESSAGES = {
    (v, n, s): _select_messages(v, n, s) for v in (False, True) for n in (False, True)
    for s in (False, True)
}  # fmt: skip
# One row of an account's table with ids, and all of them by id, by table name.
_NUMBERED = [t for t in TABLES if t.key == ("account_id", "id")]
_SELECT_BY_ID = {
    t.name: f"SELECT {rows.select_list(t)} FROM {t.name} WHERE account_id = $1 AND id = $2"
    for t in _NUMBERED
}
_SELECT_ALL_BY_ID = {
    t.name: f"SELECT {rows.select_list(t)} FROM {t.name} WHERE account_id = $1 ORDER BY id"
    for t in _NUMBERED
}
_SELECT_CHANNEL_BY_KEY = f"SELECT {rows.select_list(rows.CHANNELS)} FROM channels WHERE key = $1"
_LATEST_CHANNEL_CONVO = (
    f"SELECT {rows.select_list(rows.CONVERSATIONS)} FROM conversations"
    " WHERE account_id = $1 AND channel_id = $2 AND phone = $3"
    " ORDER BY created DESC, id DESC LIMIT 1"
)
_BOT_USER_CONVO = (
    f"SELECT {rows.select_list(rows.CONVERSATIONS)} FROM conversations"
    " WHERE account_id = $1 AND channel_id = $2 AND bot_user_id = $3"
    " ORDER BY created DESC, id DESC LIMIT 1"
)
# A message the channel sent, by the provider's id for it.
_CHANNEL_MESSAGE = (
    "SELECT m.convo_id, m.seq, m.delivery FROM messages m JOIN conversations c"
    " ON c.id = m.convo_id WHERE m.account_id = $1 AND c.channel_id = $2"
    " AND m.provider_id = $3"
)
# RETURNING names a row only when the statement changed one: the caller learns whether the
# phone's opt-out changed (and so whether to tell the operators).
_ADD_OPT_OUT = rows.insert_sql(rows.SMS_OPT_OUTS) + " ON CONFLICT DO NOTHING RETURNING phone"
_CLEAR_OPT_OUT = (
    "DELETE FROM sms_opt_outs WHERE account_id = $1 AND channel_id = $2 AND phone = $3"
    " RETURNING phone"
)
_ADD_SMS_MEDIA = rows.insert_sql(rows.SMS_MEDIA) + " ON CONFLICT DO NOTHING"
_DUE_SMS_MEDIA = (
    f"SELECT {rows.select_list(rows.SMS_MEDIA)} FROM sms_media WHERE state = 'queued'"
    " AND next_attempt_at <= $1 AND (lease_until IS NULL OR lease_until <= $1)"
    " ORDER BY next_attempt_at, convo_id, seq, n LIMIT $2"
)
_CLAIM_SMS_MEDIA = (
    "UPDATE sms_media SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
    " WHERE convo_id = $3 AND seq = $4 AND n = $5"
)
# The WHERE refuses a worker whose claim lapsed and was taken again (attempts is the fence).
_FINISH_SMS_MEDIA = (
    "UPDATE sms_media SET state = $1, last_error = $2,"
    " next_attempt_at = coalesce($3, next_attempt_at), image_url = $4, claimed_by = NULL,"
    " lease_until = NULL WHERE convo_id = $5 AND seq = $6 AND n = $7 AND claimed_by = $8"
    " AND attempts = $9 AND state = 'queued' RETURNING n"
)
# A stored MMS picture's message, read under the dialect's row lock so that two of its
# pictures finishing at once add one after the other and neither is lost.
_MESSAGE_PICTURES = (
    f"SELECT {rows.select_list(rows.MESSAGES)} FROM messages"
    " WHERE account_id = $1 AND convo_id = $2 AND seq = $3"
)
_SET_MESSAGE_PICTURES = (
    "UPDATE messages SET image_url = $1, attachments = $2"
    " WHERE account_id = $3 AND convo_id = $4 AND seq = $5"
)
_SELECT_OPERATORS = f"SELECT {rows.select_list(rows.OPERATORS)} FROM operators"
# An email's operators, as logins find them: lower() on both sides matches the unique index
# on (lower(email), account_id) (migration 0010), so the lookup uses it.
_SELECT_LOGINS = f"{_SELECT_OPERATORS} WHERE lower(email) = lower($1) ORDER BY account_id LIMIT $2"
_SELECT_LOGIN = f"{_SELECT_OPERATORS} WHERE lower(email) = lower($1) AND account_id = $2"
_SELECT_EVENTS = (
    f"SELECT {rows.select_list(rows.EVENTS)} FROM events WHERE account_id = $1 AND seq > $2"
    " ORDER BY seq LIMIT $3"
)
# By the events_message index's (account_id, convo_id) prefix: one conversation's events.
_EVENT_PAYLOADS = (
    "SELECT data FROM events WHERE account_id = $1 AND convo_id = $2 AND kind = $3"
    " AND data LIKE $4 ESCAPE '\\' ORDER BY seq DESC LIMIT $5"
)
_REPLAY = (
    f"SELECT {rows.select_list(rows.EVENTS, 'e')}, {rows.select_list(rows.CONVERSATIONS, 'c')},"
    f" {rows.select_list(rows.MESSAGES, 'm')}"
    " FROM events e JOIN conversations c ON c.id = e.convo_id AND c.account_id = e.account_id"
    " LEFT JOIN messages m ON m.convo_id = e.convo_id AND m.seq = e.msg_seq"
    " WHERE e.account_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3"
)

# The visitor's replay of a conversation, by visitor seq: each message it may see (notes have
# none) with the payload its event was committed with (one event per message, see migration
# 0006; NULL on older rows).
_REPLAY_MESSAGES = (
    f"SELECT {rows.select_list(rows.MESSAGES, 'm')}, e.visitor_data AS e_visitor_data"
    " FROM messages m LEFT JOIN events e"
    " ON e.account_id = m.account_id AND e.convo_id = m.convo_id AND e.msg_seq = m.seq"
    " WHERE m.account_id = $1 AND m.convo_id = $2 AND m.visitor_seq > $3"
    " ORDER BY m.visitor_seq LIMIT $4"
)

_SELECT_BY_CLIENT_ID = (
    f"SELECT {rows.select_list(rows.MESSAGES)} FROM messages"
    " WHERE account_id = $1 AND client_msg_id = $2"
)
# Served by the partial index on queued rows (outbound_due).
_QUEUED_OUTBOUND = (
    "SELECT channel, count(*) AS queued FROM outbound WHERE state = 'queued' GROUP BY channel"
)
_INSERT_EVENT = rows.insert_sql(rows.EVENTS)
_INSERT_MESSAGE = rows.insert_sql(rows.MESSAGES)
_INSERT_OUTBOUND = rows.insert_sql(rows.OUTBOUND)
_INSERT_CONVO = rows.insert_sql(rows.CONVERSATIONS)
_INSERT_SITE = rows.insert_sql(rows.SITES)
_INSERT_CANNED = rows.insert_sql(rows.CANNED)
# Operator ids start at 1.
_NO_OWNER = 0
# The canned responses of one owner: $2 an operator's id, or _NO_OWNER for the account's.
_OWNED_BY = f"account_id = $1 AND COALESCE(operator_id, {_NO_OWNER}) = $2"
_CANNED_OF = f"SELECT {rows.select_list(rows.CANNED)} FROM canned WHERE {_OWNED_BY}"
_INSERT_CHANNEL = rows.insert_sql(rows.CHANNELS)
_INSERT_WIDGET_TOKEN = rows.insert_sql(rows.WIDGET_TOKENS)
_INSERT_ASSISTANT = rows.insert_sql(rows.ASSISTANTS)
_INSERT_WIDGET_EVENT = rows.insert_sql(rows.WIDGET_EVENTS)
_SESSION_WIDGET_EVENTS = (
    "SELECT count(*) AS n FROM widget_events"
    " WHERE account_id = $1 AND site_id = $2 AND session_id = $3 AND source = 'widget'"
)
_WIDGET_EVENT_COUNTS = (
    "SELECT day, source, event, count(*) AS n FROM widget_events"
    " WHERE account_id = $1 AND site_id = $2 AND day >= $3 AND day <= $4"
    " GROUP BY day, source, event ORDER BY day, source, event"
)
_SELECT_SITE_BY_WIDGET = f"SELECT {rows.select_list(rows.SITES)} FROM sites WHERE widget_id = $1"
_SELECT_WIDGET_TOKEN = (
    f"SELECT {rows.select_list(rows.WIDGET_TOKENS)} FROM widget_tokens WHERE token_hash = $1"
)
# What an assistant's replies cost since an instant: the sum its budget is checked against.
_ASSISTANT_TOKENS = (
    "SELECT coalesce(sum(tokens), 0) AS spent FROM messages"
    " WHERE account_id = $1 AND assistant_id = $2 AND created >= $3"
)
_INSERT_ACCOUNT = rows.insert_sql(rows.ACCOUNTS)
# A mail kept once: RETURNING says whether this call kept it.
_INSERT_EMAIL = (
    rows.insert_sql(rows.EMAILS)
    + " ON CONFLICT (account_id, channel_id, source_key) DO NOTHING RETURNING source_key"
)
_INSERT_EMAIL_THREAD = rows.insert_sql(rows.EMAIL_THREADS) + " ON CONFLICT (convo_id) DO NOTHING"
_SELECT_EMAILS = f"SELECT {rows.select_list(rows.EMAILS)} FROM emails"
_SELECT_EMAIL = f"{_SELECT_EMAILS} WHERE account_id = $1 AND channel_id = $2 AND source_key = $3"
_SELECT_EMAIL_OF_MESSAGE = f"{_SELECT_EMAILS} WHERE account_id = $1 AND msg_id = $2"
_SELECT_EMAIL_THREAD = f"SELECT {rows.select_list(rows.EMAIL_THREADS)} FROM email_threads"
_EMAIL_MESSAGE_IDS = (
    "SELECT message_id, direction FROM emails WHERE account_id = $1 AND convo_id = $2"
    " AND message_id IS NOT NULL AND outcome IN ('message', 'sent') ORDER BY created"
)
_MARK_UNDELIVERABLE = (
    "INSERT INTO email_undeliverable (account_id, address, reason, at) VALUES ($1, $2, $3, $4)"
    " ON CONFLICT (account_id, address) DO UPDATE SET reason = $3, at = $4"
)
_UNDELIVERABLE = "SELECT reason FROM email_undeliverable WHERE account_id = $1 AND address = $2"
_CHANNELS_OF_KIND = (
    f"SELECT {rows.select_list(rows.CHANNELS)} FROM channels WHERE kind = $1"
    " ORDER BY account_id, id"
)
# A lease is taken when there is none, renewed by its holder, or taken over once it ran out.
_CLAIM_MAILBOX = (
    "INSERT INTO imap_mailboxes (account_id, channel_id, uidvalidity, last_uid, holder,"
    " lease_until) VALUES ($1, $2, NULL, 0, $3, $4)"
    " ON CONFLICT (account_id, channel_id) DO UPDATE SET holder = $3, lease_until = $4"
    " WHERE imap_mailboxes.holder = $3 OR imap_mailboxes.lease_until <= $5"
    " RETURNING uidvalidity, last_uid"
)
_INSERT_API_KEY = rows.insert_sql(rows.API_KEYS)
_INSERT_OPERATOR = rows.insert_sql(rows.OPERATORS)
_INSERT_TEAM = rows.insert_sql(rows.TEAMS)
_INSERT_TEAM_MEMBER = rows.insert_sql(rows.TEAM_MEMBERS)
# Adding a token the operator's device already registered changes nothing.
_ADD_PUSH_TOKEN = rows.insert_sql(rows.PUSH_TOKENS) + " ON CONFLICT DO NOTHING"


def _rows_of(table: Table, records: Iterable[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
    return [rows.values(table, r) for r in records]


# The array type that carries a column of each kind in a chained statement.
_ARRAY_TYPES: dict[type, str] = {
    str: "text[]",
    int: "bigint[]",
    float: "double precision[]",
    bool: "boolean[]",
}


def _unnest(table: Table, first: int) -> str:
    """A FROM item ``r`` with the table's columns, made of one array parameter per column
    numbered from ``first`` (the rows as ``_columns`` gives them)."""
    arrays = ", ".join(
        f"${i}::{_ARRAY_TYPES[c.kind]}" for i, c in enumerate(table.columns, start=first)
    )
    return f"unnest({arrays}) AS r ({', '.join(table.column_names)})"


def _columns(table: Table, batch: Sequence[Sequence[Any]]) -> list[list[Any]]:
    return [[row[i] for row in batch] for i in range(len(table.columns))]


async def _next_id(conn: Conn, account_id: str, kind: str) -> int:
    # The counter row stays locked to commit, and a rolled-back create rolls its number back.
    row = await conn.fetchrow(
        "INSERT INTO counters (account_id, kind, last_id) VALUES ($1, $2, 1)"
        " ON CONFLICT (account_id, kind) DO UPDATE SET last_id = counters.last_id + 1"
        " RETURNING last_id",
        account_id,
        kind,
    )
    assert row is not None
    return int(row["last_id"])


async def _exists(conn: Conn, sql: str, *args: Any) -> bool:
    return await conn.fetchrow(sql, *args) is not None


@dataclass(frozen=True, slots=True)
class _Appended:
    events: tuple[Event, ...]
    # Whether the account had an enabled webhook when the events were numbered: most accounts
    # have none, and they then skip the webhooks lookup (one round trip per write).
    hooked: bool


def _number_events(first: int) -> str:
    """Takes the account's next seqs for a write's events: parameters ``$first`` (how many)
    and ``$first + 1`` (the account)."""
    n, account = f"${first}", f"${first + 1}"
    # The webhooks test rides in the statement that numbers the events, so it sees every
    # webhook committed before this write's last statement began, from any process.
    return (
        f"UPDATE accounts SET last_event_seq = last_event_seq + {n} WHERE id = {account}"
        " RETURNING last_event_seq,"
        f" EXISTS (SELECT 1 FROM webhooks WHERE account_id = {account} AND enabled) AS hooked"
    )


_NUMBER_EVENTS = _number_events(1)


@functools.lru_cache(maxsize=UPDATE_SHAPES + 1)
def _chained_numbering(head: str, head_params: int) -> str:
    """``head`` (a write that returns nothing, parameters from $1, or none), the numbering of
    the events, and their insert, as one statement. The events come with seqs 1 to n, and are
    moved past the account's seq before this write."""
    first = head_params + 1
    seq = f"r.seq + a.last_event_seq - ${first}"
    columns = ", ".join(seq if c == "seq" else f"r.{c}" for c in rows.EVENTS.column_names)
    return (
        f"WITH {f'w AS ({head}), ' if head else ''}a AS ({_number_events(first)}),"
        f" e AS (INSERT INTO events ({rows.select_list(rows.EVENTS)}) SELECT {columns}"
        f" FROM a, {_unnest(rows.EVENTS, first + 2)}) SELECT last_event_seq, hooked FROM a"
    )


async def append_events(
    conn: Conn,
    dialect: Dialect,
    conversation: Conversation,
    announced: Sequence[NewEvent],
    update: tuple[str, Sequence[Any]] | None,
) -> _Appended:
    """Numbers and stores, as given, the account events the engine announced with one write:
    the only place events are written.

    ``update``, the write's last statement on rows it holds already (its conversation's), runs
    first: in the same statement where writes chain.

    The account row is taken last in every write and held to commit (PostgreSQL's row lock,
    SQLite's single writer), so account event seqs are gapless and follow commit order.
    """
    account_id = conversation.account_id
    head, head_args = update or ("", ())
    chained = dialect.chains_writes and bool(announced)
    if head and not chained:
        await conn.execute(head, *head_args)
    if not announced:
        return _Appended((), hooked=False)

    def numbered(first: int) -> tuple[Event, ...]:
        return tuple(
            Event(
                account_id,
                seq,
                new.kind,
                conversation.id,
                new.msg_seq,
                conversation.last_activity,
                new.data,
                new.visitor_data,
            )
            for seq, new in enumerate(announced, start=first)
        )

    n = len(announced)
    if chained:
        batch = _rows_of(rows.EVENTS, map(rows.event_row, numbered(1)))
        row = await conn.fetchrow(
            _chained_numbering(head, len(head_args)),
            *head_args,
            n,
            account_id,
            *_columns(rows.EVENTS, batch),
        )
    else:
        row = await conn.fetchrow(_NUMBER_EVENTS, n, account_id)
    assert row is not None, "a conversation's account is never deleted under it"
    events = numbered(row["last_event_seq"] - n + 1)
    if not chained:
        await conn.executemany(_INSERT_EVENT, _rows_of(rows.EVENTS, map(rows.event_row, events)))
    return _Appended(events, hooked=bool(row["hooked"]))


async def _duplicate_of(conn: Conn, account_id: str, client_msg_id: str) -> Committed | None:
    row = await conn.fetchrow(_SELECT_BY_CLIENT_ID, account_id, client_msg_id)
    if row is None:
        return None
    original = rows.message(row)
    current = await conn.fetchrow(_SELECT_CONVO, original.convo_id, account_id)
    assert current is not None, "a message's conversation is never deleted without it"
    return Committed(rows.convo(current), (original,), duplicate=True)


@dataclass(frozen=True, slots=True)
class _Window:
    """Which messages of a conversation a read returns (Store.list_messages's arguments)."""

    after_seq: int
    after_created: float
    limit: int
    newest: bool
    visitor_view: bool
    before_seq: int | None
    visitor_seqs: bool


async def _messages(conn: Conn, account_id: str, convo_id: str, w: _Window) -> list[Message]:
    found = await conn.fetch(
        _SELECT_MESSAGES[w.visitor_view, w.newest, w.visitor_seqs],
        account_id,
        convo_id,
        w.after_seq,
        w.before_seq or SEQ_END,
        w.after_created,
        w.limit,
    )
    messages = [rows.message(r) for r in found]
    return messages[::-1] if w.newest else messages


async def _patch(
    conn: Conn, table: Table, account_id: str, row_id: int, values: Mapping[str, Any]
) -> Row | None:
    """Updates the given columns (None: unchanged) of one account-scoped row and returns it,
    or None when it does not exist."""
    sets = {k: v for k, v in values.items() if v is not None}
    if not sets:
        return await conn.fetchrow(_SELECT_BY_ID[table.name], account_id, row_id)
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(sets, start=3))
    return await conn.fetchrow(
        f"UPDATE {table.name} SET {assignments} WHERE account_id = $1 AND id = $2"
        f" RETURNING {rows.select_list(table)}",
        account_id,
        row_id,
        *sets.values(),
    )


async def _delete(conn: Conn, table: str, account_id: str, row_id: int) -> bool:
    return await _exists(
        conn,
        f"DELETE FROM {table} WHERE account_id = $1 AND id = $2 RETURNING id",
        account_id,
        row_id,
    )


async def _teams(conn: Conn, account_id: str, team_id: int | None = None) -> list[Team]:
    """The account's teams (or the one ``team_id``) with their members, by id."""
    args: tuple[Any, ...] = (account_id,) if team_id is None else (account_id, team_id)
    members: dict[int, list[int]] = {}
    for row in await conn.fetch(
        "SELECT team_id, operator_id FROM team_members WHERE account_id = $1"
        f"{'' if team_id is None else ' AND team_id = $2'} ORDER BY team_id, operator_id",
        *args,
    ):
        members.setdefault(row["team_id"], []).append(row["operator_id"])
    found = await conn.fetch(
        "SELECT id, name, auto_assign, assign_limit FROM teams WHERE account_id = $1"
        f"{'' if team_id is None else ' AND id = $2'} ORDER BY id",
        *args,
    )
    return [
        Team(
            account_id,
            r["id"],
            r["name"],
            tuple(members.get(r["id"], ())),
            bool(r["auto_assign"]),
            r["assign_limit"],
        )
        for r in found
    ]


# The round robin's state, its row held to commit (see SqlStore.write_routed).
_LOCK_ROSTER = (
    "SELECT auto_assign, assign_limit, last_assigned FROM teams WHERE account_id = $1 AND id = $2"
)
# The team's active members and how many unfinished conversations each owns, by id.
_ROSTER_LOAD = (
    "SELECT m.operator_id, (SELECT COUNT(*) FROM conversations c WHERE c.account_id = $1"
    " AND c.operator_id = m.operator_id AND c.status IN ('open', 'active')) AS load"
    " FROM team_members m JOIN operators o ON o.account_id = m.account_id AND o.id = m.operator_id"
    " WHERE m.account_id = $1 AND m.team_id = $2 AND o.active ORDER BY m.operator_id"
)


async def _roster(conn: Conn, dialect: Dialect, account_id: str, team_id: int) -> Roster | None:
    team = await conn.fetchrow(_LOCK_ROSTER + dialect.lock_for_update, account_id, team_id)
    if team is None:
        return None
    # Read after the lock: the previous holder's assignment has committed and counts here.
    load = {
        r["operator_id"]: int(r["load"])
        for r in await conn.fetch(_ROSTER_LOAD, account_id, team_id)
    }
    return Roster(
        team_id, bool(team["auto_assign"]), team["assign_limit"], tuple(load),
        team["last_assigned"], load,
    )  # fmt: skip


async def _set_members(
    conn: Conn, dialect: Dialect, account_id: str, team_id: int, member_ids: Iterable[int]
) -> None:
    await conn.execute(
        "DELETE FROM team_members WHERE account_id = $1 AND team_id = $2", account_id, team_id
    )
    try:
        members = (
            {"account_id": account_id, "team_id": team_id, "operator_id": m}
            for m in sorted(set(member_ids))
        )
        await conn.executemany(_INSERT_TEAM_MEMBER, _rows_of(rows.TEAM_MEMBERS, members))
    except dialect.foreign_key_violation as exc:
        raise UnknownReference("a team member is not an operator of the account") from exc


async def _require_team(conn: Conn, dialect: Dialect, account_id: str, team_id: int) -> None:
    sql = f"SELECT id FROM teams WHERE account_id = $1 AND id = $2{dialect.lock_key_share}"
    if not await _exists(conn, sql, account_id, team_id):
        raise UnknownReference(f"no team {team_id}")


async def _require_assistant(
    conn: Conn, dialect: Dialect, account_id: str, assistant_id: int
) -> None:
    sql = f"SELECT id FROM assistants WHERE account_id = $1 AND id = $2{dialect.lock_key_share}"
    if not await _exists(conn, sql, account_id, assistant_id):
        raise UnknownReference(f"no assistant {assistant_id}")


async def _insert_site(conn: Conn, dialect: Dialect, site: Site) -> None:
    if site.team_id is not None:
        await _require_team(conn, dialect, site.account_id, site.team_id)
    if site.assistant_id is not None:
        await _require_assistant(conn, dialect, site.account_id, site.assistant_id)
    await conn.execute(_INSERT_SITE, *rows.values(rows.SITES, rows.site_row(site)))


def _exported(table: Table, row: Row) -> dict[str, Any]:
    exported = {name: row[name] for name in table.column_names}
    # SQLite has no boolean type: flags come back as 0 or 1.
    for column in table.columns:
        if column.kind is bool and exported[column.name] is not None:
            exported[column.name] = bool(exported[column.name])
    return exported


def select_all(table: Table) -> str:
    """Every row of ``table`` in primary-key order, as exports list them."""
    return f"SELECT {rows.select_list(table)} FROM {table.name} ORDER BY {', '.join(table.key)}"


class SqlStore(_webhooks.WebhooksSql, _invites.InvitesSql, abc.ABC):
    """The Store protocol over a driver, which supplies how an operation runs (``_read``,
    ``_write``, ``_write_once``, ``_snapshot``), how the outbound claim locks, and opening and
    closing. Every read and write is scoped by account except the ones that are global by
    design: login (which may search every account for an email), API keys and outbound
    claims."""

    def __init__(self, dialect: Dialect) -> None:
        self._dialect = dialect
        self._inbox = InboxSql(dialect.ilike)
        self._reports = ReportsSql(lambda n: f"${n}", dialect.round_down.format)

    async def _numbered(self, conn: Conn, account_id: str, kind: str) -> int:
        return await _next_id(conn, account_id, kind)

    @abc.abstractmethod
    async def _read(self, op: Op[T]) -> T:
        """Runs a read-only ``op`` on a connection of its own."""

    @abc.abstractmethod
    async def _write(self, op: Op[T]) -> T:
        """Runs ``op`` atomically and returns after its commit (or raises, nothing written)."""

    @abc.abstractmethod
    async def _write_once(self, op: Op[T]) -> T:
        """As ``_write``, never retried: for an op that consumes an iterator."""

    @abc.abstractmethod
    async def _read_consistent(self, op: Op[T]) -> T:
        """As ``_read``, every statement of ``op`` seeing one snapshot of the database."""

    @abc.abstractmethod
    def _snapshot(
        self,
    ) -> contextlib.AbstractAsyncContextManager[Callable[[str], AsyncIterator[Row]]]:
        """A read-only snapshot of the whole database, as a function streaming a query's rows."""

    async def _get(
        self, table: Table, record: Callable[[Row], R], account_id: str, row_id: int
    ) -> R | None:
        """The record of one row of an account-scoped table with an ``id``."""
        sql = (
            f"SELECT {rows.select_list(table)} FROM {table.name} WHERE account_id = $1 AND id = $2"
        )

        async def op(conn: Conn) -> R | None:
            row = await conn.fetchrow(sql, account_id, row_id)
            return record(row) if row else None

        return await self._read(op)

    async def _list(self, table: Table, record: Callable[[Row], R], account_id: str) -> list[R]:
        """The records of every row of an account-scoped table with an ``id``, by id."""
        sql = (
            f"SELECT {rows.select_list(table)} FROM {table.name} WHERE account_id = $1 ORDER BY id"
        )

        async def op(conn: Conn) -> list[R]:
            return [record(r) for r in await conn.fetch(sql, account_id)]

        return await self._read(op)

    # the whole installation

    async def is_empty(self) -> bool:
        return await self._read(_is_empty)

    async def export_rows(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async with self._snapshot() as stream:
            for table in TABLES:
                async for row in stream(select_all(table)):
                    yield table.name, _exported(table, row)

    async def import_rows(self, rows_in: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        dialect = self._dialect

        async def op(conn: Conn) -> int:
            for statement in dialect.import_prelude:
                await conn.execute(statement)
            if not await _is_empty(conn):
                raise StoreNotEmpty(
                    "the target store already holds accounts; import needs an empty one"
                )
            count = 0
            batch: list[tuple[Any, ...]] = []
            table: Table | None = None

            async def flush() -> None:
                if table is None or not batch:
                    return
                try:
                    await conn.executemany(rows.insert_sql(table), batch)
                except dialect.integrity_violation as exc:
                    detail = getattr(exc, "detail", None)
                    raise InvalidRow(
                        f"{table.name}: {exc}{f' ({detail})' if detail else ''}"
                    ) from exc
                batch.clear()

            for name, row in rows_in:
                row_table, values = row_values(name, row)
                if row_table is not table or len(batch) >= TRANSFER_BATCH_ROWS:
                    await flush()
                    table = row_table
                batch.append(values)
                count += 1
            await flush()
            return count

        return await self._write_once(op)

    # accounts and keys

    async def create_account(self, account_id: str, name: str, api_key_hash: str) -> Account:
        async def op(conn: Conn) -> Account:
            account = Account(id=account_id, name=name, created=time.time())
            await conn.execute(
                _INSERT_ACCOUNT,
                *rows.values(rows.ACCOUNTS, {**asdict(account), "last_event_seq": 0}),
            )
            key = {"key_hash": api_key_hash, "account_id": account_id, "created": account.created}
            await conn.execute(_INSERT_API_KEY, *rows.values(rows.API_KEYS, key))
            # The first site id of an account, through the same counter as every later site.
            site_id = await _next_id(conn, account_id, "site")
            assert site_id == DEFAULT_SITE_ID
            await _insert_site(conn, self._dialect, default_site(account_id, account.created))
            return account

        return await self._write(op)

    async def get_account(self, account_id: str) -> Account | None:
        async def op(conn: Conn) -> Account | None:
            row = await conn.fetchrow(
                "SELECT id, name, created FROM accounts WHERE id = $1", account_id
            )
            return Account(id=row["id"], name=row["name"], created=row["created"]) if row else None

        return await self._read(op)

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            row = await conn.fetchrow(
                "SELECT account_id FROM api_keys WHERE key_hash = $1", api_key_hash
            )
            return str(row["account_id"]) if row else None

        return await self._read(op)

    # operators

    async def create_operator(
        self,
        account_id: str,
        name: str,
        email: str,
        password_hash: str,
        is_admin: bool,
        lang: str = "en",
        avatar_url: str = "",
    ) -> Operator:
        return await self._write(
            lambda conn: self._add_operator(
                conn, account_id, name, email, password_hash, is_admin, lang, avatar_url
            )
        )

    async def _add_operator(
        self, conn: Conn, account_id: str, name: str, email: str, password_hash: str,
        is_admin: bool, lang: str, avatar_url: str,
    ) -> Operator:  # fmt: skip
        operator = Operator(
            account_id, await _next_id(conn, account_id, "operator"), name, email, is_admin,
            time.time(), lang, avatar_url,
        )  # fmt: skip
        row = {**asdict(operator), "password_hash": password_hash, "token_version": 0}
        try:
            await conn.execute(_INSERT_OPERATOR, *rows.values(rows.OPERATORS, row))
        except self._dialect.unique_violation as exc:
            raise DuplicateEmail(email) from exc
        return operator

    async def get_operator(self, account_id: str, operator_id: int) -> Operator | None:
        return await self._get(rows.OPERATORS, rows.operator, account_id, operator_id)

    async def get_credentials(
        self, email: str, account_id: str | None = None, *, limit: int
    ) -> list[OperatorCredentials]:
        async def op(conn: Conn) -> list[OperatorCredentials]:
            found = await (
                conn.fetch(_SELECT_LOGINS, email, limit)
                if account_id is None
                else conn.fetch(_SELECT_LOGIN, email, account_id)
            )
            return [OperatorCredentials(rows.operator(r), r["password_hash"]) for r in found]

        return await self._read(op)

    async def list_operators(self, account_id: str) -> list[Operator]:
        return await self._list(rows.OPERATORS, rows.operator, account_id)

    async def update_operator(
        self, account_id: str, operator_id: int, patch: OperatorPatch
    ) -> Operator | None:
        async def op(conn: Conn) -> Operator | None:
            try:
                row = await _patch(
                    conn, rows.OPERATORS, account_id, operator_id, patch_values(patch)
                )
            except self._dialect.unique_violation as exc:
                raise DuplicateEmail(patch.email or "") from exc
            return rows.operator(row) if row else None

        return await self._write(op)

    async def delete_operator(self, account_id: str, operator_id: int) -> bool:
        return await self._write(lambda conn: _delete(conn, "operators", account_id, operator_id))

    # operator tokens: revocation before expiry

    async def token_version(self, account_id: str, operator_id: int) -> int | None:
        async def op(conn: Conn) -> int | None:
            row = await conn.fetchrow(
                "SELECT token_version FROM operators WHERE account_id = $1 AND id = $2",
                account_id,
                operator_id,
            )
            return int(row["token_version"]) if row else None

        return await self._read(op)

    async def revoke_tokens(self, account_id: str, operator_id: int) -> bool:
        async def op(conn: Conn) -> bool:
            row = await conn.fetchrow(
                "UPDATE operators SET token_version = token_version + 1"
                " WHERE account_id = $1 AND id = $2 RETURNING token_version",
                account_id,
                operator_id,
            )
            return row is not None

        return await self._write(op)

    async def revoke_token(self, token_id: str, expires: float) -> None:
        async def op(conn: Conn) -> None:
            await conn.execute("DELETE FROM revoked_tokens WHERE expires < $1", time.time())
            await conn.execute(
                "INSERT INTO revoked_tokens (token_id, expires) VALUES ($1, $2)"
                " ON CONFLICT (token_id) DO NOTHING",
                token_id,
                expires,
            )

        await self._write(op)

    async def spend_token(self, token_id: str, expires: float) -> bool:
        async def op(conn: Conn) -> bool:
            await conn.execute("DELETE FROM revoked_tokens WHERE expires < $1", time.time())
            row = await conn.fetchrow(
                "INSERT INTO revoked_tokens (token_id, expires) VALUES ($1, $2)"
                " ON CONFLICT (token_id) DO NOTHING RETURNING token_id",
                token_id,
                expires,
            )
            return row is not None

        return await self._write(op)

    async def get_signed_in_operator(
        self, account_id: str, operator_id: int, token_version: int, token_id: str
    ) -> Operator | None:
        async def op(conn: Conn) -> Operator | None:
            row = await conn.fetchrow(
                f"{_SELECT_OPERATORS} WHERE account_id = $1 AND id = $2 AND token_version = $3"
                " AND active AND NOT EXISTS (SELECT 1 FROM revoked_tokens WHERE token_id = $4)",
                account_id,
                operator_id,
                token_version,
                token_id,
            )
            return rows.operator(row) if row else None

        return await self._read(op)

    # teams

    async def create_team(
        self,
        account_id: str,
        name: str,
        member_ids: Sequence[int],
        *,
        auto_assign: bool = False,
        assign_limit: int = 0,
    ) -> Team:
        async def op(conn: Conn) -> Team:
            team_id = await _next_id(conn, account_id, "team")
            team = {
                "account_id": account_id, "id": team_id, "name": name,
                "auto_assign": auto_assign, "assign_limit": assign_limit, "last_assigned": 0,
            }  # fmt: skip
            await conn.execute(_INSERT_TEAM, *rows.values(rows.TEAMS, team))
            await _set_members(conn, self._dialect, account_id, team_id, member_ids)
            (created,) = await _teams(conn, account_id, team_id)
            return created

        return await self._write(op)

    async def list_teams(self, account_id: str) -> list[Team]:
        return await self._read(lambda conn: _teams(conn, account_id))

    async def update_team(self, account_id: str, team_id: int, patch: TeamPatch) -> Team | None:
        async def op(conn: Conn) -> Team | None:
            values = {
                "name": patch.name,
                "auto_assign": patch.auto_assign,
                "assign_limit": patch.assign_limit,
            }
            if await _patch(conn, rows.TEAMS, account_id, team_id, values) is None:
                return None
            if patch.member_ids is not None:
                await _set_members(conn, self._dialect, account_id, team_id, patch.member_ids)
            (team,) = await _teams(conn, account_id, team_id)
            return team

        return await self._write(op)

    async def delete_team(self, account_id: str, team_id: int) -> bool:
        async def op(conn: Conn) -> bool:
            await conn.execute(
                "UPDATE sites SET team_id = NULL WHERE account_id = $1 AND team_id = $2",
                account_id,
                team_id,
            )
            return await _delete(conn, "teams", account_id, team_id)

        return await self._write(op)

    # canned responses

    async def create_canned(
        self, account_id: str, name: str, tag: str, message: str, owner: int | None = None
    ) -> CannedResponse:
        async def op(conn: Conn) -> CannedResponse:
            canned_id = await _next_id(conn, account_id, "canned")
            canned = CannedResponse(account_id, canned_id, name, tag, message, owner)
            try:
                await conn.execute(
                    _INSERT_CANNED, *rows.values(rows.CANNED, rows.canned_row(canned))
                )
            except self._dialect.foreign_key_violation as exc:
                raise UnknownReference(f"no operator {owner}") from exc
            return canned

        return await self._write(op)

    async def get_canned(self, account_id: str, canned_id: int) -> CannedResponse | None:
        return await self._get(rows.CANNED, rows.canned, account_id, canned_id)

    async def list_canned(self, account_id: str, owner: int | None = None) -> list[CannedResponse]:
        async def op(conn: Conn) -> list[CannedResponse]:
            found = await conn.fetch(_CANNED_OF + " ORDER BY id", account_id, owner or _NO_OWNER)
            return [rows.canned(r) for r in found]

        return await self._read(op)

    async def update_canned(
        self, account_id: str, canned_id: int, patch: CannedPatch, owner: int | None = None
    ) -> CannedResponse | None:
        async def op(conn: Conn) -> CannedResponse | None:
            theirs = _CANNED_OF + " AND id = $3"
            if not await _exists(conn, theirs, account_id, owner or _NO_OWNER, canned_id):
                return None
            row = await _patch(conn, rows.CANNED, account_id, canned_id, patch_values(patch))
            return rows.canned(row) if row else None

        return await self._write(op)

    async def delete_canned(
        self, account_id: str, canned_id: int, owner: int | None = None
    ) -> bool:
        sql = f"DELETE FROM canned WHERE {_OWNED_BY} AND id = $3 RETURNING id"
        return await self._write(
            lambda conn: _exists(conn, sql, account_id, owner or _NO_OWNER, canned_id)
        )

    # sites

    async def create_site(
        self,
        account_id: str,
        name: str,
        color: str,
        position: WidgetPosition,
        greeting: str,
        team_id: int | None,
    ) -> Site:
        async def op(conn: Conn) -> Site:
            site_id = await _next_id(conn, account_id, "site")
            site = Site(
                account_id, site_id, name, color, position, greeting, team_id, time.time(),
                widget_id=new_widget_id(),
            )  # fmt: skip
            await _insert_site(conn, self._dialect, site)
            return site

        return await self._write(op)

    async def get_site(self, account_id: str, site_id: int) -> Site | None:
        return await self._get(rows.SITES, rows.site, account_id, site_id)

    async def list_sites(self, account_id: str) -> list[Site]:
        return await self._list(rows.SITES, rows.site, account_id)

    async def update_site(self, account_id: str, site_id: int, patch: SitePatch) -> Site | None:
        async def op(conn: Conn) -> Site | None:
            values = patch_values(patch)
            if patch.business_hours is not None:
                values["business_hours"] = rows.hours_json(patch.business_hours)
            if values["team_id"] is not None:
                await _require_team(conn, self._dialect, account_id, values["team_id"])
            if values["assistant_id"] is not None:
                await _require_assistant(conn, self._dialect, account_id, values["assistant_id"])
            row = await _patch(conn, rows.SITES, account_id, site_id, values)
            for column, cleared in (
                ("team_id", patch.team_id == NO_TEAM),
                ("assistant_id", patch.assistant_id == NO_ASSISTANT),
            ):
                if row is not None and cleared:
                    row = await conn.fetchrow(
                        f"UPDATE sites SET {column} = NULL WHERE account_id = $1 AND id = $2"
                        f" RETURNING {rows.select_list(rows.SITES)}",
                        account_id,
                        site_id,
                    )
            return rows.site(row) if row else None

        return await self._write(op)

    async def delete_site(self, account_id: str, site_id: int) -> bool:
        return await self._write(lambda conn: _delete(conn, "sites", account_id, site_id))

    # channels

    async def create_channel(
        self,
        account_id: str,
        kind: ChannelKind,
        name: str,
        key: str,
        settings: str,
        credentials: str,
    ) -> Channel:
        async def op(conn: Conn) -> Channel:
            channel_id = await _next_id(conn, account_id, "channel")
            channel = Channel(
                account_id, channel_id, kind, name, key, settings, credentials, time.time()
            )
            try:
                await conn.execute(_INSERT_CHANNEL, *rows.values(rows.CHANNELS, asdict(channel)))
            except self._dialect.unique_violation as exc:
                raise DuplicateKey(key) from exc
            return channel

        return await self._write(op)

    async def get_channel(self, account_id: str, channel_id: int) -> Channel | None:
        return await self._get(rows.CHANNELS, rows.channel, account_id, channel_id)

    async def get_channel_by_key(self, key: str) -> Channel | None:
        async def op(conn: Conn) -> Channel | None:
            row = await conn.fetchrow(_SELECT_CHANNEL_BY_KEY, key)
            return rows.channel(row) if row else None

        return await self._read(op)

    async def list_channels(self, account_id: str) -> list[Channel]:
        return await self._list(rows.CHANNELS, rows.channel, account_id)

    async def update_channel(
        self, account_id: str, channel_id: int, patch: ChannelPatch
    ) -> Channel | None:
        async def op(conn: Conn) -> Channel | None:
            row = await _patch(conn, rows.CHANNELS, account_id, channel_id, patch_values(patch))
            return rows.channel(row) if row else None

        return await self._write(op)

    async def delete_channel(self, account_id: str, channel_id: int) -> bool:
        return await self._write(lambda conn: _delete(conn, "channels", account_id, channel_id))

    async def latest_channel_conversation(
        self, account_id: str, channel_id: int, phone: str
    ) -> Conversation | None:
        async def op(conn: Conn) -> Conversation | None:
            row = await conn.fetchrow(_LATEST_CHANNEL_CONVO, account_id, channel_id, phone)
            return rows.convo(row) if row else None

        return await self._read(op)

    async def set_sms_opt_out(
        self, account_id: str, channel_id: int, phone: str, since: float | None
    ) -> bool:
        async def op(conn: Conn) -> bool:
            if since is None:
                row = await conn.fetchrow(_CLEAR_OPT_OUT, account_id, channel_id, phone)
            else:
                row = await conn.fetchrow(_ADD_OPT_OUT, account_id, channel_id, phone, since)
            return row is not None

        return await self._write(op)

    async def sms_opt_outs(
        self, account_id: str, phones: Sequence[str]
    ) -> list[tuple[int, str, float]]:
        if not phones:
            return []
        marks = ", ".join(f"${i}" for i in range(2, len(phones) + 2))
        sql = (
            "SELECT channel_id, phone, since FROM sms_opt_outs WHERE account_id = $1"
            f" AND phone IN ({marks}) ORDER BY channel_id, phone"
        )

        async def op(conn: Conn) -> list[tuple[int, str, float]]:
            found = await conn.fetch(sql, account_id, *phones)
            return [(r["channel_id"], r["phone"], r["since"]) for r in found]

        return await self._read(op)

    async def add_sms_media(self, media: Sequence[SmsMedia]) -> None:
        if not media:
            return
        values = [rows.values(rows.SMS_MEDIA, asdict(m)) for m in media]
        await self._write(lambda conn: conn.executemany(_ADD_SMS_MEDIA, values))

    async def claim_sms_media(
        self, worker_id: str, *, now: float, lease_s: float, limit: int
    ) -> list[SmsMedia]:
        due = _DUE_SMS_MEDIA + self._dialect.lock_skip_locked

        async def op(conn: Conn) -> list[SmsMedia]:
            found = [rows.sms_media(r) for r in await conn.fetch(due, now, limit)]
            await conn.executemany(
                _CLAIM_SMS_MEDIA,
                [(worker_id, now + lease_s, m.convo_id, m.seq, m.n) for m in found],
            )
            return [
                replace(m, attempts=m.attempts + 1, claimed_by=worker_id, lease_until=now + lease_s)
                for m in found
            ]

        return await self._write(op)

    async def finish_sms_media(
        self,
        media: SmsMedia,
        worker_id: str,
        *,
        state: MediaState,
        error: str | None,
        retry_at: float | None = None,
        picture: Attachment | None = None,
    ) -> Message | Literal[False] | None:
        params = (state, error, retry_at, picture and picture.url)
        fence = (media.convo_id, media.seq, media.n, worker_id, media.attempts)
        locked = _MESSAGE_PICTURES + self._dialect.lock_for_update

        async def op(conn: Conn) -> Message | Literal[False] | None:
            if not await _exists(conn, _FINISH_SMS_MEDIA, *params, *fence):
                return None
            message_key = (media.account_id, media.convo_id, media.seq)
            row = await conn.fetchrow(locked, *message_key) if picture else None
            if picture is None or row is None:
                return False
            message = rows.message(row)
            if message.image_url is None:
                message = replace(message, image_url=picture.url)
            else:
                message = replace(message, attachments=(*message.attachments, picture))
            attachments = rows.attachments_column(message.attachments)
            await conn.execute(_SET_MESSAGE_PICTURES, message.image_url, attachments, *message_key)
            return message

        return await self._write(op)

    async def bot_user_conversation(
        self, account_id: str, channel_id: int, user_id: str
    ) -> Conversation | None:
        async def op(conn: Conn) -> Conversation | None:
            row = await conn.fetchrow(_BOT_USER_CONVO, account_id, channel_id, user_id)
            return rows.convo(row) if row else None

        return await self._read(op)

    async def record_channel_inbound(self, account_id: str, channel_id: int, at: float) -> None:
        sql = "UPDATE channels SET last_inbound = $3 WHERE account_id = $1 AND id = $2"
        await self._write(lambda conn: conn.execute(sql, account_id, channel_id, at))

    async def record_channel_outbound(
        self, account_id: str, channel_id: int, at: float, error: str | None
    ) -> None:
        sql = (
            "UPDATE channels SET last_outbound = $3 WHERE account_id = $1 AND id = $2"
            if error is None
            else "UPDATE channels SET last_error = $4, last_error_at = $3"
            " WHERE account_id = $1 AND id = $2"
        )
        args = (
            (account_id, channel_id, at) if error is None else (account_id, channel_id, at, error)
        )
        await self._write(lambda conn: conn.execute(sql, *args))

    # email

    async def record_email(self, record: EmailRecord, thread: EmailThread | None) -> bool:
        async def op(conn: Conn) -> bool:
            if thread is not None:
                await conn.execute(
                    _INSERT_EMAIL_THREAD, *rows.values(rows.EMAIL_THREADS, asdict(thread))
                )
            found = await conn.fetchrow(_INSERT_EMAIL, *rows.values(rows.EMAILS, asdict(record)))
            return found is not None

        return await self._write(op)

    async def get_email(
        self, account_id: str, channel_id: int, source_key: str
    ) -> EmailRecord | None:
        return await self._email(_SELECT_EMAIL, account_id, channel_id, source_key)

    async def email_of_message(self, account_id: str, msg_id: str) -> EmailRecord | None:
        return await self._email(_SELECT_EMAIL_OF_MESSAGE, account_id, msg_id)

    async def _email(self, sql: str, *args: Any) -> EmailRecord | None:
        async def op(conn: Conn) -> EmailRecord | None:
            row = await conn.fetchrow(sql, *args)
            return rows.email_record(row) if row else None

        return await self._read(op)

    async def email_thread(self, account_id: str, convo_id: str) -> EmailThread | None:
        return await self._email_thread(
            f"{_SELECT_EMAIL_THREAD} WHERE account_id = $1 AND convo_id = $2", account_id, convo_id
        )

    async def email_thread_by_token(self, token: str) -> EmailThread | None:
        return await self._email_thread(f"{_SELECT_EMAIL_THREAD} WHERE token = $1", token)

    async def email_thread_by_tag(
        self, account_id: str, channel_id: int, tag: str
    ) -> EmailThread | None:
        return await self._email_thread(
            f"{_SELECT_EMAIL_THREAD} WHERE account_id = $1 AND channel_id = $2 AND tag = $3",
            account_id,
            channel_id,
            tag,
        )

    async def email_thread_by_message_ids(
        self, account_id: str, channel_id: int, message_ids: Sequence[str]
    ) -> EmailThread | None:
        if not message_ids:
            return None
        marks = ", ".join(f"${i}" for i in range(3, len(message_ids) + 3))
        sql = (
            f"SELECT {', '.join(f't.{n}' for n in rows.EMAIL_THREADS.column_names)} FROM emails e"
            " JOIN email_threads t ON t.convo_id = e.convo_id"
            " WHERE e.account_id = $1 AND e.channel_id = $2 AND e.outcome IN ('message', 'sent')"
            f" AND e.message_id IN ({marks}) ORDER BY e.created DESC LIMIT 1"
        )

        async def op(conn: Conn) -> EmailThread | None:
            row = await conn.fetchrow(sql, account_id, channel_id, *message_ids)
            return rows.email_thread(row) if row else None

        return await self._read(op)

    async def _email_thread(self, sql: str, *args: Any) -> EmailThread | None:
        async def op(conn: Conn) -> EmailThread | None:
            row = await conn.fetchrow(sql, *args)
            return rows.email_thread(row) if row else None

        return await self._read(op)

    async def email_message_ids(self, account_id: str, convo_id: str) -> list[tuple[str, str]]:
        async def op(conn: Conn) -> list[tuple[str, str]]:
            found = await conn.fetch(_EMAIL_MESSAGE_IDS, account_id, convo_id)
            return [(r["message_id"], r["direction"]) for r in found]

        return await self._read(op)

    async def mark_undeliverable(
        self, account_id: str, address: str, reason: str, at: float
    ) -> None:
        await self._write(
            lambda conn: conn.execute(_MARK_UNDELIVERABLE, account_id, address, reason, at)
        )

    async def undeliverable(self, account_id: str, address: str) -> str | None:
        async def op(conn: Conn) -> str | None:
            row = await conn.fetchrow(_UNDELIVERABLE, account_id, address)
            return str(row["reason"]) if row else None

        return await self._read(op)

    async def list_channels_of_kind(self, kind: ChannelKind) -> list[Channel]:
        async def op(conn: Conn) -> list[Channel]:
            found = await conn.fetch(_CHANNELS_OF_KIND, kind)
            return [rows.channel(r) for r in found]

        return await self._read(op)

    async def claim_mailbox(
        self, account_id: str, channel_id: int, holder: str, now: float, lease_until: float
    ) -> ImapCursor | None:
        async def op(conn: Conn) -> ImapCursor | None:
            row = await conn.fetchrow(
                _CLAIM_MAILBOX, account_id, channel_id, holder, lease_until, now
            )
            return ImapCursor(row["uidvalidity"], row["last_uid"]) if row else None

        return await self._write(op)

    async def advance_mailbox(
        self, account_id: str, channel_id: int, holder: str, cursor: ImapCursor
    ) -> bool:
        async def op(conn: Conn) -> bool:
            row = await conn.fetchrow(
                "UPDATE imap_mailboxes SET uidvalidity = $4, last_uid = $5"
                " WHERE account_id = $1 AND channel_id = $2 AND holder = $3"
                " RETURNING last_uid",
                account_id, channel_id, holder, cursor.uidvalidity, cursor.last_uid,
            )  # fmt: skip
            return row is not None

        return await self._write(op)

    async def release_mailbox(self, account_id: str, channel_id: int, holder: str) -> None:
        sql = (
            "UPDATE imap_mailboxes SET lease_until = 0"
            " WHERE account_id = $1 AND channel_id = $2 AND holder = $3"
        )
        await self._write(lambda conn: conn.execute(sql, account_id, channel_id, holder))

    async def advance_delivery(
        self,
        account_id: str,
        channel_id: int,
        provider_id: str,
        delivery: Delivery,
        after: Collection[Delivery],
        error: str | None,
    ) -> tuple[str, int, bool] | None:
        marks = ", ".join(f"${i}" for i in range(5, len(after) + 5))
        # One conditional UPDATE: of two callbacks racing, only a forward move lands.
        advance = (
            f"UPDATE messages SET delivery = $4 WHERE account_id = $1 AND provider_id = $3"
            f" AND delivery IN ({marks}) AND convo_id IN (SELECT id FROM conversations"
            " WHERE account_id = $1 AND channel_id = $2) RETURNING convo_id, seq"
        )

        async def op(conn: Conn) -> tuple[str, int, bool] | None:
            args = (account_id, channel_id, provider_id)
            row = await conn.fetchrow(advance, *args, delivery, *after)
            if row is None:
                found = await conn.fetchrow(_CHANNEL_MESSAGE, *args)
                return (found["convo_id"], found["seq"], False) if found else None
            if error is not None:
                await conn.execute(
                    "UPDATE outbound SET last_error = $1 WHERE convo_id = $2 AND seq = $3",
                    error,
                    row["convo_id"],
                    row["seq"],
                )
            return (row["convo_id"], row["seq"], True)

        return await self._write(op)

    # widgets and assistants (issue 17)

    async def site_by_widget_id(self, widget_id: str) -> Site | None:
        async def op(conn: Conn) -> Site | None:
            row = await conn.fetchrow(_SELECT_SITE_BY_WIDGET, widget_id)
            return rows.site(row) if row else None

        return await self._read(op)

    async def create_widget_token(
        self, account_id: str, site_id: int, token_hash: str
    ) -> WidgetToken | None:
        async def op(conn: Conn) -> WidgetToken | None:
            if not await _exists(conn, _SELECT_BY_ID["sites"], account_id, site_id):
                return None
            token_id = await _next_id(conn, account_id, "widget_token")
            token = WidgetToken(account_id, token_id, site_id, token_hash, time.time())
            await conn.execute(
                _INSERT_WIDGET_TOKEN, *rows.values(rows.WIDGET_TOKENS, asdict(token))
            )
            return token

        return await self._write(op)

    async def list_widget_tokens(self, account_id: str, site_id: int) -> list[WidgetToken]:
        sql = (
            f"SELECT {rows.select_list(rows.WIDGET_TOKENS)} FROM widget_tokens"
            " WHERE account_id = $1 AND site_id = $2 ORDER BY id"
        )

        async def op(conn: Conn) -> list[WidgetToken]:
            return [rows.widget_token(r) for r in await conn.fetch(sql, account_id, site_id)]

        return await self._read(op)

    async def delete_widget_token(self, account_id: str, site_id: int, token_id: int) -> bool:
        sql = (
            "DELETE FROM widget_tokens WHERE account_id = $1 AND site_id = $2 AND id = $3"
            " RETURNING id"
        )
        return await self._write(lambda conn: _exists(conn, sql, account_id, site_id, token_id))

    async def widget_token(self, token_hash: str) -> WidgetToken | None:
        async def op(conn: Conn) -> WidgetToken | None:
            row = await conn.fetchrow(_SELECT_WIDGET_TOKEN, token_hash)
            return rows.widget_token(row) if row else None

        return await self._read(op)

    async def add_widget_event(
        self, event: WidgetEvent, *, session_limit: int
    ) -> WidgetEvent | None:
        async def op(conn: Conn) -> WidgetEvent | None:
            keys = (event.account_id, event.site_id)
            # Locks the site's row until commit, so two events of one session cannot both
            # pass the bound (SQLite has one writer anyway).
            site = await conn.fetchrow(
                f"SELECT id FROM sites WHERE account_id = $1 AND id = $2"
                f"{self._dialect.lock_for_update}",
                *keys,
            )
            if site is None:
                return None
            if event.source == "widget":
                row = await conn.fetchrow(_SESSION_WIDGET_EVENTS, *keys, event.session_id)
                if row is not None and int(row["n"]) >= session_limit:
                    return None
            numbered = replace(event, id=await _next_id(conn, event.account_id, "widget_event"))
            await conn.execute(
                _INSERT_WIDGET_EVENT, *rows.values(rows.WIDGET_EVENTS, asdict(numbered))
            )
            return numbered

        return await self._write(op)

    async def widget_event_counts(
        self, account_id: str, site_id: int, first_day: int, last_day: int
    ) -> list[tuple[int, str, str, int]]:
        async def op(conn: Conn) -> list[tuple[int, str, str, int]]:
            found = await conn.fetch(_WIDGET_EVENT_COUNTS, account_id, site_id, first_day, last_day)
            return [(int(r["day"]), r["source"], r["event"], int(r["n"])) for r in found]

        return await self._read(op)

    async def create_assistant(
        self,
        account_id: str,
        name: str,
        base_url: str,
        model: str,
        credentials: str,
        system_prompt: str,
        max_tokens: int,
        monthly_token_budget: int,
    ) -> Assistant:
        async def op(conn: Conn) -> Assistant:
            assistant_id = await _next_id(conn, account_id, "assistant")
            assistant = Assistant(
                account_id, assistant_id, name, base_url, model, credentials, system_prompt,
                max_tokens, monthly_token_budget, time.time(),
            )  # fmt: skip
            await conn.execute(_INSERT_ASSISTANT, *rows.values(rows.ASSISTANTS, asdict(assistant)))
            return assistant

        return await self._write(op)

    async def get_assistant(self, account_id: str, assistant_id: int) -> Assistant | None:
        return await self._get(rows.ASSISTANTS, rows.assistant, account_id, assistant_id)

    async def list_assistants(self, account_id: str) -> list[Assistant]:
        return await self._list(rows.ASSISTANTS, rows.assistant, account_id)

    async def update_assistant(
        self, account_id: str, assistant_id: int, patch: AssistantPatch
    ) -> Assistant | None:
        async def op(conn: Conn) -> Assistant | None:
            values = patch_values(patch)
            row = await _patch(conn, rows.ASSISTANTS, account_id, assistant_id, values)
            return rows.assistant(row) if row else None

        return await self._write(op)

    async def delete_assistant(self, account_id: str, assistant_id: int) -> bool:
        async def op(conn: Conn) -> bool:
            await conn.execute(
                "UPDATE sites SET assistant_id = NULL WHERE account_id = $1 AND assistant_id = $2",
                account_id,
                assistant_id,
            )
            return await _delete(conn, "assistants", account_id, assistant_id)

        return await self._write(op)

    async def assistant_tokens_since(self, account_id: str, assistant_id: int, since: float) -> int:
        async def op(conn: Conn) -> int:
            row = await conn.fetchrow(_ASSISTANT_TOKENS, account_id, assistant_id, since)
            assert row is not None
            return int(row["spent"])

        return await self._read(op)

    async def reseal_channels(self, reseal: Callable[[str], str]) -> int:
        async def op(conn: Conn) -> int:
            count = 0
            for table in ("channels", "assistants"):
                found = await conn.fetch(f"SELECT account_id, id, credentials FROM {table}")
                await conn.executemany(
                    f"UPDATE {table} SET credentials = $3 WHERE account_id = $1 AND id = $2",
                    [(r["account_id"], r["id"], reseal(r["credentials"])) for r in found],
                )
                count += len(found)
            return count

        return await self._write_once(op)

    # contacts

    async def get_contact(self, account_id: str, contact_id: int) -> Contact | None:
        async def op(conn: Conn) -> Contact | None:
            found = await _contacts.contacts(conn, account_id, [contact_id])
            return found[0] if found else None

        return await self._read(op)

    async def contact_conversations(
        self, account_id: str, contact_id: int, *, limit: int
    ) -> list[Conversation]:
        return await self._read(
            lambda conn: _contacts.contact_conversations(conn, account_id, contact_id, limit)
        )

    async def possible_matches(
        self, account_id: str, contact_id: int, *, limit: int
    ) -> list[Contact]:
        return await self._read(
            lambda conn: _contacts.possible_matches(conn, account_id, contact_id, limit)
        )

    async def search_contacts(self, account_id: str, words: str, *, limit: int) -> list[Contact]:
        ilike = self._dialect.ilike
        return await self._read(
            lambda conn: _contacts.search(conn, ilike, account_id, words, limit)
        )

    async def merge_contacts(
        self, account_id: str, into_id: int, from_id: int, operator_id: int
    ) -> tuple[Contact, int] | None:
        dialect = self._dialect
        return await self._write(
            lambda conn: _contacts.merge(
                conn,
                dialect.lock_for_update,
                dialect.lock_exclusive,
                account_id,
                into_id,
                from_id,
                operator_id,
                time.time(),
            )
        )

    # push tokens

    async def add_push_token(self, account_id: str, operator_id: int, token: str) -> None:
        row = {
            "account_id": account_id, "operator_id": operator_id, "token": token,
            "created": time.time(),
        }  # fmt: skip

        async def op(conn: Conn) -> None:
            await conn.execute(_ADD_PUSH_TOKEN, *rows.values(rows.PUSH_TOKENS, row))

        await self._write(op)

    async def remove_push_tokens(
        self, account_id: str, operator_id: int, token: str | None = None
    ) -> int:
        sql = "DELETE FROM push_tokens WHERE account_id = $1 AND operator_id = $2"
        args: tuple[Any, ...] = (account_id, operator_id)
        if token is not None:
            sql, args = sql + " AND token = $3", (*args, token)

        async def op(conn: Conn) -> int:
            return len(await conn.fetch(f"{sql} RETURNING token", *args))

        return await self._write(op)

    async def push_tokens(
        self, account_id: str, operator_ids: Sequence[int]
    ) -> dict[int, list[str]]:
        if not operator_ids:
            return {}
        marks = ", ".join(f"${i}" for i in range(2, len(operator_ids) + 2))

        async def op(conn: Conn) -> dict[int, list[str]]:
            found: dict[int, list[str]] = {}
            for row in await conn.fetch(
                "SELECT operator_id, token FROM push_tokens WHERE account_id = $1"
                f" AND operator_id IN ({marks}) ORDER BY operator_id, created",
                account_id,
                *operator_ids,
            ):
                found.setdefault(row["operator_id"], []).append(row["token"])
            return found

        return await self._read(op)

    # the inbox

    async def list_conversations(self, account_id: str, query: InboxQuery) -> list[Conversation]:
        sql, params = self._inbox.select(rows.select_list(rows.CONVERSATIONS), account_id, query)

        async def op(conn: Conn) -> list[Conversation]:
            return [rows.convo(r) for r in await conn.fetch(sql, *params)]

        return await self._read(op)

    async def count_conversations(self, account_id: str, query: InboxQuery) -> dict[Status, int]:
        sql, params = self._inbox.count(account_id, query)

        async def op(conn: Conn) -> dict[Status, int]:
            return {r["status"]: r["n"] for r in await conn.fetch(sql, *params)}

        return await self._read(op)

    # conversations: the one write path

    async def write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        *,
        client_msg_id: str | None = None,
    ) -> Committed:
        return await self._write(
            lambda conn: self._commit_decision(conn, account_id, convo_id, decide, client_msg_id)
        )

    async def write_routed(
        self,
        account_id: str,
        team_id: int,
        decide: RosterDecide,
        *,
        convo_id: str | None = None,
        client_msg_id: str | None = None,
    ) -> Committed:
        async def op(conn: Conn) -> Committed:
            # Taken first, before the conversation's row and the account row every write takes
            # last (see storage/postgres.py): one order for every writer, so none deadlock.
            roster = await _roster(conn, self._dialect, account_id, team_id)
            committed = await self._commit_decision(
                conn, account_id, convo_id, lambda current: decide(current, roster), client_msg_id
            )
            owner = committed.conversation.operator_id
            given = committed.before is None or committed.before.operator_id != owner
            if (
                roster is not None
                and committed.events
                and not committed.duplicate
                and given
                and owner in roster.members
            ):
                await conn.execute(
                    "UPDATE teams SET last_assigned = $3 WHERE account_id = $1 AND id = $2",
                    account_id,
                    team_id,
                    owner,
                )
            return committed

        return await self._write(op)

    async def _commit_decision(
        self,
        conn: Conn,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        client_msg_id: str | None,
    ) -> Committed:
        """Store.write's transaction, on ``conn``."""
        locked = _SELECT_CONVO + self._dialect.lock_for_update
        before: Conversation | None = None
        stored: Row | None = None
        if convo_id is not None:
            stored = await conn.fetchrow(locked, convo_id, account_id)
            before = rows.convo(stored) if stored else None
        # Looked up after the lock: a retry racing the original into the same conversation
        # then finds it committed (PostgreSQL retries the rest, see storage/postgres.py).
        if client_msg_id is not None:
            duplicate = await _duplicate_of(conn, account_id, client_msg_id)
            if duplicate is not None:
                return duplicate
        change = decide(before)
        if change is None:
            if before is None:
                raise LookupError("a decision on no conversation must create one")
            return Committed(before)
        after = change.after
        if change.before is None:
            contact_id = await _contacts.contact_for(
                conn,
                _next_id,
                self._dialect.lock_key_share,
                account_id,
                change.identity,
                change.contact_name,
                after.created,
            )
            after = evolve(after, contact_id=contact_id)
        row = rows.convo_row(after)
        update: tuple[str, Sequence[Any]] | None = None
        if change.before is None:
            # Before its messages, which refer to it.
            await conn.execute(_INSERT_CONVO, *rows.values(rows.CONVERSATIONS, row))
        else:
            # The row is locked already: its update rides with the events' numbering. What it
            # changed is measured against the row as read, not the decision's ``before``; the
            # stored flags read 0 and 1 on SQLite, which compare equal to False and True.
            assert stored is not None, "a change with a before was decided on a stored row"
            changed = tuple(
                itertools.compress(
                    _CONVO_SET,
                    map(operator.ne, _CONVO_SET_VALUES(row), _CONVO_SET_VALUES(stored)),
                )
            )
            if changed:
                update = (
                    _update_convo(changed),
                    (after.id, account_id, *(row[n] for n in changed)),
                )
        # The messages go on their own statement: their insert may wait on the client id
        # index (see storage/postgres.py) and must not hold the account row meanwhile, and
        # migration 0008's trigger for old writers updates their conversation, which one
        # statement may not do beside the conversation's own update.
        if change.messages:
            await conn.executemany(
                _INSERT_MESSAGE,
                _rows_of(rows.MESSAGES, (rows.message_row(account_id, m) for m in change.messages)),
            )
            queued = _outbound.queued_rows(
                account_id, after, change.messages, dict(change.payloads)
            )
            if queued:
                await conn.executemany(_INSERT_OUTBOUND, _rows_of(rows.OUTBOUND, queued))
        if after.contact_id is not None and (change.typed or change.contact_name):
            await _contacts.record_typed(
                conn,
                account_id,
                after.contact_id,
                change.typed,
                change.contact_name,
                after.last_activity,
            )
        # Last, and held to commit: see append_events.
        appended = await append_events(conn, self._dialect, after, change.events, update)
        if appended.hooked:
            await _webhooks.enqueue(conn, account_id, appended.events, change.hooks)
        return Committed(after, change.messages, appended.events, before=change.before)

    async def get_conversation(self, account_id: str, convo_id: str) -> Conversation | None:
        async def op(conn: Conn) -> Conversation | None:
            row = await conn.fetchrow(_SELECT_CONVO, convo_id, account_id)
            return rows.convo(row) if row else None

        return await self._read(op)

    async def list_messages(
        self,
        account_id: str,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
        visitor_view: bool = False,
        before_seq: int | None = None,
        visitor_seqs: bool = False,
    ) -> list[Message]:
        window = _Window(
            after_seq, after_created, limit, newest, visitor_view, before_seq, visitor_seqs
        )
        return await self._read(lambda conn: _messages(conn, account_id, convo_id, window))

    async def read_conversation(
        self,
        account_id: str,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
        visitor_view: bool = False,
        before_seq: int | None = None,
        visitor_seqs: bool = False,
    ) -> tuple[Conversation, list[Message]] | None:
        window = _Window(
            after_seq, after_created, limit, newest, visitor_view, before_seq, visitor_seqs
        )

        async def op(conn: Conn) -> tuple[Conversation, list[Message]] | None:
            row = await conn.fetchrow(_SELECT_CONVO, convo_id, account_id)
            if row is None:
                return None
            messages = await _messages(conn, account_id, convo_id, window)
            return rows.convo(row), messages

        return await self._read(op)

    async def list_events(self, account_id: str, *, after_seq: int, limit: int) -> list[Event]:
        async def op(conn: Conn) -> list[Event]:
            return [
                rows.event(r)
                for r in await conn.fetch(_SELECT_EVENTS, account_id, after_seq, limit)
            ]

        return await self._read(op)

    async def replay_events(
        self, account_id: str, *, after_seq: int, limit: int
    ) -> list[EventDetail]:
        async def op(conn: Conn) -> list[EventDetail]:
            return [
                EventDetail(
                    rows.event(r, "e_"),
                    rows.convo(r, "c_"),
                    rows.message(r, "m_") if r["m_id"] is not None else None,
                )
                for r in await conn.fetch(_REPLAY, account_id, after_seq, limit)
            ]

        return await self._read(op)

    async def replay_messages(
        self, account_id: str, convo_id: str, *, after_seq: int, limit: int
    ) -> list[MessageReplay]:
        async def op(conn: Conn) -> list[MessageReplay]:
            found = await conn.fetch(_REPLAY_MESSAGES, account_id, convo_id, after_seq, limit)
            return [MessageReplay(rows.message(r, "m_"), r["e_visitor_data"]) for r in found]

        return await self._read(op)

    # reports: every figure set is read from one snapshot

    async def report_volume(self, account_id: str, q: ReportQuery) -> VolumeFigures:
        return await self._report(self._reports.volume(account_id, q))

    async def report_response_times(self, account_id: str, q: ReportQuery) -> ResponseFigures:
        return await self._report(self._reports.response_times(account_id, q))

    async def report_handover(self, account_id: str, q: ReportQuery) -> HandoverFigures:
        return await self._report(self._reports.handover(account_id, q))

    async def report_ratings(self, account_id: str, q: ReportQuery) -> RatingFigures:
        return await self._report(self._reports.ratings(account_id, q))

    async def _report(self, report: Report[T]) -> T:
        async def op(conn: Conn) -> T:
            for statement in self._dialect.report_prelude:
                await conn.execute(statement)
            # Aggregates, not records: their columns are read in the statement's order.
            return report.figures(
                [
                    [tuple(r.values()) for r in await conn.fetch(sql, *params)]
                    for sql, params in report.statements
                ]
            )

        return await self._read_consistent(op)

    async def event_payloads(
        self, account_id: str, convo_id: str, *, kind: str, containing: str, limit: int
    ) -> list[str]:
        async def op(conn: Conn) -> list[str]:
            found = await conn.fetch(
                _EVENT_PAYLOADS, account_id, convo_id, kind, f"%{escape_like(containing)}%", limit
            )
            return [r["data"] for r in reversed(found)]

        return await self._read(op)

    async def head_event_seq(self, account_id: str) -> int:
        async def op(conn: Conn) -> int:
            row = await conn.fetchrow(
                "SELECT last_event_seq FROM accounts WHERE id = $1", account_id
            )
            return int(row["last_event_seq"]) if row else 0

        return await self._read(op)

    # outbound delivery

    async def claim_outbound(
        self,
        worker_id: str,
        *,
        channels: Collection[OutboundChannel],
        now: float,
        lease_s: float,
        limit: int,
        unbound: Collection[OutboundChannel] | None = None,
    ) -> list[OutboundJob]:
        if not channels:
            return []
        every = tuple(channels) if unbound is None else tuple(unbound)
        claim = Claim(worker_id, tuple(channels), now, now + lease_s, limit, every)
        return await self._write(self._claim(claim))

    @abc.abstractmethod
    def _claim(self, claim: Claim) -> Op[list[OutboundJob]]:
        """The op that claims (see Store.claim_outbound): where the databases lock apart."""

    async def queued_outbound(self) -> dict[OutboundChannel, int]:
        async def op(conn: Conn) -> dict[OutboundChannel, int]:
            found = await conn.fetch(_QUEUED_OUTBOUND)
            return {r["channel"]: int(r["queued"]) for r in found}

        return await self._read(op)

    async def finish_outbound(
        self,
        job: OutboundJob,
        worker_id: str,
        *,
        sent: bool,
        error: str | None,
        retry_at: float | None,
        provider_id: str | None = None,
    ) -> bool:
        state = _outbound.finished_state(sent=sent, retry_at=retry_at)
        params = _outbound.finish_params(job, worker_id, state, error, retry_at)

        async def op(conn: Conn) -> bool:
            if not await _exists(conn, _outbound.FINISH_SQL, *params):
                return False
            if state != "queued":
                await conn.execute(_outbound.SET_DELIVERY_SQL, state, job.convo_id, job.seq)
            if state == "sent" and provider_id:
                await conn.execute(
                    "UPDATE messages SET provider_id = $1 WHERE convo_id = $2 AND seq = $3",
                    provider_id,
                    job.convo_id,
                    job.seq,
                )
            return True

        return await self._write(op)


async def _is_empty(conn: Conn) -> bool:
    return not await _exists(conn, "SELECT 1 AS found FROM accounts LIMIT 1")
