"""SQLite backend: the embedded default.

One writer thread owns the only writing connection and commits in groups: it takes every write
waiting in line, runs each inside its own SAVEPOINT (a decision that raises rolls back only
itself), commits once and only then answers the callers. That keeps ``synchronous=FULL``
durability (a success means the commit reached the disk) at the cost of one fsync per group
rather than one per message. Reads run on a small pool of reader connections, which WAL lets
proceed while the writer commits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import queue
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from storage import outbound as _outbound
from storage.base import (
    NO_TEAM,
    SEQ_END,
    TABLES,
    TRANSFER_BATCH_ROWS,
    CannedPatch,
    Decide,
    DuplicateEmail,
    HandoverFigures,
    InboxQuery,
    InvalidRow,
    OperatorPatch,
    RatingFigures,
    ReportQuery,
    ResponseFigures,
    SitePatch,
    StoreNotEmpty,
    Table,
    TeamPatch,
    UnknownReference,
    VolumeFigures,
    patch_values,
    row_values,
)
from storage.inbox_sql import InboxSql
from storage.migrations import load_migrations
from storage.models import (
    DEFAULT_SITE_ID,
    Account,
    CannedResponse,
    Committed,
    Conversation,
    Event,
    EventDetail,
    Message,
    Operator,
    OperatorCredentials,
    Site,
    Status,
    Team,
    WidgetPosition,
    default_site,
)
from storage.outbound import OutboundChannel, OutboundJob
from storage.reports_sql import Report, ReportsSql
from storage.rows import CONVO_COLS as _CONVO_COLS
from storage.rows import CONVO_SET_COLS as _CONVO_SET_COLS
from storage.rows import CONVO_WIDTH as _CONVO_WIDTH
from storage.rows import MSG_COLS as _MSG_COLS
from storage.rows import MSG_WIDTH as _MSG_WIDTH
from storage.rows import OPERATOR_COLS as _OPERATOR_COLS
from storage.rows import SITE_COLS as _SITE_COLS
from storage.rows import convo as _convo
from storage.rows import convo_params as _convo_params
from storage.rows import message as _message
from storage.rows import message_params as _message_params
from storage.rows import operator as _operator
from storage.rows import prefixed as _prefixed
from storage.rows import site as _site

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

_UPDATE_CONVO_SQL = (
    f"UPDATE conversations SET ({_CONVO_SET_COLS}) = ({', '.join('?' * (_CONVO_WIDTH - 2))})"
    " WHERE id = ?"
)
_INSERT_MSG_SQL = f"INSERT INTO messages ({_MSG_COLS}, account_id) VALUES ({'?, ' * _MSG_WIDTH}?)"
_INSERT_OUTBOUND_SQL = (
    f"INSERT INTO outbound ({_outbound.INSERT_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
)


def _connect(path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _next_id(conn: sqlite3.Connection, account_id: str, kind: str) -> int:
    row = conn.execute(
        "INSERT INTO counters (account_id, kind, last_id) VALUES (?, ?, 1)"
        " ON CONFLICT (account_id, kind) DO UPDATE SET last_id = last_id + 1 RETURNING last_id",
        (account_id, kind),
    ).fetchone()
    return int(row[0])


def _team_members(conn: sqlite3.Connection, account_id: str, team_id: int) -> tuple[int, ...]:
    rows = conn.execute(
        "SELECT operator_id FROM team_members WHERE account_id = ? AND team_id = ?"
        " ORDER BY operator_id",
        (account_id, team_id),
    ).fetchall()
    return tuple(r[0] for r in rows)


def _set_members(
    conn: sqlite3.Connection, account_id: str, team_id: int, member_ids: Iterable[int]
) -> None:
    conn.execute(
        "DELETE FROM team_members WHERE account_id = ? AND team_id = ?", (account_id, team_id)
    )
    try:
        conn.executemany(
            "INSERT INTO team_members (account_id, team_id, operator_id) VALUES (?, ?, ?)",
            [(account_id, team_id, m) for m in sorted(set(member_ids))],
        )
    except sqlite3.IntegrityError as exc:
        raise UnknownReference("a team member is not an operator of the account") from exc


def _patch(
    conn: sqlite3.Connection, table: str, account_id: str, row_id: int, values: dict[str, Any]
) -> bool:
    """Updates the given columns of one account-scoped row; True when the row exists."""
    sets = {k: v for k, v in values.items() if v is not None}
    exists = conn.execute(
        f"SELECT 1 FROM {table} WHERE account_id = ? AND id = ?", (account_id, row_id)
    ).fetchone()
    if exists and sets:
        assignments = ", ".join(f"{column} = ?" for column in sets)
        conn.execute(
            f"UPDATE {table} SET {assignments} WHERE account_id = ? AND id = ?",
            (*sets.values(), account_id, row_id),
        )
    return exists is not None


def _delete(conn: sqlite3.Connection, table: str, account_id: str, row_id: int) -> bool:
    cur = conn.execute(f"DELETE FROM {table} WHERE account_id = ? AND id = ?", (account_id, row_id))
    return cur.rowcount > 0


@dataclass
class _Job:
    fn: Callable[[sqlite3.Connection], Any]
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop


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

    async def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Runs ``fn`` in its own savepoint of the next group commit; returns after COMMIT."""
        async with self._slots:
            loop = asyncio.get_running_loop()
            future: asyncio.Future[T] = loop.create_future()
            self._jobs.put(_Job(fn, future, loop))
            return await future

    def _run(self) -> None:
        try:
            conn = _connect(self._path)
            self._migrate(conn)
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
        outcomes: list[tuple[bool, Any]] = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in group:
                conn.execute("SAVEPOINT job")
                try:
                    result = job.fn(conn)
                except Exception as exc:
                    conn.execute("ROLLBACK TO job")
                    outcomes.append((False, exc))
                else:
                    outcomes.append((True, result))
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            outcomes = [(False, exc)] * len(group)
        for job, (ok, value) in zip(group, outcomes, strict=True):
            job.loop.call_soon_threadsafe(_settle, job.future, ok, value)


