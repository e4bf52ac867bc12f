"""SQLite backend: the embedded default.

One writer thread owns the only writing connection and commits in groups: it takes every write
waiting in line, runs them in one transaction, commits once and only then answers the callers.
That keeps ``synchronous=FULL`` durability (a success means the commit reached the disk) at the
cost of one fsync per group rather than one per message. A write that raises must roll back
only itself: the group then runs again from the start with each write in its own SAVEPOINT
(operations are pure functions of the database, as PostgreSQL's retries already require).
Reads run on a small pool of reader connections, which WAL lets proceed while the writer
commits.

The operations themselves are storage/sql.py's. sqlite3 is synchronous, so an operation's
coroutine never suspends here: the thread that holds the connection runs it to completion in
one step (``_run``), on the writer or on its reader.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import queue
import re
import sqlite3
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from storage import outbound as _outbound
from storage.base import TRANSFER_BATCH_ROWS
from storage.migrations import load_migrations
from storage.outbound import Claim, OutboundJob
from storage.sql import Conn, Dialect, Op, SqlStore

T = TypeVar("T")

# Writes that may wait for the writer thread at once. Callers past this wait on the semaphore,
# which pushes back on request handlers instead of growing a queue without bound.
MAX_PENDING_WRITES = 1024
# The most writes one group commit takes; bounds how long the first caller of a group waits.
MAX_GROUP = 256
# Readers in the pool. Two matches this machine's cores; SQLite releases the GIL while it works.
READERS = 2
# How long a connection waits on a lock held by another process before giving up.
BUSY_TIMEOUT_MS = 5000
# Distinct statements whose renumbered text is kept: the fixed ones plus the inbox's filter
# combinations, with room to spare.
STATEMENT_CACHE = 1024

# One writer commits at a time, so no statement needs a locking clause; sqlite3 raises one
# error for every constraint; and SQLite's LIKE already ignores case (of ASCII letters).
DIALECT = Dialect(
    "LIKE",
    unique_violation=sqlite3.IntegrityError,
    foreign_key_violation=sqlite3.IntegrityError,
    integrity_violation=sqlite3.IntegrityError,
    # SQLite's CAST truncates, which for a non-negative value is rounding down.
    round_down="CAST({} AS INTEGER)",
)

_PLACEHOLDER = re.compile(r"\$(\d+)")
# Rows due for a claim; the writer's BEGIN IMMEDIATE holds off the writers of other processes
# sharing the file, so no two claims ever see the same row due.
_DUE_SQL = (
    f"{_outbound.JOB_SELECT.format(rows='outbound')} WHERE o.channel IN ({{channels}})"
    f" AND {_outbound.DUE_WHERE.format(now='$1')} AND {_outbound.BOUND_WHERE}"
    f" ORDER BY {_outbound.DUE_ORDER} LIMIT $2"
)
_CLAIM_SQL = (
    "UPDATE outbound SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
    " WHERE convo_id = $3 AND seq = $4"
)


# The column names of each statement's rows, which cursor.description builds anew every time.
# Keyed by the statement's text: no statement selects `*`, so its text fixes its columns.
_NAMES: dict[str, tuple[str, ...]] = {}


def _names(sql: str, cursor: sqlite3.Cursor) -> tuple[str, ...]:
    names = _NAMES.get(sql)
    if names is None:
        if len(_NAMES) >= STATEMENT_CACHE:
            _NAMES.clear()
        names = _NAMES[sql] = tuple(d[0] for d in cursor.description)
    return names


@functools.lru_cache(maxsize=STATEMENT_CACHE)
def _numbered(sql: str) -> str:
    """``$1`` as SQLite's ``?1``: the same numbered placeholder, another spelling."""
    return _PLACEHOLDER.sub(r"?\1", sql)


