"""PostgreSQL backend: for several processes or hosts sharing one database.

Every write is one transaction on a pooled connection at READ COMMITTED, serialized by row
locks rather than by a stricter isolation level, so writers of different conversations and
accounts never wait on each other:

- ``write`` locks the conversation row first (``FOR NO KEY UPDATE``), so the decision sees the
  latest committed state and the next writer of that conversation waits for this commit;
- it takes the account row last, through ``UPDATE accounts ... RETURNING last_event_seq``, and
  holds it to commit, so account event seqs are gapless and follow commit order.

Every writer takes these locks in that order (conversation, then account), which rules out a
deadlock between two writes. Creating a conversation locks no account row first: the new row
is invisible until commit, so there is nothing to serialize except the event seq, taken last
as always. (The foreign-key checks of the inserts take KEY SHARE on the account row, which
does not conflict with the seq bump: it changes no key.) Should PostgreSQL still report a
deadlock or a serialization failure (a lock order this module does not control, such as a
cascade), the transaction is retried from the start: decisions are pure, so running one again
is safe.

Two sends with one client message id meet either at the conversation lock (the second then
finds the first committed) or, from different conversations, at the unique index: the second
insert waits for the first commit, fails, and its retry returns the original as a duplicate.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Collection,
    Iterable,
    Mapping,
    Sequence,
)
from typing import Any, TypeAlias, TypeVar

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy

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
from storage.rows import EVENT_COLS as _EVENT_COLS
from storage.rows import MSG_COLS as _MSG_COLS
from storage.rows import MSG_WIDTH as _MSG_WIDTH
from storage.rows import OPERATOR_COLS as _OPERATOR_COLS
from storage.rows import SITE_COLS as _SITE_COLS
from storage.rows import convo as _convo
from storage.rows import convo_params as _convo_params
from storage.rows import event as _event
from storage.rows import message as _message
from storage.rows import message_params as _message_params
from storage.rows import operator as _operator
from storage.rows import prefixed as _prefixed
from storage.rows import site as _site

T = TypeVar("T")
_Conn: TypeAlias = "PoolConnectionProxy[Record]"
# A fetched row, or a slice of one (a replay row holds an event, a conversation and a message).
_Row: TypeAlias = "Record | tuple[Any, ...]"

# Connections kept open while idle: enough for a burst to start without connecting first.
POOL_MIN_SIZE = 2
# Connections per process. PostgreSQL allows 100 by default; 10 lets several processes share
# it with room for migrations and psql. More would not write faster: writers of one
# conversation or account queue on its row lock anyway, in PostgreSQL instead of in the pool.
POOL_MAX_SIZE = 10
# How long a request waits for a free connection. Past this the server is overloaded, and a
# clear error serves the client better than a request that outlives its own timeout.
ACQUIRE_TIMEOUT_S = 30.0
# Bounds one statement, including a wait on a row lock; asyncpg cancels it on the server.
COMMAND_TIMEOUT_S = 30.0
# A session that stops mid-transaction (a frozen or partitioned process) would hold its
# account's row lock and stall every writer of that account; PostgreSQL ends it after this.
# Our transactions wait on nothing outside the database, so only a stalled process gets here.
IDLE_IN_TRANSACTION_TIMEOUT_MS = 15_000
# Bounds applying migrations, and a starting process's wait for another one applying them.
# Longer than COMMAND_TIMEOUT_S: a step may rebuild an index over every message.
MIGRATION_TIMEOUT_S = 600.0
# Attempts of one transaction when PostgreSQL aborts it as a deadlock or serialization victim,
# or when a concurrent send of the same client message id commits first. One retry settles
# the latter, and almost always the former; the bound only stops a pathological loop.
MAX_ATTEMPTS = 5
# Held by the transaction that applies migrations, so processes starting together apply each
# step once. A fixed key ("liveop" in ASCII): advisory locks are scoped to the database.
MIGRATION_LOCK_KEY = 0x6C6976656F70

_RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
_CLIENT_ID_INDEX = "messages_client_id"

_INSERT_CONVO_SQL = (
    f"INSERT INTO conversations ({_CONVO_COLS})"
    f" VALUES ({', '.join(f'${i}' for i in range(1, _CONVO_WIDTH + 1))})"
)
_UPDATE_CONVO_SQL = (
    f"UPDATE conversations SET ({_CONVO_SET_COLS})"
    f" = ({', '.join(f'${i}' for i in range(3, _CONVO_WIDTH + 1))})"
    " WHERE id = $1 AND account_id = $2"
)
_INSERT_MSG_SQL = (
    f"INSERT INTO messages ({_MSG_COLS}, account_id)"
    f" VALUES ({', '.join(f'${i}' for i in range(1, _MSG_WIDTH + 2))})"
)
_INSERT_OUTBOUND_SQL = (
    f"INSERT INTO outbound ({_outbound.INSERT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
)
# Rows locked by a concurrent claim are skipped, not waited for; a row claimed and committed
# meanwhile fails the re-checked lease condition. So concurrent claims never overlap.
_CLAIM_SQL = (
    "WITH due AS (SELECT o.convo_id, o.seq FROM outbound o WHERE o.channel = ANY($2::TEXT[])"
    f" AND {_outbound.DUE_WHERE.format(now='$3')} ORDER BY {_outbound.DUE_ORDER} LIMIT $5"
    " FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE outbound u SET claimed_by = $1, lease_until = $4,"
    " attempts = u.attempts + 1 FROM due WHERE u.convo_id = due.convo_id AND u.seq = due.seq"
    " RETURNING u.*)"
    f" {_outbound.JOB_SELECT.format(rows='claimed')} ORDER BY {_outbound.DUE_ORDER}"
)
_FINISH_SQL = _outbound.FINISH_SQL.format(*(f"${i}" for i in range(1, 8))) + " RETURNING true"
_SET_DELIVERY_SQL = _outbound.SET_DELIVERY_SQL.format("$1", "$2", "$3")
_CANNED_COLS = "id, name, tag, message"
_TEAM_SQL = (
    "SELECT t.id, t.name, ARRAY(SELECT m.operator_id FROM team_members m"
    " WHERE m.account_id = t.account_id AND m.team_id = t.id ORDER BY m.operator_id)"
    " FROM teams t WHERE t.account_id = $1"
)


_REPLAY_SQL = (
    f"SELECT {_prefixed(_EVENT_COLS, 'e')}, {_prefixed(_CONVO_COLS, 'c')},"
    f" {_prefixed(_MSG_COLS, 'm')}"
    " FROM events e JOIN conversations c ON c.id = e.convo_id"
    " LEFT JOIN messages m ON m.convo_id = e.convo_id AND m.seq = e.msg_seq"
    " WHERE e.account_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3"
)


def _canned(account_id: str, row: _Row) -> CannedResponse:
    return CannedResponse(account_id, id=row[0], name=row[1], tag=row[2], message=row[3])


def _team(account_id: str, row: _Row) -> Team:
    return Team(account_id, id=row[0], name=row[1], member_ids=tuple(row[2]))


def _worth_retrying(exc: asyncpg.PostgresError) -> bool:
    # A unique violation on the client id index means another transaction committed that id
    # after this one looked for it; the retry's lookup finds the original.
    if isinstance(exc, asyncpg.UniqueViolationError):
        return exc.constraint_name == _CLIENT_ID_INDEX
    return isinstance(exc, _RETRYABLE)


async def _next_id(conn: _Conn, account_id: str, kind: str) -> int:
    # The counter row stays locked to commit, and a rolled-back create rolls its number back.
    last_id = await conn.fetchval(
        "INSERT INTO counters (account_id, kind, last_id) VALUES ($1, $2, 1)"
        " ON CONFLICT (account_id, kind) DO UPDATE SET last_id = counters.last_id + 1"
        " RETURNING last_id",
        account_id,
        kind,
    )
    return int(last_id)


async def _set_members(
    conn: _Conn, account_id: str, team_id: int, member_ids: Sequence[int]
) -> None:
    await conn.execute(
        "DELETE FROM team_members WHERE account_id = $1 AND team_id = $2", account_id, team_id
    )
    try:
        await conn.execute(
            "INSERT INTO team_members (account_id, team_id, operator_id)"
            " SELECT $1, $2, unnest($3::BIGINT[])",
            account_id,
            team_id,
            sorted(set(member_ids)),
        )
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownReference("a team member is not an operator of the account") from exc


async def _patch(
    conn: _Conn, table: str, columns: str, account_id: str, row_id: int, values: dict[str, Any]
) -> Record | None:
    """Updates the given columns of one account-scoped row; its ``columns`` when it exists."""
    sets = {k: v for k, v in values.items() if v is not None}
    if not sets:
        return await conn.fetchrow(
            f"SELECT {columns} FROM {table} WHERE account_id = $1 AND id = $2", account_id, row_id
        )
    assignments = ", ".join(f"{column} = ${i}" for i, column in enumerate(sets, start=3))
    return await conn.fetchrow(
        f"UPDATE {table} SET {assignments} WHERE account_id = $1 AND id = $2 RETURNING {columns}",
        account_id,
        row_id,
        *sets.values(),
    )


_INBOX = InboxSql(lambda n: f"${n}", "ILIKE")
# A cast to bigint rounds to nearest: floor first.
_REPORTS = ReportsSql(lambda n: f"${n}", lambda x: f"floor({x})::bigint")


async def _insert_site(conn: _Conn, site: Site) -> None:
    try:
        await conn.execute(
            f"INSERT INTO sites ({_SITE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
            site.account_id, site.id, site.name, site.color, site.position, site.greeting,
            site.team_id, site.created, site.ask_rating,
        )  # fmt: skip
    except asyncpg.ForeignKeyViolationError as exc:
        raise UnknownReference(f"no team {site.team_id}") from exc


async def _team_of(conn: _Conn, account_id: str, team_id: int) -> Team:
    row = await conn.fetchrow(f"{_TEAM_SQL} AND t.id = $2", account_id, team_id)
    assert row is not None, "the caller holds the team in its transaction"
    return _team(account_id, row)


async def _duplicate_of(conn: _Conn, account_id: str, client_msg_id: str) -> Committed | None:
    row = await conn.fetchrow(
        f"SELECT {_MSG_COLS} FROM messages WHERE account_id = $1 AND client_msg_id = $2",
        account_id,
        client_msg_id,
    )
    if row is None:
        return None
    original = _message(row)
    current = await conn.fetchrow(
        f"SELECT {_CONVO_COLS} FROM conversations WHERE id = $1", original.convo_id
    )
    assert current is not None, "a message's conversation is never deleted without it"
    return Committed(_convo(current), (original,), duplicate=True)


async def _insert_batch(conn: _Conn, table: Table | None, batch: list[tuple[Any, ...]]) -> None:
    """Inserts and empties ``batch``, rows of ``table``."""
    if table is None or not batch:
        return
    marks = ", ".join(f"${i}" for i in range(1, len(table.columns) + 1))
    try:
        await conn.executemany(
            f"INSERT INTO {table.name} ({', '.join(table.column_names)}) VALUES ({marks})", batch
        )
    except asyncpg.IntegrityConstraintViolationError as exc:
        detail = f" ({exc.detail})" if exc.detail else ""
        raise InvalidRow(f"{table.name}: {exc}{detail}") from exc
    batch.clear()


async def _migrate(conn: _Conn) -> None:
    async with conn.transaction():
        # Taken before anything else, so a second process waits here and then finds the
        # steps applied; CREATE TABLE IF NOT EXISTS alone races in the catalog.
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK_KEY, timeout=MIGRATION_TIMEOUT_S
        )
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)"
        )
        applied = {r[0] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, sql in load_migrations("postgres"):
            if version in applied:
                continue
            # DDL is transactional in PostgreSQL: a failing step leaves no half of itself.
            await conn.execute(sql, timeout=MIGRATION_TIMEOUT_S)
            await conn.execute("INSERT INTO schema_migrations (version) VALUES ($1)", version)


class _Connection(asyncpg.Connection):
    """Pool connections that skip asyncpg's reset query on release (`RESET ALL`, `UNLISTEN *`,
    `CLOSE ALL`, unlocking advisory locks): this store leaves no session state behind —
    every setting is SET LOCAL, the only advisory lock is transaction-scoped, nothing LISTENs,
    cursors live inside transactions — and asyncpg still rolls back an open transaction. The
    query was a round trip per release: 6% of a server's CPU on the message path."""

    def get_reset_query(self) -> str:
        return ""


