"""The JSON Lines format of ``liveop export`` and ``liveop import``.

One row per line, ``{"table": "messages", "row": {"convo_id": ..., "seq": 1, ...}}``, tables in
``storage.base.TABLES`` order. orjson writes floats in their shortest exact form, so times
survive the trip bit for bit; booleans and nulls stay JSON booleans and nulls.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from storage.base import InvalidRow, Store, row_values


class ImportFailed(ValueError):
    """A line of the input is not a row: the message names the line."""


async def export_to(store: Store, output: Path | None) -> int:
    """Writes every row of ``store`` to ``output`` (stdout when None); returns how many.

    A file is written beside its destination and renamed into place once complete, so an
    interrupted export never leaves a truncated file that would import as a smaller
    installation.
    """
    if output is None:
        return await _write_rows(store, sys.stdout.buffer)
    partial = output.with_name(output.name + ".partial")
    try:
        with partial.open("wb") as handle:
            count = await _write_rows(store, handle)
            handle.flush()
            os.fsync(handle.fileno())
        partial.replace(output)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
    return count


async def _write_rows(store: Store, handle: IO[bytes]) -> int:
    count = 0
    async for table, row in store.export_rows():
        handle.write(orjson.dumps({"table": table, "row": row}) + b"\n")
        count += 1
    handle.flush()
    return count


async def import_from(store: Store, source: Path | None) -> int:
    """Loads the rows of ``source`` (stdin when None) into the empty ``store``, all or
    nothing; returns how many."""
    if source is None:
        return await store.import_rows(_rows(sys.stdin.buffer))
    with source.open("rb") as handle:
        return await store.import_rows(_rows(handle))


def _rows(lines: IO[bytes]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parses lazily, so the store reads the input as it inserts; a bad line raises
    ImportFailed, which aborts the import's transaction."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            parsed = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ImportFailed(f"line {number}: not JSON ({exc})") from None
        if (
            not isinstance(parsed, dict)
            or set(parsed) != {"table", "row"}
            or not isinstance(parsed["table"], str)
            or not isinstance(parsed["row"], dict)
        ):
            raise ImportFailed(f'line {number}: expected {{"table": NAME, "row": {{...}}}}')
        try:
            # Checked here as well as by the store, which cannot say which line was wrong.
            table, values = row_values(parsed["table"], parsed["row"])
        except InvalidRow as exc:
            raise ImportFailed(f"line {number}: {exc}") from None
        for column, value in zip(table.column_names, values, strict=True):
            problem = _unstorable(value)
            if problem:
                raise ImportFailed(f"line {number}: {table.name}.{column}: {problem}")
        yield parsed["table"], parsed["row"]


def _unstorable(value: object) -> str | None:
    """Why some backend cannot hold ``value``: SQLite stores a NUL that PostgreSQL refuses,
    and JSON reads integers beyond the 64 bits every backend stores."""
    if isinstance(value, str) and "\x00" in value:
        return "contains a NUL character, which PostgreSQL cannot store"
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        return f"{value} is beyond 64 bits"
    return None
