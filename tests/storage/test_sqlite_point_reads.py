"""SQLite's point reads: a conversation and a few messages read on the event loop's thread
(SqlStore._point_read), everything else on the reader pool."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from storage.sql import Conn
from storage.sqlite import SQLiteStore


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    backend = SQLiteStore(str(tmp_path / "point.db"))
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


async def _thread_of_read(store: SQLiteStore, **window: Any) -> str:
    account = secrets.token_hex(8)
    await store.create_account(account, "acme", secrets.token_hex(32))
    seen: list[str] = []
    read = store._read

    async def recording_read(op: Any) -> Any:
        seen.append("pool")
        return await read(op)

    store._read = recording_read  # type: ignore[method-assign]
    try:
        await store.read_conversation(account, "no-such-convo", **window)
    finally:
        del store._read
    return seen[0] if seen else "loop"


async def test_a_poll_reads_on_the_loop_and_a_scan_on_the_pool(store: SQLiteStore) -> None:
    assert await _thread_of_read(store, after_seq=3, visitor_view=True, visitor_seqs=True) == "loop"
    assert await _thread_of_read(store, limit=50, newest=True) == "loop"
    # A time filter or notes to skip may walk the whole conversation; so may a large page.
    assert await _thread_of_read(store, after_created=5.0, newest=True) == "pool"
    assert await _thread_of_read(store, after_seq=3, visitor_view=True) == "pool"
    assert await _thread_of_read(store, after_seq=3, limit=10_000) == "pool"


async def test_a_point_read_that_meets_a_lock_moves_to_the_pool(store: SQLiteStore) -> None:
    threads: list[str] = []

    async def op(conn: Conn) -> int:
        threads.append(threading.current_thread().name)
        if len(threads) == 1:
            locked = sqlite3.OperationalError("database is locked")
            # SQLITE_BUSY_RECOVERY: an extended code whose primary code is SQLITE_BUSY.
            locked.sqlite_errorcode = sqlite3.SQLITE_BUSY | (1 << 8)
            raise locked
        row = await conn.fetchrow("SELECT 1 AS one")
        assert row is not None
        return int(row["one"])

    assert await store._point_read(op) == 1
    assert threads[0] == threading.current_thread().name
    assert threads[1].startswith("liveop-read")


async def test_any_other_error_of_a_point_read_is_raised(store: SQLiteStore) -> None:
    async def op(conn: Conn) -> None:
        await conn.fetch("SELECT no_such_column FROM conversations")

    with pytest.raises(sqlite3.OperationalError, match="no_such_column"):
        await store._point_read(op)