class PostgresStore:
    """Store on a PostgreSQL database (see the module docstring for the locking scheme)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._pool: asyncpg.Pool[Record] | None = None

    async def open(self) -> None:
        pool = await asyncpg.create_pool(
            self._url,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            command_timeout=COMMAND_TIMEOUT_S,
            connection_class=_Connection,
            server_settings={
                "idle_in_transaction_session_timeout": str(IDLE_IN_TRANSACTION_TIMEOUT_MS)
            },
        )
        try:
            async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
                await _migrate(conn)
        except BaseException:
            await pool.close()
            raise
        self._pool = pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    def _open_pool(self) -> asyncpg.Pool[Record]:
        assert self._pool is not None, "store is not open"
        return self._pool

    async def _transact(self, fn: Callable[[_Conn], Awaitable[T]]) -> T:
        """Runs ``fn`` in a transaction of its own and returns after COMMIT; see MAX_ATTEMPTS."""
        pool = self._open_pool()
        attempt = 1
        while True:
            try:
                async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
                    return await fn(conn)
            except asyncpg.PostgresError as exc:
                # No pause before retrying: the transaction that won already holds the locks
                # and goes first, whatever the delay.
                if attempt >= MAX_ATTEMPTS or not _worth_retrying(exc):
                    raise
                attempt += 1

    async def _fetch(self, sql: str, *args: Any) -> list[Record]:
        async with self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            return await conn.fetch(sql, *args)

    async def _fetchrow(self, sql: str, *args: Any) -> Record | None:
        async with self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            return await conn.fetchrow(sql, *args)

    # the whole installation

    async def is_empty(self) -> bool:
        return await self._fetchrow("SELECT 1 FROM accounts LIMIT 1") is None

    async def export_rows(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        async with (
            self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn,
            # One snapshot for every table, as the protocol promises.
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # The export may outlast IDLE_IN_TRANSACTION_TIMEOUT_MS while its consumer writes a
            # large batch out; the session must not be ended for that.
            await conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            for table in TABLES:
                names = table.column_names
                sql = f"SELECT {', '.join(names)} FROM {table.name} ORDER BY {', '.join(table.key)}"
                async for row in conn.cursor(sql, prefetch=TRANSFER_BATCH_ROWS):
                    yield table.name, dict(zip(names, row, strict=True))

    async def import_rows(self, rows: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        async with (
            self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn,
            conn.transaction(),
        ):
            # Reading the rows (a file, stdin) may pause the transaction for longer than a
            # live request ever would.
            await conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")
            # Holds off account creation (and a second import) until this one commits, so the
            # emptiness checked here is still true at COMMIT.
            await conn.execute("LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE")
            if await conn.fetchval("SELECT 1 FROM accounts LIMIT 1") is not None:
                raise StoreNotEmpty(
                    "the target store already holds accounts; import needs an empty one"
                )
            count = 0
            batch: list[tuple[Any, ...]] = []
            table: Table | None = None
            for name, row in rows:
                row_table, values = row_values(name, row)
                if row_table is not table or len(batch) >= TRANSFER_BATCH_ROWS:
                    await _insert_batch(conn, table, batch)
                    table = row_table
                batch.append(values)
                count += 1
            await _insert_batch(conn, table, batch)
            return count

    # accounts and keys

    async def create_account(self, account_id: str, name: str, api_key_hash: str) -> Account:
        async def fn(conn: _Conn) -> Account:
            created = time.time()
            await conn.execute(
                "INSERT INTO accounts (id, name, created) VALUES ($1, $2, $3)",
                account_id,
                name,
                created,
            )
            await conn.execute(
                "INSERT INTO api_keys (key_hash, account_id, created) VALUES ($1, $2, $3)",
                api_key_hash,
                account_id,
                created,
            )
            # The first site id of an account, through the same counter as every later site.
            site_id = await _next_id(conn, account_id, "site")
            assert site_id == DEFAULT_SITE_ID
            await _insert_site(conn, default_site(account_id, created))
            return Account(id=account_id, name=name, created=created)

        return await self._transact(fn)

    async def get_account(self, account_id: str) -> Account | None:
        row = await self._fetchrow(
            "SELECT id, name, created FROM accounts WHERE id = $1", account_id
        )
        return Account(id=row[0], name=row[1], created=row[2]) if row else None

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        row = await self._fetchrow(
            "SELECT account_id FROM api_keys WHERE key_hash = $1", api_key_hash
        )
        return str(row[0]) if row else None

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
        async def fn(conn: _Conn) -> Operator:
            operator_id = await _next_id(conn, account_id, "operator")
            created = time.time()
            try:
                await conn.execute(
                    "INSERT INTO operators (account_id, id, name, email, password_hash, is_admin,"
                    " created, lang) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    account_id,
                    operator_id,
                    name,
                    email,
                    password_hash,
                    is_admin,
                    created,
                    lang,
                )
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateEmail(email) from exc
            return Operator(account_id, operator_id, name, email, is_admin, created, lang)

        return await self._transact(fn)

    async def get_operator(self, account_id: str, operator_id: int) -> Operator | None:
        row = await self._fetchrow(
            f"SELECT {_OPERATOR_COLS} FROM operators WHERE account_id = $1 AND id = $2",
            account_id,
            operator_id,
        )
        return _operator(row) if row else None

    async def get_credentials(self, email: str) -> OperatorCredentials | None:
        # lower() on both sides matches the unique index, so the lookup uses it.
        row = await self._fetchrow(
            f"SELECT {_OPERATOR_COLS}, password_hash FROM operators WHERE lower(email) = lower($1)",
            email,
        )
        return OperatorCredentials(_operator(row), row[-1]) if row else None

    async def list_operators(self, account_id: str) -> list[Operator]:
        rows = await self._fetch(
            f"SELECT {_OPERATOR_COLS} FROM operators WHERE account_id = $1 ORDER BY id",
            account_id,
        )
        return [_operator(r) for r in rows]

    async def update_operator(
        self, account_id: str, operator_id: int, patch: OperatorPatch
    ) -> Operator | None:
        async def fn(conn: _Conn) -> Operator | None:
            try:
                row = await _patch(
                    conn, "operators", _OPERATOR_COLS, account_id, operator_id, patch_values(patch)
                )
            except asyncpg.UniqueViolationError as exc:
                raise DuplicateEmail(patch.email or "") from exc
            return _operator(row) if row else None

        return await self._transact(fn)

    async def delete_operator(self, account_id: str, operator_id: int) -> bool:
        return await self._delete("operators", account_id, operator_id)

    # teams

    async def create_team(self, account_id: str, name: str, member_ids: Sequence[int]) -> Team:
        async def fn(conn: _Conn) -> Team:
            team_id = await _next_id(conn, account_id, "team")
            await conn.execute(
                "INSERT INTO teams (account_id, id, name) VALUES ($1, $2, $3)",
                account_id,
                team_id,
                name,
            )
            await _set_members(conn, account_id, team_id, member_ids)
            return await _team_of(conn, account_id, team_id)

        return await self._transact(fn)

    async def list_teams(self, account_id: str) -> list[Team]:
        rows = await self._fetch(f"{_TEAM_SQL} ORDER BY t.id", account_id)
        return [_team(account_id, r) for r in rows]

    async def update_team(self, account_id: str, team_id: int, patch: TeamPatch) -> Team | None:
        async def fn(conn: _Conn) -> Team | None:
            found = await _patch(conn, "teams", "id", account_id, team_id, {"name": patch.name})
            if found is None:
                return None
            if patch.member_ids is not None:
                await _set_members(conn, account_id, team_id, patch.member_ids)
            return await _team_of(conn, account_id, team_id)

        return await self._transact(fn)

    async def delete_team(self, account_id: str, team_id: int) -> bool:
        async def fn(conn: _Conn) -> bool:
            await conn.execute(
                "UPDATE sites SET team_id = NULL WHERE account_id = $1 AND team_id = $2",
                account_id,
                team_id,
            )
            deleted = await conn.fetchval(
                "DELETE FROM teams WHERE account_id = $1 AND id = $2 RETURNING true",
                account_id,
                team_id,
            )
            return deleted is not None

        return await self._transact(fn)

    # canned responses

    async def create_canned(
        self, account_id: str, name: str, tag: str, message: str
    ) -> CannedResponse:
        async def fn(conn: _Conn) -> CannedResponse:
            canned_id = await _next_id(conn, account_id, "canned")
            await conn.execute(
                "INSERT INTO canned (account_id, id, name, tag, message)"
                " VALUES ($1, $2, $3, $4, $5)",
                account_id,
                canned_id,
                name,
                tag,
                message,
            )
            return CannedResponse(account_id, canned_id, name, tag, message)

        return await self._transact(fn)

    async def get_canned(self, account_id: str, canned_id: int) -> CannedResponse | None:
        row = await self._fetchrow(
            f"SELECT {_CANNED_COLS} FROM canned WHERE account_id = $1 AND id = $2",
            account_id,
            canned_id,
        )
        return _canned(account_id, row) if row else None

    async def list_canned(self, account_id: str) -> list[CannedResponse]:
        rows = await self._fetch(
            f"SELECT {_CANNED_COLS} FROM canned WHERE account_id = $1 ORDER BY id", account_id
        )
        return [_canned(account_id, r) for r in rows]

    async def update_canned(
        self, account_id: str, canned_id: int, patch: CannedPatch
    ) -> CannedResponse | None:
        async def fn(conn: _Conn) -> CannedResponse | None:
            values = patch_values(patch)
            row = await _patch(conn, "canned", _CANNED_COLS, account_id, canned_id, values)
            return _canned(account_id, row) if row else None

        return await self._transact(fn)

    async def delete_canned(self, account_id: str, canned_id: int) -> bool:
        return await self._delete("canned", account_id, canned_id)

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
        async def fn(conn: _Conn) -> Site:
            site_id = await _next_id(conn, account_id, "site")
            site = Site(account_id, site_id, name, color, position, greeting, team_id, time.time())
            await _insert_site(conn, site)
            return site

        return await self._transact(fn)

    async def get_site(self, account_id: str, site_id: int) -> Site | None:
        row = await self._fetchrow(
            f"SELECT {_SITE_COLS} FROM sites WHERE account_id = $1 AND id = $2",
            account_id,
            site_id,
        )
        return _site(row) if row else None

    async def list_sites(self, account_id: str) -> list[Site]:
        rows = await self._fetch(
            f"SELECT {_SITE_COLS} FROM sites WHERE account_id = $1 ORDER BY id", account_id
        )
        return [_site(r) for r in rows]

    async def update_site(self, account_id: str, site_id: int, patch: SitePatch) -> Site | None:
        async def fn(conn: _Conn) -> Site | None:
            values = patch_values(patch)
            try:
                row = await _patch(conn, "sites", _SITE_COLS, account_id, site_id, values)
                if row is not None and patch.team_id == NO_TEAM:
                    row = await conn.fetchrow(
                        f"UPDATE sites SET team_id = NULL WHERE account_id = $1 AND id = $2"
                        f" RETURNING {_SITE_COLS}",
                        account_id,
                        site_id,
                    )
            except asyncpg.ForeignKeyViolationError as exc:
                raise UnknownReference(f"no team {patch.team_id}") from exc
            return _site(row) if row else None

        return await self._transact(fn)

    async def delete_site(self, account_id: str, site_id: int) -> bool:
        return await self._delete("sites", account_id, site_id)

    # push tokens

    async def add_push_token(self, account_id: str, operator_id: int, token: str) -> None:
        await self._transact(
            lambda conn: conn.execute(
                "INSERT INTO push_tokens (account_id, operator_id, token, created)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                account_id,
                operator_id,
                token,
                time.time(),
            )
        )

    async def remove_push_tokens(
        self, account_id: str, operator_id: int, token: str | None = None
    ) -> int:
        status = await self._transact(
            lambda conn: conn.execute(
                "DELETE FROM push_tokens WHERE account_id = $1 AND operator_id = $2"
                " AND ($3::text IS NULL OR token = $3)",
                account_id,
                operator_id,
                token,
            )
        )
        return int(status.split()[-1])

    async def push_tokens(
        self, account_id: str, operator_ids: Sequence[int]
    ) -> dict[int, list[str]]:
        rows = await self._fetch(
            "SELECT operator_id, token FROM push_tokens WHERE account_id = $1"
            " AND operator_id = ANY($2::bigint[]) ORDER BY operator_id, created",
            account_id,
            list(operator_ids),
        )
        found: dict[int, list[str]] = {}
        for row in rows:
            found.setdefault(row[0], []).append(row[1])
        return found

    # the inbox

    async def list_conversations(self, account_id: str, query: InboxQuery) -> list[Conversation]:
        sql, params = _INBOX.select(_prefixed(_CONVO_COLS, "c"), account_id, query)
        return [_convo(r) for r in await self._fetch(sql, *params)]

    async def count_conversations(self, account_id: str, query: InboxQuery) -> dict[Status, int]:
        sql, params = _INBOX.count(account_id, query)
        return {row[0]: row[1] for row in await self._fetch(sql, *params)}

    async def _delete(self, table: str, account_id: str, row_id: int) -> bool:
        async def fn(conn: _Conn) -> bool:
            deleted = await conn.fetchval(
                f"DELETE FROM {table} WHERE account_id = $1 AND id = $2 RETURNING true",
                account_id,
                row_id,
            )
            return deleted is not None

        return await self._transact(fn)

    # conversations

    async def write(
        self,
        account_id: str,
        convo_id: str | None,
        decide: Decide,
        *,
        client_msg_id: str | None = None,
    ) -> Committed:
        async def fn(conn: _Conn) -> Committed:
            before: Conversation | None = None
            if convo_id is not None:
                row = await conn.fetchrow(
                    f"SELECT {_CONVO_COLS} FROM conversations WHERE id = $1 AND account_id = $2"
                    " FOR NO KEY UPDATE",
                    convo_id,
                    account_id,
                )
                before = _convo(row) if row else None
            # Looked up after the lock: a retry racing the original into the same conversation
            # then finds it committed. Retries racing from different conversations meet at the
            # unique index instead (see _worth_retrying).
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
                await conn.execute(_INSERT_CONVO_SQL, *_convo_params(after))
            else:
                await conn.execute(_UPDATE_CONVO_SQL, *_convo_params(after))
            if change.messages:
                await conn.executemany(
                    _INSERT_MSG_SQL, [(*_message_params(m), account_id) for m in change.messages]
                )
                queued = _outbound.queued_rows(account_id, after, change.messages)
                if queued:
                    await conn.executemany(_INSERT_OUTBOUND_SQL, queued)
            kinds = change.event_kinds()
            if not kinds:
                return Committed(after, change.messages, before=change.before)
            # The account row last and held to commit: see the module docstring.
            last = await conn.fetchval(
                "UPDATE accounts SET last_event_seq = last_event_seq + $1 WHERE id = $2"
                " RETURNING last_event_seq",
                len(kinds),
                account_id,
            )
            first = last - len(kinds) + 1
            events = tuple(
                Event(account_id, seq, kind, after.id, msg_seq, after.last_activity)
                for seq, (kind, msg_seq) in zip(itertools.count(first), kinds)
            )
            await conn.executemany(
                f"INSERT INTO events ({_EVENT_COLS}) VALUES ($1, $2, $3, $4, $5, $6)",
                [(e.account_id, e.seq, e.kind, e.convo_id, e.msg_seq, e.created) for e in events],
            )
            return Committed(after, change.messages, events, before=change.before)

        return await self._transact(fn)

    async def get_conversation(self, account_id: str, convo_id: str) -> Conversation | None:
        row = await self._fetchrow(
            f"SELECT {_CONVO_COLS} FROM conversations WHERE id = $1 AND account_id = $2",
            convo_id,
            account_id,
        )
        return _convo(row) if row else None

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
        async with self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            return await _messages(
                conn, convo_id, after_seq, after_created, limit, newest, visitor_view, before_seq
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
        async with self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            row = await conn.fetchrow(
                f"SELECT {_CONVO_COLS} FROM conversations WHERE id = $1 AND account_id = $2",
                convo_id,
                account_id,
            )
            if row is None:
                return None
            messages = await _messages(
                conn, convo_id, after_seq, after_created, limit, newest, visitor_view, before_seq
            )
            return _convo(row), messages

    async def list_events(self, account_id: str, *, after_seq: int, limit: int) -> list[Event]:
        rows = await self._fetch(
            f"SELECT {_EVENT_COLS} FROM events WHERE account_id = $1 AND seq > $2"
            " ORDER BY seq LIMIT $3",
            account_id,
            after_seq,
            limit,
        )
        return [_event(r) for r in rows]

    async def replay_events(
        self, account_id: str, *, after_seq: int, limit: int
    ) -> list[EventDetail]:
        rows = await self._fetch(_REPLAY_SQL, account_id, after_seq, limit)
        convo_end = 6 + _CONVO_WIDTH
        return [
            EventDetail(
                _event(row[:6]),
                _convo(row[6:convo_end]),
                _message(row[convo_end:]) if row[convo_end] is not None else None,
            )
            for row in rows
        ]

    async def head_event_seq(self, account_id: str) -> int:
        row = await self._fetchrow("SELECT last_event_seq FROM accounts WHERE id = $1", account_id)
        return int(row[0]) if row else 0

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
        async def fn(conn: _Conn) -> list[OutboundJob]:
            rows = await conn.fetch(
                _CLAIM_SQL, worker_id, list(channels), now, now + lease_s, limit
            )
            return [_outbound.job(row) for row in rows]

        return await self._transact(fn)

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

        async def fn(conn: _Conn) -> bool:
            params = _outbound.finish_params(job, worker_id, state, error, retry_at)
            if await conn.fetchval(_FINISH_SQL, *params) is None:
                return False
            if state != "queued":
                await conn.execute(_SET_DELIVERY_SQL, state, job.convo_id, job.seq)
            return True

        return await self._transact(fn)

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
        async with (
            self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn,
            # Every statement of a figure set sees the same snapshot.
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            rows = [await conn.fetch(sql, *params) for sql, params in report.statements]
        return report.figures(rows)

    # -- reports (issue 19): end --


async def _messages(
    conn: _Conn,
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
    rows = await conn.fetch(
        f"SELECT {_MSG_COLS} FROM messages WHERE convo_id = $1 AND seq > $2 AND seq < $3"
        f" AND created > $4{hidden} ORDER BY seq {order} LIMIT $5",
        convo_id,
        after_seq,
        before_seq or SEQ_END,
        after_created,
        limit,
    )
    messages = [_message(r) for r in rows]
    return messages[::-1] if newest else messages