def _settle(future: asyncio.Future[Any], ok: bool, value: Any) -> None:
    if future.cancelled():
        return
    if ok:
        future.set_result(value)
    else:
        future.set_exception(value)


class SQLiteStore:
    """Store on one SQLite file (see the module docstring for the threading model)."""

    def __init__(self, path: str) -> None:
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

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        assert self._readers is not None, "store is not open"
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, self._in_reader, fn)

    def _in_reader(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self._path)
            self._local.conn = conn
            with self._reader_lock:
                self._reader_conns.append(conn)
        return fn(conn)

    # the whole installation

    async def is_empty(self) -> bool:
        return await self._read(_is_empty)

    async def export_rows(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        # A connection of its own, holding one read transaction from the first table to the
        # last: WAL keeps that snapshot while the writer goes on committing.
        conn = await asyncio.to_thread(_connect, self._path)
        try:
            await asyncio.to_thread(conn.execute, "BEGIN")
            for table in TABLES:
                names = table.column_names
                cursor = await asyncio.to_thread(conn.execute, _select_all(table))
                while batch := await asyncio.to_thread(cursor.fetchmany, TRANSFER_BATCH_ROWS):
                    for row in batch:
                        yield table.name, _exported(table, dict(zip(names, row, strict=True)))
        finally:
            await asyncio.to_thread(conn.close)

    async def import_rows(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        # One job of the writer thread, so one transaction; the rows are read in that thread,
        # which may block on the file they come from without holding up the event loop.
        return await self._writer.run(lambda conn: _import(conn, rows))

    # accounts and keys

    async def create_account(self, account_id: str, name: str, api_key_hash: str) -> Account:
        def fn(conn: sqlite3.Connection) -> Account:
            created = time.time()
            conn.execute(
                "INSERT INTO accounts (id, name, created) VALUES (?, ?, ?)",
                (account_id, name, created),
            )
            conn.execute(
                "INSERT INTO api_keys (key_hash, account_id, created) VALUES (?, ?, ?)",
                (api_key_hash, account_id, created),
            )
            # The first site id of an account, through the same counter as every later site.
            site_id = _next_id(conn, account_id, "site")
            assert site_id == DEFAULT_SITE_ID
            _insert_site(conn, default_site(account_id, created))
            return Account(id=account_id, name=name, created=created)

        return await self._writer.run(fn)

    async def get_account(self, account_id: str) -> Account | None:
        def fn(conn: sqlite3.Connection) -> Account | None:
            row = conn.execute(
                "SELECT id, name, created FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return Account(id=row[0], name=row[1], created=row[2]) if row else None

        return await self._read(fn)

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        def fn(conn: sqlite3.Connection) -> str | None:
            row = conn.execute(
                "SELECT account_id FROM api_keys WHERE key_hash = ?", (api_key_hash,)
            ).fetchone()
            return str(row[0]) if row else None

        return await self._read(fn)

    # operators

    async def create_operator(
        self,
        account_id: str,
        name: str,
        email: str,
        password_hash: str,
        is_admin: bool,
        lang: str = "en",
    ) -> Operator:
        def fn(conn: sqlite3.Connection) -> Operator:
            operator_id = _next_id(conn, account_id, "operator")
            created = time.time()
            try:
                conn.execute(
                    "INSERT INTO operators (account_id, id, name, email, password_hash, is_admin,"
                    " created, lang) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (account_id, operator_id, name, email, password_hash, is_admin, created, lang),
                )
            except sqlite3.IntegrityError as exc:
                raise DuplicateEmail(email) from exc
            return Operator(account_id, operator_id, name, email, is_admin, created, lang)

        return await self._writer.run(fn)

    async def get_operator(self, account_id: str, operator_id: int) -> Operator | None:
        def fn(conn: sqlite3.Connection) -> Operator | None:
            row = conn.execute(
                f"SELECT {_OPERATOR_COLS} FROM operators WHERE account_id = ? AND id = ?",
                (account_id, operator_id),
            ).fetchone()
            return _operator(row) if row else None

        return await self._read(fn)

    async def get_credentials(self, email: str) -> OperatorCredentials | None:
        def fn(conn: sqlite3.Connection) -> OperatorCredentials | None:
            row = conn.execute(
                f"SELECT {_OPERATOR_COLS}, password_hash FROM operators WHERE email = ?",
                (email,),
            ).fetchone()
            return OperatorCredentials(_operator(row), row[-1]) if row else None

        return await self._read(fn)

    async def list_operators(self, account_id: str) -> list[Operator]:
        def fn(conn: sqlite3.Connection) -> list[Operator]:
            rows = conn.execute(
                f"SELECT {_OPERATOR_COLS} FROM operators WHERE account_id = ? ORDER BY id",
                (account_id,),
            ).fetchall()
            return [_operator(r) for r in rows]

        return await self._read(fn)

    async def update_operator(
        self, account_id: str, operator_id: int, patch: OperatorPatch
    ) -> Operator | None:
        def fn(conn: sqlite3.Connection) -> Operator | None:
            try:
                found = _patch(conn, "operators", account_id, operator_id, patch_values(patch))
            except sqlite3.IntegrityError as exc:
                raise DuplicateEmail(patch.email or "") from exc
            if not found:
                return None
            row = conn.execute(
                f"SELECT {_OPERATOR_COLS} FROM operators WHERE account_id = ? AND id = ?",
                (account_id, operator_id),
            ).fetchone()
            return _operator(row)

        return await self._writer.run(fn)

    async def delete_operator(self, account_id: str, operator_id: int) -> bool:
        return await self._writer.run(
            lambda conn: _delete(conn, "operators", account_id, operator_id)
        )

    # teams

    async def create_team(self, account_id: str, name: str, member_ids: Sequence[int]) -> Team:
        def fn(conn: sqlite3.Connection) -> Team:
            team_id = _next_id(conn, account_id, "team")
            conn.execute(
                "INSERT INTO teams (account_id, id, name) VALUES (?, ?, ?)",
                (account_id, team_id, name),
            )
            _set_members(conn, account_id, team_id, member_ids)
            return Team(account_id, team_id, name, _team_members(conn, account_id, team_id))

        return await self._writer.run(fn)

    async def list_teams(self, account_id: str) -> list[Team]:
        def fn(conn: sqlite3.Connection) -> list[Team]:
            rows = conn.execute(
                "SELECT id, name FROM teams WHERE account_id = ? ORDER BY id", (account_id,)
            ).fetchall()
            return [
                Team(account_id, r[0], r[1], _team_members(conn, account_id, r[0])) for r in rows
            ]

        return await self._read(fn)

    async def update_team(self, account_id: str, team_id: int, patch: TeamPatch) -> Team | None:
        def fn(conn: sqlite3.Connection) -> Team | None:
            if not _patch(conn, "teams", account_id, team_id, {"name": patch.name}):
                return None
            if patch.member_ids is not None:
                _set_members(conn, account_id, team_id, patch.member_ids)
            row = conn.execute(
                "SELECT name FROM teams WHERE account_id = ? AND id = ?", (account_id, team_id)
            ).fetchone()
            return Team(account_id, team_id, row[0], _team_members(conn, account_id, team_id))

        return await self._writer.run(fn)

    async def delete_team(self, account_id: str, team_id: int) -> bool:
        def fn(conn: sqlite3.Connection) -> bool:
            conn.execute(
                "UPDATE sites SET team_id = NULL WHERE account_id = ? AND team_id = ?",
                (account_id, team_id),
            )
            return _delete(conn, "teams", account_id, team_id)

        return await self._writer.run(fn)

    # canned responses

    async def create_canned(
        self, account_id: str, name: str, tag: str, message: str
    ) -> CannedResponse:
        def fn(conn: sqlite3.Connection) -> CannedResponse:
            canned_id = _next_id(conn, account_id, "canned")
            conn.execute(
                "INSERT INTO canned (account_id, id, name, tag, message) VALUES (?, ?, ?, ?, ?)",
                (account_id, canned_id, name, tag, message),
            )
            return CannedResponse(account_id, canned_id, name, tag, message)

        return await self._writer.run(fn)

    async def get_canned(self, account_id: str, canned_id: int) -> CannedResponse | None:
        return await self._read(lambda conn: _get_canned(conn, account_id, canned_id))

    async def list_canned(self, account_id: str) -> list[CannedResponse]:
        def fn(conn: sqlite3.Connection) -> list[CannedResponse]:
            rows = conn.execute(
                "SELECT id, name, tag, message FROM canned WHERE account_id = ? ORDER BY id",
                (account_id,),
            ).fetchall()
            return [CannedResponse(account_id, *r) for r in rows]

        return await self._read(fn)

    async def update_canned(
        self, account_id: str, canned_id: int, patch: CannedPatch
    ) -> CannedResponse | None:
        def fn(conn: sqlite3.Connection) -> CannedResponse | None:
            values = patch_values(patch)
            if not _patch(conn, "canned", account_id, canned_id, values):
                return None
            return _get_canned(conn, account_id, canned_id)

        return await self._writer.run(fn)

    async def delete_canned(self, account_id: str, canned_id: int) -> bool:
        return await self._writer.run(lambda conn: _delete(conn, "canned", account_id, canned_id))

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
        def fn(conn: sqlite3.Connection) -> Site:
            site_id = _next_id(conn, account_id, "site")
            site = Site(account_id, site_id, name, color, position, greeting, team_id, time.time())
            _insert_site(conn, site)
            return site

        return await self._writer.run(fn)

    async def get_site(self, account_id: str, site_id: int) -> Site | None:
        return await self._read(lambda conn: _get_site(conn, account_id, site_id))

    async def list_sites(self, account_id: str) -> list[Site]:
        def fn(conn: sqlite3.Connection) -> list[Site]:
            rows = conn.execute(
                f"SELECT {_SITE_COLS} FROM sites WHERE account_id = ? ORDER BY id", (account_id,)
            ).fetchall()
            return [_site(r) for r in rows]

        return await self._read(fn)

    async def update_site(self, account_id: str, site_id: int, patch: SitePatch) -> Site | None:
        def fn(conn: sqlite3.Connection) -> Site | None:
            values = patch_values(patch)
            if values.get("team_id") is not None:
                _require_team(conn, account_id, values["team_id"])
            found = _patch(conn, "sites", account_id, site_id, values)
            if patch.team_id == NO_TEAM and found:
                conn.execute(
                    "UPDATE sites SET team_id = NULL WHERE account_id = ? AND id = ?",
                    (account_id, site_id),
                )
            return _get_site(conn, account_id, site_id) if found else None

        return await self._writer.run(fn)

    async def delete_site(self, account_id: str, site_id: int) -> bool:
        return await self._writer.run(lambda conn: _delete(conn, "sites", account_id, site_id))

    # push tokens

    async def add_push_token(self, account_id: str, operator_id: int, token: str) -> None:
        def fn(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO push_tokens (account_id, operator_id, token, created)"
                " VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (account_id, operator_id, token, time.time()),
            )

        await self._writer.run(fn)

    async def remove_push_tokens(
        self, account_id: str, operator_id: int, token: str | None = None
    ) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            sql = "DELETE FROM push_tokens WHERE account_id = ? AND operator_id = ?"
            params: tuple[Any, ...] = (account_id, operator_id)
            if token is not None:
                sql, params = sql + " AND token = ?", (*params, token)
            return conn.execute(sql, params).rowcount

        return await self._writer.run(fn)

    async def push_tokens(
        self, account_id: str, operator_ids: Sequence[int]
    ) -> dict[int, list[str]]:
        def fn(conn: sqlite3.Connection) -> dict[int, list[str]]:
            marks = ", ".join("?" * len(operator_ids))
            rows = conn.execute(
                "SELECT operator_id, token FROM push_tokens WHERE account_id = ?"
                f" AND operator_id IN ({marks}) ORDER BY operator_id, created",
                (account_id, *operator_ids),
            ).fetchall()
            found: dict[int, list[str]] = {}
            for operator_id, token in rows:
                found.setdefault(operator_id, []).append(token)
            return found

        return await self._read(fn) if operator_ids else {}

    # the inbox

    async def list_conversations(self, account_id: str, query: InboxQuery) -> list[Conversation]:
        sql, params = _INBOX.select(_prefixed(_CONVO_COLS, "c"), account_id, query)
        return await self._read(lambda conn: [_convo(r) for r in conn.execute(sql, params)])

    async def count_conversations(self, account_id: str, query: InboxQuery) -> dict[Status, int]:
        sql, params = _INBOX.count(account_id, query)
        return await self._read(lambda conn: dict(conn.execute(sql, params).fetchall()))

    # conversations

    async def write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        *,
        client_msg_id: str | None = None,
    ) -> Committed:
        def fn(conn: sqlite3.Connection) -> Committed:
            if client_msg_id is not None:
                row = conn.execute(
                    f"SELECT {_MSG_COLS} FROM messages WHERE account_id = ? AND client_msg_id = ?",
                    (account_id, client_msg_id),
                ).fetchone()
                if row is not None:
                    original = _message(row)
                    current = _get_convo(conn, account_id, original.convo_id)
                    assert current is not None
                    return Committed(current, (original,), duplicate=True)
            before = _get_convo(conn, account_id, convo_id) if convo_id else None
            change = decide(before)
            if change is None:
                if before is None:
                    raise LookupError("a decision on no conversation must create one")
                return Committed(before)
            after = change.after
            if change.before is None:
                conn.execute(
                    f"INSERT INTO conversations ({_CONVO_COLS})"
                    f" VALUES ({', '.join('?' * _CONVO_WIDTH)})",
                    _convo_params(after),
                )
            else:
                conn.execute(_UPDATE_CONVO_SQL, (*_convo_params(after)[2:], after.id))
            conn.executemany(
                _INSERT_MSG_SQL, [(*_message_params(m), account_id) for m in change.messages]
            )
            conn.executemany(
                _INSERT_OUTBOUND_SQL, _outbound.queued_rows(account_id, after, change.messages)
            )
            kinds = change.event_kinds()
            events: tuple[Event, ...] = ()
            if kinds:
                (last,) = conn.execute(
                    "UPDATE accounts SET last_event_seq = last_event_seq + ? WHERE id = ?"
                    " RETURNING last_event_seq",
                    (len(kinds), account_id),
                ).fetchone()
                first = last - len(kinds) + 1
                events = tuple(
                    Event(account_id, seq, kind, after.id, msg_seq, after.last_activity)
                    for seq, (kind, msg_seq) in zip(itertools.count(first), kinds)
                )
                conn.executemany(
                    "INSERT INTO events (account_id, seq, kind, convo_id, msg_seq, created)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        (e.account_id, e.seq, e.kind, e.convo_id, e.msg_seq, e.created)
                        for e in events
                    ],
                )
            return Committed(after, change.messages, events, before=change.before)

        return await self._writer.run(fn)

    async def replay_events(
        self, account_id: str, *, after_seq: int, limit: int
    ) -> list[EventDetail]:
        def fn(conn: sqlite3.Connection) -> list[EventDetail]:
            rows = conn.execute(_REPLAY_SQL, (account_id, after_seq, limit)).fetchall()
            details = []
            for row in rows:
                convo_end = 6 + _CONVO_WIDTH
                message = _message(row[convo_end:]) if row[convo_end] is not None else None
                details.append(EventDetail(Event(*row[:6]), _convo(row[6:convo_end]), message))
            return details

        return await self._read(fn)

    async def head_event_seq(self, account_id: str) -> int:
        def fn(conn: sqlite3.Connection) -> int:
            row = conn.execute(
                "SELECT last_event_seq FROM accounts WHERE id = ?", (account_id,)
            ).fetchone()
            return int(row[0]) if row else 0

        return await self._read(fn)

    async def get_conversation(self, account_id: str, convo_id: str) -> Conversation | None:
        return await self._read(lambda conn: _get_convo(conn, account_id, convo_id))

    async def list_messages(
        self,
        convo_id: str,
        *,
        after_seq: int = 0,
        after_created: float = 0.0,
        limit: int = 200,
        newest: bool = False,
        visitor_view: bool = False,
        before_seq: int | None = None,
    ) -> list[Message]:
        return await self._read(
            lambda conn: _messages(
                conn, convo_id, after_seq, after_created, limit, newest, visitor_view, before_seq
            )
        )

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
    ) -> tuple[Conversation, list[Message]] | None:
        def fn(conn: sqlite3.Connection) -> tuple[Conversation, list[Message]] | None:
            conversation = _get_convo(conn, account_id, convo_id)
            if conversation is None:
                return None
            return conversation, _messages(
                conn, convo_id, after_seq, after_created, limit, newest, visitor_view, before_seq
            )

        return await self._read(fn)

    async def list_events(self, account_id: str, *, after_seq: int, limit: int) -> list[Event]:
        def fn(conn: sqlite3.Connection) -> list[Event]:
            rows = conn.execute(
                "SELECT account_id, seq, kind, convo_id, msg_seq, created FROM events"
                " WHERE account_id = ? AND seq > ? ORDER BY seq LIMIT ?",
                (account_id, after_seq, limit),
            ).fetchall()
            return [Event(*r) for r in rows]

        return await self._read(fn)

    # outbound delivery

    async def claim_outbound(
        self,
        worker_id: str,
        *,
        channels: Collection[OutboundChannel],
        now: float,
        lease_s: float,
        limit: int,
    ) -> list[OutboundJob]:
        if not channels:
            return []

        # A job of the writer thread, whose BEGIN IMMEDIATE also holds off the writers of
        # other processes sharing the file: no two claims ever see the same row due.
        def fn(conn: sqlite3.Connection) -> list[OutboundJob]:
            names = {f"channel{i}": channel for i, channel in enumerate(channels)}
            rows = conn.execute(
                f"{_outbound.JOB_SELECT.format(rows='outbound')}"
                f" WHERE o.channel IN ({', '.join(':' + n for n in names)})"
                f" AND {_outbound.DUE_WHERE.format(now=':now')}"
                f" ORDER BY {_outbound.DUE_ORDER} LIMIT :limit",
                {**names, "now": now, "limit": limit},
            ).fetchall()
            jobs = [_outbound.job(row) for row in rows]
            conn.executemany(
                "UPDATE outbound SET claimed_by = ?, lease_until = ?, attempts = attempts + 1"
                " WHERE convo_id = ? AND seq = ?",
                [(worker_id, now + lease_s, j.convo_id, j.seq) for j in jobs],
            )
            return [dataclasses.replace(j, attempt=j.attempt + 1) for j in jobs]

        return await self._writer.run(fn)

    async def finish_outbound(
        self,
        job: OutboundJob,
        worker_id: str,
        *,
        sent: bool,
        error: str | None,
        retry_at: float | None,
    ) -> bool:
        state = _outbound.finished_state(sent=sent, retry_at=retry_at)

        def fn(conn: sqlite3.Connection) -> bool:
            held = conn.execute(
                _outbound.FINISH_SQL.format(*"?" * 7),
                _outbound.finish_params(job, worker_id, state, error, retry_at),
            )
            if held.rowcount == 0:
                return False
            if state != "queued":
                conn.execute(
                    _outbound.SET_DELIVERY_SQL.format(*"?" * 3), (state, job.convo_id, job.seq)
                )
            return True

        return await self._writer.run(fn)

    # -- reports (issue 19): begin --

    async def report_volume(self, account_id: str, q: ReportQuery) -> VolumeFigures:
        return await self._report(_REPORTS.volume(account_id, q))

    async def report_response_times(self, account_id: str, q: ReportQuery) -> ResponseFigures:
        return await self._report(_REPORTS.response_times(account_id, q))

    async def report_handover(self, account_id: str, q: ReportQuery) -> HandoverFigures:
        return await self._report(_REPORTS.handover(account_id, q))

    async def report_ratings(self, account_id: str, q: ReportQuery) -> RatingFigures:
        return await self._report(_REPORTS.ratings(account_id, q))

    async def _report(self, report: Report[T]) -> T:
        def fn(conn: sqlite3.Connection) -> T:
            # One read transaction: every statement of a figure set sees the same snapshot.
            conn.execute("BEGIN")
            try:
                rows = [conn.execute(sql, params).fetchall() for sql, params in report.statements]
            finally:
                conn.execute("ROLLBACK")
            return report.figures(rows)

        return await self._read(fn)

    # -- reports (issue 19): end --