class _Conn:
    """A sqlite3 connection as a Conn; every call has completed when it returns."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    async def fetch(self, query: str, *args: Any) -> list[dict[str, Any]]:
        cursor = self._db.execute(_numbered(query), args)
        names = _names(query, cursor)
        return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        cursor = self._db.execute(_numbered(query), args)
        row = cursor.fetchone()
        return None if row is None else dict(zip(_names(query, cursor), row, strict=False))

    async def execute(self, query: str, *args: Any) -> None:
        self._db.execute(_numbered(query), args)

    async def executemany(self, command: str, args: Iterable[Sequence[Any]]) -> None:
        self._db.executemany(_numbered(command), args)

    def begin(self) -> None:
        self._db.execute("BEGIN")

    def rollback(self) -> None:
        self._db.execute("ROLLBACK")


def _run(op: Op[T], conn: Conn) -> T:
    """Runs ``op`` to completion in the calling thread, which holds ``conn``."""
    coroutine = op(conn)
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: T = done.value
        return result
    coroutine.close()
    raise RuntimeError("a store operation awaited something other than its SQLite connection")


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop
    # Never run twice (it consumes an iterator): its group takes a savepoint per write.
    once: bool


class _Writer:
    """The single writing connection and its group-commit thread."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._slots = asyncio.Semaphore(MAX_PENDING_WRITES)
        self._thread = threading.Thread(target=self._run, name="liveop-sqlite-writer", daemon=True)
        self._ready = threading.Event()
        self._failure: BaseException | None = None

    def start(self, migrate: Callable[[sqlite3.Connection], None]) -> None:
        self._migrate = migrate
        self._thread.start()
        self._ready.wait()
        if self._failure is not None:
            raise self._failure

    def stop(self) -> None:
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()

    async def run(self, fn: Callable[[sqlite3.Connection], T], *, once: bool = False) -> T:
        """Runs ``fn`` in the next group commit; returns after COMMIT. Without ``once``, ``fn``
        may run twice, the first run rolled back (see _commit_group)."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()
            self._jobs.put(_Job(fn, future, loop, once))
            return await future

    def _run(self) -> None:
        try:
            conn = _connect(self._path)
            self._migrate(conn)
            # A write run again in a savepoint (see _commit_group) has every stored page it
            # changes copied to a sub-journal; past 64 KiB SQLite spills that to a new
            # temporary file (/var/tmp/etilqs_*), written page by page, once per group. In
            # memory it is one copy, dropped when the write is released; a write changes a
            # handful of pages. Set after the migrations, whose backfills may change a table.
            conn.execute("PRAGMA temp_store = MEMORY")
        except BaseException as exc:  # reported to start() in the caller's thread
            self._failure = exc
            self._ready.set()
            return
        self._ready.set()
        with conn:
            while True:
                first = self._jobs.get()
                if first is None:
                    return
                group = [first]
                while len(group) < MAX_GROUP:
                    try:
                        job = self._jobs.get_nowait()
                    except queue.Empty:
                        break
                    if job is None:
                        self._jobs.put(None)
                        break
                    group.append(job)
                self._commit_group(conn, group)

    @staticmethod
    def _commit_group(conn: sqlite3.Connection, group: list[_Job]) -> None:
        try:
            conn.execute("BEGIN IMMEDIATE")
            if any(job.once for job in group):
                outcomes = _each_of(conn, group)
            else:
                outcomes = _all_of(conn, group)
                if not outcomes[-1][0]:
                    # A write raised, its statements mixed with the others': start over, each
                    # write in a savepoint so that one rolls back alone (alone, it needs
                    # none). A savepoint per write on every group cost a sixth of a write's
                    # statement CPU (docs/benchmarks.md), for a refusal that is rare.
                    conn.execute("ROLLBACK")
                    conn.execute("BEGIN IMMEDIATE")
                    outcomes = outcomes if len(group) == 1 else _each_of(conn, group)
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(group)
        # One wake-up per event loop for the whole group: each call_soon_threadsafe writes to
        # the loop's self-pipe, and a wake-up per write had the loop and this thread trade the
        # GIL once per message.
        settled: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], bool, Any]]] = {}
        for job, (ok, value) in zip(group, outcomes, strict=True):
            settled.setdefault(job.loop, []).append((job.future, ok, value))
        for loop, outcomes_of_loop in settled.items():
            loop.call_soon_threadsafe(_settle, outcomes_of_loop)


def _all_of(conn: sqlite3.Connection, group: list[_Job]) -> list[tuple[bool, Any]]:
    """The group's outcomes, up to the first write that raised."""
    outcomes: list[tuple[bool, Any]] = []
    for job in group:
        try:
            outcomes.append((True, job.fn(conn)))
        except Exception as exc:
            outcomes.append((False, exc))
            break
    return outcomes


def _each_of(conn: sqlite3.Connection, group: list[_Job]) -> list[tuple[bool, Any]]:
    """The group's outcomes, each write in its own savepoint."""
    outcomes: list[tuple[bool, Any]] = []
    for job in group:
        conn.execute("SAVEPOINT job")
        try:
            outcomes.append((True, job.fn(conn)))
        except Exception as exc:
            conn.execute("ROLLBACK TO job")
            outcomes.append((False, exc))
        conn.execute("RELEASE job")
    return outcomes


