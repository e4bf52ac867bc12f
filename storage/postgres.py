"""PostgreSQL backend: for several processes or hosts sharing one database.

Every write is one transaction on a pooled connection at READ COMMITTED, serialized by row
locks rather than by a stricter isolation level, so writers of different conversations and
accounts never wait on each other:

- ``write`` locks the conversation row first (``FOR NO KEY UPDATE``), so the decision sees the
  latest committed state and the next writer of that conversation waits for this commit;
- it takes the account row last, through ``UPDATE accounts ... RETURNING last_event_seq``, and
  holds it to commit, so account event seqs are gapless and follow commit order.

That last statement also carries the conversation's update (its row is locked already) and the
events' insert, as data-modifying WITH clauses (``Dialect.chains_writes``): one round trip
where they took three. The messages are inserted before it, on their own, so a send that waits
on the client id index (below) waits holding no account row.

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

The operations themselves are storage/sql.py's; this module runs them (pool, transactions,
retries) and keeps what only PostgreSQL does: the SKIP LOCKED claim and the advisory lock that
serializes migrations.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TypeAlias, TypeVar

import asyncpg
from asyncpg import Record
from asyncpg.pool import PoolConnectionProxy
from prometheus_client import Counter

from storage import outbound as _outbound
from storage.base import TRANSFER_BATCH_ROWS
from storage.migrations import load_migrations
from storage.outbound import Claim, OutboundJob
from storage.sql import Conn, Dialect, Op, SqlStore

T = TypeVar("T")
_Conn: TypeAlias = "PoolConnectionProxy[Record]"

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

# Storage keeps its own metric, as realtime/hub.py does: no layer below server imports it.
_RETRIES = Counter(
    "liveop_store_retries_total",
    "PostgreSQL writes retried after a serialization failure or deadlock (docs/operations.md)",
)

DIALECT = Dialect(
    ilike="ILIKE",
    # A cast to bigint rounds to nearest.
    round_down="floor({})::bigint",
    # Row locks serialize writers of one conversation (see the module docstring); NO KEY
    # leaves the messages' foreign-key checks (KEY SHARE) unblocked.
    lock_for_update=" FOR NO KEY UPDATE",
    lock_key_share=" FOR KEY SHARE",
    lock_exclusive=" FOR UPDATE",
    lock_skip_locked=" FOR UPDATE SKIP LOCKED",
    # A write's conversation update, the numbering of its events and their insert go in one
    # statement: two round trips less per write (docs/benchmarks.md, issue 20).
    chains_writes=True,
    unique_violation=asyncpg.UniqueViolationError,
    foreign_key_violation=asyncpg.ForeignKeyViolationError,
    integrity_violation=asyncpg.IntegrityConstraintViolationError,
    # A report scans an account's period once: compiling its expressions (business hours'
    # run to thousands of characters) took up to 6 s of a 7 s report, to save milliseconds
    # (docs/benchmarks.md, "Reports").
    report_prelude=("SET LOCAL jit = off",),
    import_prelude=(
        # Reading the rows (a file, stdin) may pause the transaction for longer than a live
        # request ever would.
        "SET LOCAL idle_in_transaction_session_timeout = 0",
        # Holds off account creation (and a second import) until this one commits, so the
        # emptiness checked first is still true at COMMIT.
        "LOCK TABLE accounts IN SHARE ROW EXCLUSIVE MODE",
    ),
)

# Rows locked by a concurrent claim are skipped, not waited for; a row claimed and committed
# meanwhile fails the re-checked lease condition. So concurrent claims never overlap.
_CLAIM_SQL = (
    "WITH due AS (SELECT o.convo_id, o.seq FROM outbound o WHERE o.channel = ANY($2::TEXT[])"
    f" AND {_outbound.DUE_WHERE.format(now='$3')}"
    f" AND {_outbound.BOUND_WHERE.format(unbound='SELECT unnest($6::TEXT[])')}"
    f" ORDER BY {_outbound.DUE_ORDER} LIMIT $5 FOR UPDATE SKIP LOCKED),"
    " claimed AS (UPDATE outbound u SET claimed_by = $1, lease_until = $4,"
    " attempts = u.attempts + 1 FROM due WHERE u.convo_id = due.convo_id AND u.seq = due.seq"
    " RETURNING u.*)"
    f" {_outbound.JOB_SELECT.format(rows='claimed')} ORDER BY {_outbound.DUE_ORDER}"
)


def _worth_retrying(exc: asyncpg.PostgresError) -> bool:
    # A unique violation on the client id index means another transaction committed that id
    # after this one looked for it; the retry's lookup finds the original.
    if isinstance(exc, asyncpg.UniqueViolationError):
        return exc.constraint_name == _CLIENT_ID_INDEX
    return isinstance(exc, _RETRYABLE)


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


class PostgresStore(SqlStore):
    """Store on a PostgreSQL database (see the module docstring for the locking scheme)."""

    def __init__(self, url: str) -> None:
        super().__init__(DIALECT)
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

    async def _read(self, op: Op[T]) -> T:
        async with self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn:
            return await op(conn)

    async def _read_consistent(self, op: Op[T]) -> T:
        async with (
            self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            return await op(conn)

    async def _write(self, op: Op[T]) -> T:
        """Runs ``op`` in a transaction of its own and returns after COMMIT; see MAX_ATTEMPTS."""
        attempt = 1
        while True:
            try:
                return await self._write_once(op)
            except asyncpg.PostgresError as exc:
                # No pause before retrying: the transaction that won already holds the locks
                # and goes first, whatever the delay.
                if attempt >= MAX_ATTEMPTS or not _worth_retrying(exc):
                    raise
                attempt += 1
                _RETRIES.inc()

    async def _write_once(self, op: Op[T]) -> T:
        pool = self._open_pool()
        async with pool.acquire(timeout=ACQUIRE_TIMEOUT_S) as conn, conn.transaction():
            return await op(conn)

    @contextlib.asynccontextmanager
    async def _snapshot(self) -> AsyncIterator[Callable[[str], AsyncIterator[Record]]]:
        async with (
            self._open_pool().acquire(timeout=ACQUIRE_TIMEOUT_S) as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # The export may outlast IDLE_IN_TRANSACTION_TIMEOUT_MS while its consumer writes a
            # large batch out; the session must not be ended for that.
            await conn.execute("SET LOCAL idle_in_transaction_session_timeout = 0")

            def stream(sql: str) -> AsyncIterator[Record]:
                return conn.cursor(sql, prefetch=TRANSFER_BATCH_ROWS).__aiter__()

            yield stream

    def _claim(self, claim: Claim) -> Op[list[OutboundJob]]:
        async def op(conn: Conn) -> list[OutboundJob]:
            found = await conn.fetch(
                _CLAIM_SQL,
                claim.worker_id,
                list(claim.channels),
                claim.now,
                claim.lease_until,
                claim.limit,
                list(claim.unbound),
            )
            return [_outbound.job(row) for row in found]

        return op
