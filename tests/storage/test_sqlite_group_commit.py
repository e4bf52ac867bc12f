"""The SQLite writer's group commit: writes share one transaction, and one that raises rolls
back alone, whatever it wrote before raising."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from storage.sqlite import _Writer

Fn = Callable[[sqlite3.Connection], object]


def _schema(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE notes (text TEXT NOT NULL)")


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[_Writer]:
    found = _Writer(str(tmp_path / "group.db"))
    await asyncio.to_thread(found.start, _schema)
    try:
        yield found
    finally:
        await asyncio.to_thread(found.stop)


def _note(text: str) -> Fn:
    def fn(conn: sqlite3.Connection) -> str:
        conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))
        return text

    return fn


def _half_then_raise(conn: sqlite3.Connection) -> str:
    conn.execute("INSERT INTO notes (text) VALUES ('half')")
    raise RuntimeError("rule refused")


async def _in_one_group(writer: _Writer, jobs: list[tuple[Fn, bool]]) -> list[object]:
    """Runs ``jobs`` (fn, once) as one group: a first write holds the writer thread until
    they are all in line behind it."""
    release = threading.Event()
    held = asyncio.ensure_future(writer.run(lambda conn: release.wait()))
    runs = [asyncio.ensure_future(writer.run(fn, once=once)) for fn, once in jobs]
    await asyncio.sleep(0.05)  # every run() has put its job in line
    release.set()
    await held
    return list(await asyncio.gather(*runs, return_exceptions=True))


def _stored(tmp_path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(tmp_path / "group.db")) as db:
        return [text for (text,) in db.execute("SELECT text FROM notes ORDER BY rowid")]


async def test_a_write_that_raises_after_writing_rolls_back_alone(
    writer: _Writer, tmp_path: Path
) -> None:
    outcomes = await _in_one_group(
        writer,
        [(_note("before"), False), (_half_then_raise, False), (_note("after"), False)],
    )
    assert outcomes[0] == "before" and outcomes[2] == "after"
    assert isinstance(outcomes[1], RuntimeError)
    assert _stored(tmp_path) == ["before", "after"]


async def test_a_write_alone_that_raises_writes_nothing(writer: _Writer, tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        await writer.run(_half_then_raise)
    await writer.run(_note("next"))
    assert _stored(tmp_path) == ["next"]


async def test_a_write_that_must_run_once_is_never_run_again(
    writer: _Writer, tmp_path: Path
) -> None:
    runs: list[int] = []

    def once(conn: sqlite3.Connection) -> str:
        runs.append(1)
        conn.execute("INSERT INTO notes (text) VALUES ('imported')")
        return "imported"

    outcomes = await _in_one_group(
        writer, [(once, True), (_half_then_raise, False), (_note("after"), False)]
    )
    assert outcomes[0] == "imported" and outcomes[2] == "after"
    assert isinstance(outcomes[1], RuntimeError)
    assert runs == [1]
    assert _stored(tmp_path) == ["imported", "after"]


async def test_writes_that_succeed_run_once_in_one_transaction(
    writer: _Writer, tmp_path: Path
) -> None:
    runs: list[str] = []

    def counted(text: str) -> Fn:
        def fn(conn: sqlite3.Connection) -> str:
            runs.append(text)
            conn.execute("INSERT INTO notes (text) VALUES (?)", (text,))
            return text

        return fn

    outcomes = await _in_one_group(writer, [(counted(t), False) for t in ("a", "b", "c")])
    assert outcomes == ["a", "b", "c"]
    assert runs == ["a", "b", "c"]
    assert _stored(tmp_path) == ["a", "b", "c"]