def _settle(outcomes: list[tuple[asyncio.Future[Any], bool, Any]]) -> None:
    for future, ok, value in outcomes:
        if future.cancelled():
            continue
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)


class SQLiteStore(SqlStore):
    """Store on one SQLite file (see the module docstring for the threading model)."""

    def __init__(self, path: str) -> None:
        super().__init__(DIALECT)
        self._path = path
        self._writer = _Writer(path)
        self._readers: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._reader_lock = threading.Lock()

    async def open(self) -> None:
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(self._writer.start, _migrate)
        self._readers = ThreadPoolExecutor(max_workers=READERS, thread_name_prefix="liveop-read")

    async def close(self) -> None:
        if self._readers is not None:
            self._readers.shutdown(wait=True)
            self._readers = None
        await asyncio.to_thread(self._writer.stop)
        with self._reader_lock:
            for conn in self._reader_conns:
                conn.close()
            self._reader_conns.clear()

    async def _read(self, op: Op[T]) -> T:
        assert self._readers is not None, "store is not open"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._in_reader, op)

    async def _read_consistent(self, op: Op[T]) -> T:
        assert self._readers is not None, "store is not open"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._in_reader, op, True)

    def _in_reader(self, op: Op[T], consistent: bool = False) -> T:
        conn: _Conn | None = getattr(self._local, "conn", None)
        if conn is None:
            db = _connect(self._path)
            with self._reader_lock:
                self._reader_conns.append(db)
            conn = self._local.conn = _Conn(db)
        if not consistent:
            return _run(op, conn)
        # Outside a transaction each statement reads the newest commit; one read transaction
        # keeps the snapshot of its first statement to the end (WAL).
        conn.begin()
        try:
            return _run(op, conn)
        finally:
            conn.rollback()

    async def _write(self, op: Op[T]) -> T:
        return await self._writer.run(lambda db: _run(op, _Conn(db)))

    async def _write_once(self, op: Op[T]) -> T:
        # One job of the writer thread: an import's rows are read in that thread, which may
        # block on the file they come from without holding up the event loop.
        return await self._writer.run(lambda db: _run(op, _Conn(db)), once=True)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Callable[[str], AsyncIterator[dict[str, Any]]]]:
        # A connection of its own, holding one read transaction from the first query to the
        # last: WAL keeps that snapshot while the writer goes on committing.
        db = await asyncio.to_thread(_connect, self._path)

        async def stream(sql: str) -> AsyncIterator[dict[str, Any]]:
            cursor = await asyncio.to_thread(db.execute, sql)
            names = [d[0] for d in cursor.description]
            while batch := await asyncio.to_thread(cursor.fetchmany, TRANSFER_BATCH_ROWS):
                for row in batch:
                    yield dict(zip(names, row, strict=True))

        try:
            await asyncio.to_thread(db.execute, "BEGIN")
            yield stream
        finally:
            await asyncio.to_thread(db.close)

    def _claim(self, claim: Claim) -> Op[list[OutboundJob]]:
        first_unbound = len(claim.channels) + 3
        marks = ", ".join(f"${i}" for i in range(3, first_unbound))
        unbound = ", ".join(
            f"${i}" for i in range(first_unbound, first_unbound + len(claim.unbound))
        )
        due = _DUE_SQL.format(channels=marks, unbound=unbound)

        async def op(conn: Conn) -> list[OutboundJob]:
            found = await conn.fetch(due, claim.now, claim.limit, *claim.channels, *claim.unbound)
            jobs = [_outbound.job(row) for row in found]
            await conn.executemany(
                _CLAIM_SQL, [(claim.worker_id, claim.lease_until, j.convo_id, j.seq) for j in jobs]
            )
            return [dataclasses.replace(j, attempt=j.attempt + 1) for j in jobs]

        return op


def _migrate(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)")
    applied = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
    for version, sql in load_migrations("sqlite"):
        if version in applied:
            continue
        # executescript commits first, so the migration and its bookkeeping share one BEGIN.
        conn.executescript(
            f"BEGIN IMMEDIATE; {sql}\n;INSERT INTO schema_migrations (version) VALUES ({version});"
            " COMMIT;"
        )