# Times are never negative, so truncating is rounding down.
_REPORTS = ReportsSql(lambda n: f"?{n}", lambda x: f"CAST({x} AS INTEGER)")


_REPLAY_SQL = (
    f"SELECT e.account_id, e.seq, e.kind, e.convo_id, e.msg_seq, e.created,"
    f" {_prefixed(_CONVO_COLS, 'c')}, {_prefixed(_MSG_COLS, 'm')}"
    " FROM events e JOIN conversations c ON c.id = e.convo_id"
    " LEFT JOIN messages m ON m.convo_id = e.convo_id AND m.seq = e.msg_seq"
    " WHERE e.account_id = ? AND e.seq > ? ORDER BY e.seq LIMIT ?"
)


def _messages(
    conn: sqlite3.Connection,
    convo_id: str,
    after_seq: int,
    after_created: float,
    limit: int,
    newest: bool,
    visitor_view: bool,
    before_seq: int | None,
) -> list[Message]:
    order = "DESC" if newest else "ASC"
    # Notes are for operators: the limit counts only what the visitor may see.
    hidden = " AND NOT private" if visitor_view else ""
    rows = conn.execute(
        f"SELECT {_MSG_COLS} FROM messages WHERE convo_id = ? AND seq > ? AND seq < ?"
        f" AND created > ?{hidden} ORDER BY seq {order} LIMIT ?",
        (convo_id, after_seq, before_seq or SEQ_END, after_created, limit),
    ).fetchall()
    messages = [_message(r) for r in rows]
    return messages[::-1] if newest else messages


