"""SQLite statement CPU per write, apart from the Python around it.

    python -m bench.statement_replay record FILE        # write_bench's loop, statements kept
    PYTHONPATH=../other-checkout python bench/statement_replay.py record FILE   # other code
    python -m bench.statement_replay replay FILE [--runs 3] [--by-statement]

``record`` runs write_bench's loop once (200 conversations, 20 rounds: 8,000 writes through the
engine) and keeps every statement the SQLite writer thread ran, with its parameters, in FILE.
``replay`` runs them again, in order, on a fresh database in one thread: the setup untimed,
then the measured writes, and prints the thread's CPU per write. With ``--by-statement``
each statement's share is timed too (two clock reads per statement, so the total rises).

Why: write_bench's CPU per write mixes what SQLite does with the Python that decides, renders
and numbers each write, and its runs spread by a tenth. A replay has no Python between the
statements but the loop that feeds them, and no event loop or second thread beside it, so
recordings of two commits, replayed in turn, say how much of a difference is the statements
(the schema, its indexes, the rows' size, how many statements a write takes) and how much is
Python. Replays spread by about 8% here; compare medians of several.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import pickle
import re
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:  # run by path (another checkout first on PYTHONPATH, whose bench/ may differ): the sibling
    import write_bench  # type: ignore[import-not-found, unused-ignore]
except ImportError:
    from bench import write_bench  # type: ignore[no-redef, unused-ignore]

WRITER_THREAD: str = write_bench.WRITER_THREAD

# One recorded call: "execute", "executemany" or "executescript", its SQL, its parameters
# (a tuple, or a list of tuples for executemany).
Call = tuple[str, str, Any]


@dataclass
class Recording:
    calls: list[Call]
    measured_from: int  # calls before this index are the setup
    writes: int


def record(path: Path) -> None:
    calls: list[Call] = []

    def writer_thread() -> bool:
        return threading.current_thread().name == WRITER_THREAD

    class Recorder(sqlite3.Connection):
        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            if writer_thread():
                calls.append(("execute", sql, tuple(parameters)))
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
            rows = [tuple(p) for p in parameters]
            if writer_thread():
                calls.append(("executemany", sql, rows))
            return super().executemany(sql, rows)

        def executescript(self, script: str, /) -> sqlite3.Cursor:
            if writer_thread():
                calls.append(("executescript", script, ()))
            return super().executescript(script)

    connect = sqlite3.connect

    def recording_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        db: sqlite3.Connection = connect(*args, **{**kwargs, "factory": Recorder})
        return db

    measured_from: list[int] = []
    sqlite3.connect = recording_connect  # type: ignore[assignment]
    try:
        run = asyncio.run(write_bench.run_once(200, 20, lambda: measured_from.append(len(calls))))
    finally:
        sqlite3.connect = connect
    with path.open("wb") as out:
        # Plain values, not the Recording class: a file recorded by path (another checkout)
        # then loads under -m, where the class has another module name.
        pickle.dump((calls, measured_from[0], run.writes), out)
    print(
        f"{len(calls) - measured_from[0]:,} statements for {run.writes:,} writes"
        f" (write_bench: process {run.process_us:.0f} us, writer {run.writer_us:.0f} us per write)"
    )


def _call(db: sqlite3.Connection, call: Call) -> None:
    kind, sql, parameters = call
    if kind == "execute":
        db.execute(sql, parameters).fetchall()
    elif kind == "executemany":
        db.executemany(sql, parameters)
    else:
        db.executescript(sql)


def replay_once(recording: Recording, by_statement: bool) -> float:
    """CPU µs per write of the measured calls; with ``by_statement``, prints each one's."""
    with tempfile.TemporaryDirectory(prefix="liveop-replay-") as data_dir:
        db = sqlite3.connect(
            str(Path(data_dir) / "replay.db"), isolation_level=None, check_same_thread=False
        )
        try:
            for call in recording.calls[: recording.measured_from]:
                _call(db, call)
            measured = recording.calls[recording.measured_from :]
            shares: dict[str, list[float]] = collections.defaultdict(lambda: [0, 0.0])
            start = time.thread_time()
            for call in measured:
                if by_statement:
                    began = time.thread_time()
                    _call(db, call)
                    share = shares[re.sub(r"\s+", " ", call[1])[:72]]
                    share[0] += 1
                    share[1] += time.thread_time() - began
                else:
                    _call(db, call)
            cpu_us = (time.thread_time() - start) * 1e6 / recording.writes
        finally:
            db.close()
    for sql, (count, seconds) in sorted(shares.items(), key=lambda kv: -kv[1][1])[:16]:
        print(
            f"  {seconds * 1e6 / recording.writes:7.1f} us"
            f" {count / recording.writes:5.2f} per write  {sql}"
        )
    return cpu_us


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("record", "replay"))
    parser.add_argument("file", type=Path)
    parser.add_argument("--runs", type=write_bench.positive, default=3, help="replays")
    parser.add_argument("--by-statement", action="store_true", help="time each statement")
    args = parser.parse_args(argv)
    if args.action == "record":
        record(args.file)
        return
    with args.file.open("rb") as found:
        recording = Recording(*pickle.load(found))
    per_write = len(recording.calls) - recording.measured_from
    print(f"{per_write / recording.writes:.2f} statements per write")
    runs = []
    for _ in range(args.runs):
        runs.append(replay_once(recording, args.by_statement))
        print(f"statement CPU per write {runs[-1]:.1f} us")
    print(f"median of {len(runs)}: {statistics.median(runs):.1f} us per write")


if __name__ == "__main__":
    main()
