"""Several processes, each with its own PostgresStore, writing one database at once: the way
`liveop serve` runs scaled out. In-process concurrency is in the contract suite; this is what
only separate connections from separate processes can break."""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from server.events import announce
from storage import create_store
from storage.migrations import load_migrations
from storage.models import Change
from storage.postgres import MIGRATION_LOCK_KEY
from tests.storage.postgres_worker import Job, fresh_conversation

WORKERS = 4
APPENDS_PER_WORKER = 50
CREATES_PER_WORKER = 10
RETRY_IDS = [f"retry-{i}" for i in range(10)]
CREATE_IDS = [f"open-{i}" for i in range(5)]
# A worker starts in well under a second; this only bounds a broken one.
START_TIMEOUT_S = 30.0
RUN_TIMEOUT_S = 120.0
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def _workers(url: str) -> AsyncIterator[list[asyncio.subprocess.Process]]:
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.storage.postgres_worker",
            url,
            cwd=ROOT,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        for _ in range(WORKERS)
    ]
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.kill()
                await worker.wait()


async def _until_ready(workers: list[asyncio.subprocess.Process]) -> None:
    async with asyncio.timeout(START_TIMEOUT_S):
        for worker in workers:
            assert worker.stdout is not None and worker.stderr is not None
            line = await worker.stdout.readline()
            assert line == b"ready\n", (await worker.stderr.read()).decode()


async def _finish(workers: list[asyncio.subprocess.Process], jobs: list[bytes]) -> list[Any]:
    """Hands each worker its job at once; what each printed, after it exited cleanly."""
    async with asyncio.timeout(RUN_TIMEOUT_S):
        outputs = await asyncio.gather(
            *(worker.communicate(job) for worker, job in zip(workers, jobs, strict=True))
        )
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        assert worker.returncode == 0, stderr.decode()
    return [json.loads(stdout) for stdout, _ in outputs if stdout.strip()]


async def test_processes_starting_together_apply_each_migration_once(postgres_url: str) -> None:
    # The test holds the migration lock until every worker queues on it, so they all meet
    # an unmigrated database at the same moment rather than one after another by luck.
    holder = await asyncpg.connect(postgres_url)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
        async with _workers(postgres_url) as workers:
            async with asyncio.timeout(START_TIMEOUT_S):
                # Polled: the waiters are in PostgreSQL, with nothing here to notify.
                while await holder.fetchval(  # noqa: ASYNC110
                    "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                    " WHERE l.locktype = 'advisory' AND NOT l.granted"
                    " AND d.datname = current_database()"
                ) < len(workers):
                    await asyncio.sleep(0.05)
            await holder.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
            await _until_ready(workers)
            await _finish(workers, [b""] * len(workers))
        applied = await holder.fetch("SELECT version FROM schema_migrations ORDER BY version")
    finally:
        await holder.close()
    assert [r[0] for r in applied] == [version for version, _ in load_migrations("postgres")]


async def test_processes_writing_at_once_get_gapless_seqs_in_commit_order(
    postgres_url: str,
) -> None:
    async with _workers(postgres_url) as workers:
        await _until_ready(workers)
        store = create_store(postgres_url)
        await store.open()
        try:
            account = secrets.token_hex(8)
            await store.create_account(account, "acme", secrets.token_hex(32))
            setup = [
                await store.write(
                    account, None, lambda _: announce(Change(None, fresh_conversation(account)))
                )
                for _ in ("convo", "retry_convo")
            ]
            convo, retry_convo = (c.conversation.id for c in setup)
            jobs = [
                Job(
                    account=account,
                    convo=convo,
                    appends=APPENDS_PER_WORKER,
                    creates=CREATES_PER_WORKER,
                    retry_convo=retry_convo,
                    retry_ids=RETRY_IDS,
                    create_ids=CREATE_IDS,
                    tag=f"w{n}",
                )
                for n in range(len(workers))
            ]
            outputs = await _finish(workers, [json.dumps(job).encode() + b"\n" for job in jobs])
            reports = [report for output in outputs for report in output]

            stored = await store.list_events(account, after_seq=0, limit=100_000)
            assert [e.seq for e in stored] == list(range(1, len(stored) + 1))
            assert await store.head_event_seq(account) == len(stored)
            # What the writers were told is exactly the log: no event answered but lost, none
            # stored that no writer was answered.
            told = [(e.seq, e.kind, e.convo_id, e.msg_seq) for c in setup for e in c.events]
            told += [tuple(e) for report in reports for e in report["events"]]
            assert sorted(told) == [(e.seq, e.kind, e.convo_id, e.msg_seq) for e in stored]

            messages = await store.list_messages(account, convo, limit=1000)
            total = len(workers) * APPENDS_PER_WORKER
            assert [m.seq for m in messages] == list(range(1, total + 1))
            assert sorted(m.text for m in messages) == sorted(
                f"{job['tag']}-{i}" for job in jobs for i in range(APPENDS_PER_WORKER)
            )
            # Commit order: in every conversation, the account events announce its messages
            # in message seq order, with none missing.
            announced: dict[str, list[int | None]] = defaultdict(list)
            for event in stored:
                if event.kind == "message:new":
                    announced[event.convo_id].append(event.msg_seq)
            assert announced[convo] == list(range(1, total + 1))
            assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in announced.values())

            opened = [e.convo_id for e in stored if e.kind == "conversation:new"]
            assert len(opened) == len(setup) + len(workers) * CREATES_PER_WORKER + len(CREATE_IDS)
            for cid in RETRY_IDS + CREATE_IDS:
                answers = [r for r in reports if r["messages"] and r["messages"][0][3] == cid]
                assert len(answers) == len(workers)
                assert sum(not a["duplicate"] for a in answers) == 1, cid
                assert len({tuple(a["messages"][0]) for a in answers}) == 1, cid
            stored_ids = [
                m.client_msg_id
                for convo_id in opened
                for m in await store.list_messages(account, convo_id)
                if m.client_msg_id is not None
            ]
            assert sorted(stored_ids) == sorted(RETRY_IDS + CREATE_IDS)
        finally:
            await store.close()