def _get_convo(conn: sqlite3.Connection, account_id: str, convo_id: str) -> Conversation | None:
    row = conn.execute(
        f"SELECT {_CONVO_COLS} FROM conversations WHERE id = ? AND account_id = ?",
        (convo_id, account_id),
    ).fetchone()
    return _convo(row) if row else None


_INBOX = InboxSql(lambda n: f"?{n}", "LIKE")


def _insert_site(conn: sqlite3.Connection, site: Site) -> None:
    if site.team_id is not None:
        _require_team(conn, site.account_id, site.team_id)
    conn.execute(
        f"INSERT INTO sites ({_SITE_COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (site.account_id, site.id, site.name, site.color, site.position, site.greeting,
         site.team_id, site.created, site.ask_rating),
    )  # fmt: skip


def _get_site(conn: sqlite3.Connection, account_id: str, site_id: int) -> Site | None:
    row = conn.execute(
        f"SELECT {_SITE_COLS} FROM sites WHERE account_id = ? AND id = ?", (account_id, site_id)
    ).fetchone()
    return _site(row) if row else None


def _require_team(conn: sqlite3.Connection, account_id: str, team_id: int) -> None:
    found = conn.execute(
        "SELECT 1 FROM teams WHERE account_id = ? AND id = ?", (account_id, team_id)
    ).fetchone()
    if found is None:
        raise UnknownReference(f"no team {team_id}")


