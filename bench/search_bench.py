"""Latency of the inbox listing's search (``Store.list_conversations``) on a large account.

    python -m bench.search_bench [--database postgres|sqlite|both] [--conversations 50000]
        [--sqlite-conversations 10000] [--messages 10] [--repeat 20] [--explain] [--record]

Each database gets one account with N conversations of M messages, loaded straight into the
tables after the store's migrations (COPY in PostgreSQL, executemany in SQLite), then ANALYZE.
Message words are drawn from a generated vocabulary with a Zipf distribution (word k has weight
1/k), so the first words are in nearly every conversation and most are rare; a few planted
tokens occur in a known number of conversations. PostgreSQL runs on a fresh database
(bench/harness.py), dropped at the end; SQLite on a file in a temporary folder.

Every scenario calls the store's real listing (first page, 50 rows, an admin viewer) --repeat
times after one warm-up call and reports p50 and p95. --explain prints PostgreSQL's EXPLAIN
ANALYZE of the statement behind each scenario.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import random
import sqlite3
import statistics
import string
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.harness import (
    DOC,
    POSTGRES_ADMIN_URL,
    git_revision,
    machine,
    postgres_database,
    record_section,
)
from storage.base import InboxQuery
from storage.inbox_sql import InboxSql
from storage.postgres import PostgresStore
from storage.rows import CONVERSATIONS, MESSAGES, insert_sql, select_list, values
from storage.sqlite import SQLiteStore

RESULTS_HEADING = "## Search results"
ACCOUNT = "acct-search-bench"
# Fixed, so every run (before and after a change) lists the same data.
SEED = 20261121
VOCABULARY = 5000
WORDS_PER_MESSAGE = (3, 20)
OPERATORS = 20
VIEWER = 1
# Planted tokens and how many conversations hold each (one message apiece).
RARE = "quetzalfrond"
RARE_CONVERSATIONS = 10
MID = "marzipanoid"
MID_CONVERSATIONS = 500
MISS = "xylophonic"
STATUSES = ("open", "waiting", "active", "resolved")
FIRST_NAMES = ("Ana", "Ben", "Chloe", "Dmitri", "Eve", "Farah", "Gus", "Hana", "Ivo", "Jun")
LAST_NAMES = ("Smith", "Garcia", "Novak", "Okafor", "Tanaka", "Larsen", "Rossi", "Khan")
# The same statements the stores run, for EXPLAIN.
PG_INBOX = InboxSql("ILIKE")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    query: InboxQuery


@dataclass(frozen=True, slots=True)
class Timing:
    database: str
    conversations: int
    scenario: str
    rows: int
    p50_ms: float
    p95_ms: float


def scenarios(common: str) -> list[Scenario]:
    admin = InboxQuery(viewer=VIEWER, every_team=True)
    return [
        Scenario("no search", admin),
        Scenario(f"rare word ({RARE_CONVERSATIONS} convos)", _with(admin, search=RARE)),
        Scenario(f"mid word ({MID_CONVERSATIONS} convos)", _with(admin, search=MID)),
        Scenario(f"common word ({common!r})", _with(admin, search=common)),
        Scenario("two words (common + mid)", _with(admin, search=f"{common} {MID}")),
        Scenario("miss", _with(admin, search=MISS)),
        Scenario("rare word, owner=mine", _with(admin, search=RARE, owner="mine")),
        Scenario(
            "common word, owner=mine, status=active",
            _with(admin, search=common, owner="mine", statuses=("active",)),
        ),
        Scenario("miss, status=open", _with(admin, search=MISS, statuses=("open",))),
    ]


def _with(base: InboxQuery, **changes: Any) -> InboxQuery:
    return InboxQuery(**{**{f: getattr(base, f) for f in base.__dataclass_fields__}, **changes})


def vocabulary(rng: random.Random) -> list[str]:
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choices(string.ascii_lowercase, k=rng.randint(3, 10))))
    # Planted tokens must occur only where they are planted.
    return sorted(w for w in words if not any(t in w for t in (RARE, MID, MISS)))


def generate(
    conversations: int, messages: int
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]], str]:
    """Conversation and message rows (in TABLES column order), and the commonest word."""
    rng = random.Random(SEED)
    vocab = vocabulary(rng)
    rng.shuffle(vocab)
    weights = [1 / (k + 1) for k in range(len(vocab))]
    cumulative = list(_accumulate(weights))
    rare = set(rng.sample(range(conversations), min(RARE_CONVERSATIONS, conversations)))
    mid = set(rng.sample(range(conversations), min(MID_CONVERSATIONS, conversations)))
    start = 1_700_000_000.0
    convos: list[tuple[Any, ...]] = []
    msgs: list[tuple[Any, ...]] = []
    for i in range(conversations):
        convo_id = f"c{i:08d}"
        created = start + i * 60.0
        texts = [
            " ".join(rng.choices(vocab, cum_weights=cumulative, k=rng.randint(*WORDS_PER_MESSAGE)))
            for _ in range(messages)
        ]
        for token, where in ((RARE, rare), (MID, mid)):
            if i in where:
                k = rng.randrange(messages)
                texts[k] = f"{texts[k]} {token}"
        status = rng.choice(STATUSES)
        operator = None if status == "open" else rng.randint(1, OPERATORS)
        fname, lname = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        last_activity = created + messages * 30.0
        convos.append(
            values(CONVERSATIONS, {
                "id": convo_id, "account_id": ACCOUNT, "source_app": "liveoperator",
                "status": status, "mode": "operator", "operator_id": operator, "team_id": None,
                "fname": fname, "lname": lname, "email": f"{fname.lower()}.{i}@example.com",
                "phone": f"+1555{i:07d}", "created": created, "last_activity": last_activity,
                "resolved_at": last_activity if status == "resolved" else None,
                "last_seq": messages, "unread": 0, "operator_read_seq": messages,
                "visitor_read_seq": messages, "site_id": 1, "session_id": None,
                "block_type": None, "translate": False, "visitor_lang": "", "info": "",
                "preview": texts[-1][:100],
            })
        )  # fmt: skip
        for seq, text in enumerate(texts, 1):
            sender = "visitor" if seq % 2 else "operator"
            msgs.append(
                values(MESSAGES, {
                    "id": f"{convo_id}-{seq}", "convo_id": convo_id, "seq": seq,
                    "account_id": ACCOUNT, "sender": sender,
                    "operator_id": operator if sender == "operator" else None,
                    "operator_name": None, "text": text, "created": created + seq * 30.0,
                    "client_msg_id": None, "delivery": None, "private": False,
                    "image_url": None, "translation": None, "translation_lang": None,
                })
            )  # fmt: skip
    return convos, msgs, vocab[0]


def _accumulate(weights: Sequence[float]) -> Iterator[float]:
    total = 0.0
    for w in weights:
        total += w
        yield total


async def time_store(
    store: PostgresStore | SQLiteStore,
    database: str,
    conversations: int,
    cases: Sequence[Scenario],
    repeat: int,
) -> list[Timing]:
    timings = []
    for case in cases:
        rows = len(await store.list_conversations(ACCOUNT, case.query))
        samples = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            await store.list_conversations(ACCOUNT, case.query)
            samples.append((time.perf_counter() - t0) * 1000)
        samples.sort()
        p95 = samples[min(len(samples) - 1, round(0.95 * len(samples)) - 1)]
        timings.append(
            Timing(database, conversations, case.name, rows, statistics.median(samples), p95)
        )
        print(f"  {database} {case.name}: p50 {timings[-1].p50_ms:.1f} ms", flush=True)
    return timings


async def run_postgres(
    url: str, conversations: int, messages: int, repeat: int, explain: bool
) -> list[Timing]:
    convos, msgs, common = generate(conversations, messages)
    # The bulk load comes after the migrations, so their indexes are built on it as they would
    # be on a live database: maintained row by row, not created in one pass.
    store = PostgresStore(url)
    await store.open()
    try:
        conn = await asyncpg.connect(url)
        try:
            t0 = time.perf_counter()
            await conn.execute(
                "INSERT INTO accounts (id, name, created) VALUES ($1, 'bench', 0)", ACCOUNT
            )
            await conn.copy_records_to_table(
                "conversations", records=convos, columns=list(CONVERSATIONS.column_names)
            )
            await conn.copy_records_to_table(
                "messages", records=msgs, columns=list(MESSAGES.column_names)
            )
            await conn.execute("VACUUM ANALYZE")
            print(f"postgres: loaded and analyzed in {time.perf_counter() - t0:.1f} s")
            cases = scenarios(common)
            timings = await time_store(store, "postgres", conversations, cases, repeat)
            if explain:
                for case in cases:
                    sql, params = PG_INBOX.select(select_list(CONVERSATIONS), ACCOUNT, case.query)
                    plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
                    print(f"\n-- {case.name}\n" + "\n".join(r[0] for r in plan))
        finally:
            await conn.close()
    finally:
        await store.close()
    return timings


async def run_sqlite(conversations: int, messages: int, repeat: int) -> list[Timing]:
    convos, msgs, common = generate(conversations, messages)
    with tempfile.TemporaryDirectory() as folder:
        path = str(Path(folder) / "bench.db")
        store = SQLiteStore(path)
        await store.open()
        await store.close()
        t0 = time.perf_counter()
        conn = sqlite3.connect(path)
        with conn:
            conn.execute(
                "INSERT INTO accounts (id, name, created) VALUES (?, 'bench', 0)", (ACCOUNT,)
            )
            # SQLite spells the store's numbered placeholders ?1, ?2, ...
            conn.executemany(insert_sql(CONVERSATIONS).replace("$", "?"), convos)
            conn.executemany(insert_sql(MESSAGES).replace("$", "?"), msgs)
        conn.execute("ANALYZE")
        conn.close()
        print(f"sqlite: loaded and analyzed in {time.perf_counter() - t0:.1f} s")
        store = SQLiteStore(path)
        await store.open()
        try:
            return await time_store(store, "sqlite", conversations, scenarios(common), repeat)
        finally:
            await store.close()


def table(timings: Sequence[Timing], messages: int) -> str:
    lines = [
        "| database | conversations x messages | scenario | rows | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.database} | {t.conversations:,} x {messages} | {t.scenario} | {t.rows} "
        f"| {t.p50_ms:.1f} | {t.p95_ms:.1f} |"
        for t in timings
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.search_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--database", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--postgres-admin", default=POSTGRES_ADMIN_URL)
    parser.add_argument("--conversations", type=int, default=50_000)
    parser.add_argument("--sqlite-conversations", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans")
    parser.add_argument("--record", action="store_true", help="append the table to the doc")
    args = parser.parse_args(argv)
    timings: list[Timing] = []
    if args.database in ("postgres", "both"):
        with postgres_database(args.postgres_admin) as url:
            timings += asyncio.run(
                run_postgres(url, args.conversations, args.messages, args.repeat, args.explain)
            )
    if args.database in ("sqlite", "both"):
        timings += asyncio.run(run_sqlite(args.sqlite_conversations, args.messages, args.repeat))
    result = table(timings, args.messages)
    print(result)
    if args.record:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        record_section(
            DOC,
            RESULTS_HEADING,
            f"### {when}, {git_revision()}\n\n- machine: {machine()}\n\n{result}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
