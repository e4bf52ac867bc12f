"""Issue 21 item 15, notes show through seq gaps: the visitor saw seqs 1 and 4 after two
private notes, which told how many notes there were and where. Every visitor surface now
numbers the messages it shows 1, 2, 3, ... (visitor seqs); operator surfaces and the App
Command API keep the message seqs. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest
from starlette.applications import Starlette

from server.settings import Settings
from storage import create_store
from tests.conftest import TEST_PASSWORD, Tenant, bearer
from tests.server.realtime_clients import Socket, serve, websocket
from tests.storage.conftest import BACKENDS, backend_settings, postgres_url

__all__ = ["postgres_url"]

NOTE = "VIP-note"


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return backend_settings(request, tmp_path)


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _window(tenant: Tenant, mode: str, **fields: Any) -> dict[str, Any]:
    response = await tenant.client.post(f"/{tenant.account_id}/liveoperator/{mode}", data=fields)
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    return body


async def _note(tenant: Tenant, convo: str, token: str) -> None:
    response = await tenant.client.post(
        "/api/v1/operator/note",
        json={"conversation_id": convo, "content": NOTE},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text


async def _token(tenant: Tenant) -> str:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    token: str = response.json()["token"]
    return token


async def _reply(tenant: Tenant, convo: str, text: str) -> None:
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message=text)


async def _messages(ws: Socket, count: int) -> list[dict[str, Any]]:
    """The next ``count`` message:new frames (the frame's seq beside its message)."""
    got = []
    while len(got) < count:
        frame = await ws.recv()
        assert NOTE not in orjson.dumps(frame).decode()
        if frame["type"] == "message:new":
            got.append(frame)
    return got


def _seqs(frames: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(f["seq"], f["data"]["seq"], f["data"]["message"]) for f in frames]


async def _two_notes_between(tenant: Tenant) -> tuple[str, str]:
    """one (visitor), two notes, two (operator), three (visitor, through postmessage, whose
    answer shows its visitor seq)."""
    first = await _window(tenant, "postmessage", message="one")
    convo: str = first["convoID"]
    assert first["message"]["seq"] == 1
    token = await _token(tenant)
    await _note(tenant, convo, token)
    await _note(tenant, convo, token)
    await _reply(tenant, convo, "two")
    third = await _window(tenant, "postmessage", convoID=convo, message="three")
    assert third["message"]["seq"] == 3
    return convo, token


async def test_notes_do_not_show_through_seq_gaps(base: str, tenant: Tenant) -> None:
    convo, token = await _two_notes_between(tenant)

    polled = await _window(tenant, "chatpoll", convoID=convo, afterSeq=0)
    assert [(m["seq"], m["message"]) for m in polled["messages"]] == [
        (1, "one"),
        (2, "two"),
        (3, "three"),
    ]
    after_one = await _window(tenant, "chatpoll", convoID=convo, afterSeq=1)
    assert [m["seq"] for m in after_one["messages"]] == [2, 3]
    assert (await _window(tenant, "chatpoll", convoID=convo, afterSeq=3))["messages"] == []
    by_time = await _window(tenant, "chatpoll", convoID=convo, since=0)
    assert [m["seq"] for m in by_time["messages"]] == [1, 2, 3]
    assert NOTE not in orjson.dumps([polled, by_time]).decode()

    url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
    async with websocket(url) as ws:
        await ws.send(type="hello", convoID=convo, seq=0)
        ready = await ws.until("ready")
        assert ready["seq"] == 3
        assert _seqs(await _messages(ws, 3)) == [(1, 1, "one"), (2, 2, "two"), (3, 3, "three")]
        await _note(tenant, convo, token)
        await _reply(tenant, convo, "four")
        assert _seqs(await _messages(ws, 1)) == [(4, 4, "four")]
        await ws.send(type="send", message="five", clientMsgID="five-1")
        ack = await ws.until("ack")
        assert ack["seq"] == 5
        assert _seqs(await _messages(ws, 1)) == [(5, 5, "five")]

    # Resume after a reconnect: exactly what came after the cursor.
    await _note(tenant, convo, token)
    await _reply(tenant, convo, "six")
    async with websocket(url) as ws:
        await ws.send(type="hello", convoID=convo, seq=4)
        assert (await ws.until("ready"))["seq"] == 6
        assert _seqs(await _messages(ws, 2)) == [(5, 5, "five"), (6, 6, "six")]
        await _reply(tenant, convo, "seven")
        assert _seqs(await _messages(ws, 1)) == [(7, 7, "seven")]
    async with websocket(url) as ws:
        await ws.send(type="hello", convoID=convo, seq=99)
        assert (await ws.until("reset"))["seq"] == 7

    # The operators' surfaces keep the message seqs, notes included.
    history = await tenant.ok("gethistory", convoID=convo)
    assert [m["seq"] for m in history["messages"]] == [1, 4, 5, 7, 8, 10, 11]
    assert history["conversation"]["lastSeq"] == 11


async def test_a_repeated_send_answers_with_the_visitor_seq(tenant: Tenant) -> None:
    convo, _ = await _two_notes_between(tenant)
    fields = {"convoID": convo, "message": "again", "clientMsgID": "again-1"}
    first = await _window(tenant, "postmessage", **fields)
    repeated = await _window(tenant, "postmessage", **fields)
    assert repeated["duplicate"] is True
    assert first["message"]["seq"] == repeated["message"]["seq"] == 4


# What migration 0008 adds, taken away again to make a store from before it, by dialect.
UNDO_0008 = (
    "DROP INDEX messages_visitor_seq",
    "ALTER TABLE messages DROP COLUMN visitor_seq",
    "ALTER TABLE conversations DROP COLUMN visitor_last_seq",
    "DELETE FROM schema_migrations WHERE version = 8",
)
UNDO_0008_SQLITE = ("DROP TRIGGER messages_visitor_seq_for_old_writers", *UNDO_0008)
UNDO_0008_POSTGRES = (
    "DROP TRIGGER messages_visitor_seq_for_old_writers ON messages",
    "DROP FUNCTION messages_visitor_seq_for_old_writers",
    *UNDO_0008,
)


async def _execute(database_url: str, *statements: str) -> None:
    """Runs ``statements`` on the store's database directly, outside the app."""
    if database_url.startswith("sqlite:///"):
        path = database_url.removeprefix("sqlite:///")
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
            for statement in statements:
                db.execute(statement.replace("$", "?"))
        return
    conn = await asyncpg.connect(database_url)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def _undo_0008(database_url: str) -> None:
    sqlite = database_url.startswith("sqlite:///")
    await _execute(database_url, *(UNDO_0008_SQLITE if sqlite else UNDO_0008_POSTGRES))


async def test_migration_0008_numbers_existing_messages_for_the_visitor(
    tenant: Tenant, settings: Settings
) -> None:
    convo, token = await _two_notes_between(tenant)
    await _note(tenant, convo, token)
    await _undo_0008(settings.database_url)
    store = create_store(settings.database_url)
    await store.open()
    try:
        found = await store.read_conversation(tenant.account_id, convo, visitor_seqs=True)
        assert found is not None
        conversation, messages = found
        assert [(m.visitor_seq, m.text) for m in messages] == [
            (1, "one"),
            (2, "two"),
            (3, "three"),
        ]
        assert conversation.visitor_last_seq == 3 and conversation.last_seq == 6
        everything = await store.list_messages(tenant.account_id, convo)
        assert [m.visitor_seq for m in everything] == [1, None, None, 2, 3, None]
    finally:
        await store.close()


async def test_messages_the_previous_release_writes_get_visitor_seqs(
    base: str, tenant: Tenant, settings: Settings
) -> None:
    """During a rolling update a process of the previous release inserts messages without a
    visitor seq (its column list has none): the chat window still shows them, numbered."""
    convo, _ = await _two_notes_between(tenant)
    # As the previous release writes a visitor message: its conversation update, then the row.
    await _execute(
        settings.database_url,
        f"UPDATE conversations SET last_seq = 6 WHERE id = '{convo}'",
        "INSERT INTO messages (convo_id, seq, id, account_id, sender, text, created, private)"
        f" VALUES ('{convo}', 6, 'old-writer-1', '{tenant.account_id}', 'visitor', 'from the"
        " old release', 9999999999.0, FALSE)",
    )
    polled = await _window(tenant, "chatpoll", convoID=convo, afterSeq=3)
    assert [(m["seq"], m["message"]) for m in polled["messages"]] == [(4, "from the old release")]
    await _reply(tenant, convo, "after it")
    polled = await _window(tenant, "chatpoll", convoID=convo, afterSeq=4)
    assert [(m["seq"], m["message"]) for m in polled["messages"]] == [(5, "after it")]
