"""Migration 0012 on a store written before contacts, on SQLite and PostgreSQL: every
conversation gets a contact, grouped only by what a channel proved (an SMS channel's From,
the widget session), never by typed details."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import asyncpg
import pytest

from storage import create_store
from storage import rows as row_maps
from storage.migrations import load_migrations
from storage.models import Change, Conversation, UserInfo
from tests.storage.conftest import BACKENDS

CONTACTS = 12
# What a conversation row had before 0012: TABLES lists columns in the order migrations added
# them, and contact_id is 0012's first.
_ALL = list(row_maps.CONVERSATIONS.column_names)
_BEFORE_COLUMNS = _ALL[: _ALL.index("contact_id")]


def _conversation(
    convo_id: str, created: float, *, phone: str = "", session: str | None = None,
    channel: int | None = None, name: str = "",
) -> Conversation:  # fmt: skip
    return Conversation(
        id=convo_id, account_id="acme", source_app="smsbroadcast" if channel else "liveoperator",
        status="open", mode="bot", operator_id=None, team_id=None,
        user_info=UserInfo(fname=name, phone=phone), created=created, last_activity=created,
        resolved_at=None, session_id=session, channel_id=channel,
    )  # fmt: skip


OLD = [
    _conversation("sms-1", 1.0, phone="+15550100001", channel=1, name="Ada"),
    _conversation("sms-2", 2.0, phone="+15550100001", channel=1),
    _conversation("web-1", 3.0, session="session-one-1234"),
    _conversation("web-2", 4.0, session="session-one-1234", name="Bob"),
    # Typed the SMS customer's phone: a claim, which links nobody.
    _conversation("web-3", 5.0, phone="+15550100001", name="Eve"),
    _conversation("api-1", 6.0),
]
_SETUP = [
    ("INSERT INTO accounts (id, name, created) VALUES (?, ?, ?)", ("acme", "Acme", 0.0)),
    (
        "INSERT INTO channels (account_id, id, kind, name, key, settings, credentials, created)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ("acme", 1, "sms", "SMS", "k" * 32, "{}", "sealed", 0.0),
    ),
    *(
        (
            f"INSERT INTO conversations ({', '.join(_BEFORE_COLUMNS)})"
            f" VALUES ({', '.join('?' for _ in _BEFORE_COLUMNS)})",
            tuple(row_maps.convo_row(c)[name] for name in _BEFORE_COLUMNS),
        )
        for c in OLD
    ),
]


def _sqlite_before(path: Path) -> str:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for step, sql in load_migrations("sqlite"):
            if step < CONTACTS:
                db.executescript(sql)
                db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (step,))
        for sql, args in _SETUP:
            db.execute(sql, args)
    return f"sqlite:///{path}"


def _numbered(sql: str) -> str:
    """``?`` placeholders as PostgreSQL's ``$1``, ``$2``, ..."""
    parts = sql.split("?")
    return "".join(f"{p}${i}" for i, p in enumerate(parts[:-1], start=1)) + parts[-1]


async def _postgres_before(url: str) -> str:
    db = await asyncpg.connect(url)
    try:
        await db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for step, sql in load_migrations("postgres"):
            if step < CONTACTS:
                await db.execute(sql)
                await db.execute("INSERT INTO schema_migrations (version) VALUES ($1)", step)
        for sql, args in _SETUP:
            await db.execute(_numbered(sql), *args)
    finally:
        await db.close()
    return url


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """The backend and where its empty store is (looked up by name, as conftest's ``store``
    does, so the sqlite variant never asks for a PostgreSQL server)."""
    if request.param == "sqlite":
        return "sqlite", str(tmp_path / "old.db")
    return "postgres", str(request.getfixturevalue("postgres_url"))


async def test_existing_conversations_get_contacts_by_what_was_proven(
    backend: tuple[str, str],
) -> None:
    kind, where = backend
    url = _sqlite_before(Path(where)) if kind == "sqlite" else await _postgres_before(where)
    store = create_store(url)
    await store.open()
    try:
        contact_of = {
            c.id: found.contact_id
            for c in OLD
            if (found := await store.get_conversation("acme", c.id)) is not None
        }
        assert len(contact_of) == len(OLD) and None not in contact_of.values()
        assert contact_of["sms-1"] == contact_of["sms-2"]
        assert contact_of["web-1"] == contact_of["web-2"]
        assert len(set(contact_of.values())) == 4

        sms_id = contact_of["sms-1"]
        assert sms_id is not None
        sms = await store.get_contact("acme", sms_id)
        assert sms is not None and sms.name == "Ada"
        assert [(i.identity.kind, i.identity.value, i.verified) for i in sms.identities] == [
            ("phone", "+15550100001", True)
        ]
        found = await store.search_contacts("acme", "session-one", limit=5)
        assert [c.name for c in found] == ["Bob"]
        assert sorted({v for v in contact_of.values() if v is not None}) == [1, 2, 3, 4]
        # The counter continues after the backfilled ids: a new contact takes the next one.
        new = _conversation("new-1", 7.0)
        committed = await store.write("acme", None, lambda _: Change(None, new))
        assert committed.conversation.contact_id == 5
    finally:
        await store.close()