def _get_canned(conn: sqlite3.Connection, account_id: str, canned_id: int) -> CannedResponse | None:
    row = conn.execute(
        "SELECT id, name, tag, message FROM canned WHERE account_id = ? AND id = ?",
        (account_id, canned_id),
    ).fetchone()
    return CannedResponse(account_id, *row) if row else None


def _is_empty(conn: sqlite3.Connection) -> bool:
    return conn.execute("SELECT 1 FROM accounts LIMIT 1").fetchone() is None


def _select_all(table: Table) -> str:
    return (
        f"SELECT {', '.join(table.column_names)} FROM {table.name} ORDER BY {', '.join(table.key)}"
    )


def _exported(table: Table, row: dict[str, Any]) -> dict[str, Any]:
    # SQLite has no boolean type: is_admin comes back as 0 or 1.
    for column in table.columns:
        if column.kind is bool and row[column.name] is not None:
            row[column.name] = bool(row[column.name])
    return row


def _import(conn: sqlite3.Connection, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
    if not _is_empty(conn):
        raise StoreNotEmpty("the target store already holds accounts; import needs an empty one")
    count = 0
    batch: list[tuple[Any, ...]] = []
    table: Table | None = None

    def flush() -> None:
        if table is None or not batch:
            return
        marks = ", ".join("?" * len(table.columns))
        try:
            conn.executemany(
                f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})",
                batch,
            )
        except sqlite3.IntegrityError as exc:
            raise InvalidRow(f"{table.name}: {exc}") from exc
        batch.clear()

    for name, row in rows:
        row_table, values = row_values(name, row)
        if row_table is not table:
            flush()
            table = row_table
        batch.append(values)
        count += 1
        if len(batch) >= TRANSFER_BATCH_ROWS:
            flush()
    flush()
    return count


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
