"""How long each report (issue 19) takes on 90 days of a busy account, on PostgreSQL.

    python -m bench.reports_bench [--conversations 100000] [--messages 10] [--repeat 7]
        [--explain] [--record]

A fresh database (bench/harness.py, dropped at the end) gets the store's migrations, then one
account's conversations and messages generated inside PostgreSQL with generate_series (no row
crosses the wire), then VACUUM ANALYZE. The data: 20 operators, 3 teams, 3 sites, four
channels; conversations spread evenly over the 90 days and 06:00-22:00; 30% begin with the bot
(half of those handed over), 85% are resolved, 5% never answered, 40% of the resolved rated.
Messages alternate visitor and operator (the bot's second, where it answers). The columns
reports read (first message, first reply, bot) are then filled by migration 0009's backfill.

Each scenario calls the store's report method (what GET /api/v1/reports/{kind} runs) once to
warm up and --repeat times, and reports p50 and the slowest; --explain prints EXPLAIN ANALYZE
of each statement.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from zoneinfo import ZoneInfo

import asyncpg

from bench.harness import (
    DOC,
    POSTGRES_ADMIN_URL,
    git_revision,
    machine,
    postgres_database,
    record_section,
)
from server.business_hours import WEEKDAYS, parse_hours, week_seconds
from server.reports import HOURS_MARGIN_S, ReportRequest, offsets, period
from storage.base import ReportQuery, SiteHours
from storage.migrations import load_migrations
from storage.postgres import PostgresStore
from storage.reports_sql import ReportsSql

RESULTS_HEADING = "## Reports results"
ACCOUNT = "acct-reports-bench"
DAYS = 90
FIRST_DAY = datetime.date(2026, 1, 5)
ZONE = "Europe/Berlin"
OPERATORS = 20
# The statements the store runs, for EXPLAIN.
PG_REPORTS = ReportsSql(lambda n: f"${n}", lambda x: f"floor({x})::bigint")

# Conversation $2 + g, created at $3 + spread over the days; the seed makes every run alike.
LOAD_CONVERSATIONS = """
INSERT INTO conversations (id, account_id, source_app, status, mode, operator_id, team_id, fname,
    lname, email, phone, created, last_activity, resolved_at, last_seq, unread,
    operator_read_seq, visitor_read_seq, site_id, rating, rating_comment, rated_resolved_at)
SELECT 'c' || g, $1, channel, CASE WHEN resolved THEN 'resolved' ELSE 'active' END,
    CASE WHEN answered OR NOT bot THEN 'operator' ELSE 'bot' END,
    CASE WHEN answered THEN 1 + g % $4 END, 1 + g % 3, 'Visitor', '', '', '', created,
    created + $5 * 60, CASE WHEN resolved THEN created + $5 * 60 + 600 + r3 * 7200 END, $5, 0,
    $5, $5, 1 + g % 3,
    CASE WHEN resolved AND r4 < 0.4 THEN 1 + (r4 * 100)::int % 5 END,
    CASE WHEN resolved AND r4 < 0.05 THEN 'Thanks!' ELSE '' END,
    CASE WHEN resolved AND r4 < 0.4 THEN created + $5 * 60 + 600 + r3 * 7200 END
FROM (
    SELECT g, r3, r4, bot, answered, answered AND r2 < 0.9 AS resolved,
        CASE WHEN bot THEN 'chatbot' WHEN g % 3 = 0 THEN 'smsbroadcast'
             WHEN g % 7 = 0 THEN 'emailbroadcast' ELSE 'liveoperator' END AS channel,
        $3 + (g % $6) * 86400 + 21600 + r1 * 57600 AS created
    FROM (
        SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
            g % 10 < 3 AS bot, NOT (g % 10 < 3 AND g % 2 = 0) AND g % 20 <> 1 AS answered
        FROM generate_series(1, $2) AS g
    ) AS drawn
) AS shaped
"""
# Seq s of every conversation: the visitor on odd seqs, the bot on seq 2 where it answers, an
# operator on the other even ones (only in answered conversations; the visitor's otherwise).
LOAD_MESSAGES = """
INSERT INTO messages (convo_id, seq, id, account_id, sender, operator_id, operator_name, text,
    created)
SELECT c.id, s, c.id || '-' || s, c.account_id, sender,
    CASE WHEN sender = 'operator' THEN c.operator_id END,
    CASE WHEN sender = 'operator' THEN 'Op' END, 'hello there',
    c.created + (s - 1) * (30 + abs(hashtext(c.id)) % 900)
FROM conversations c CROSS JOIN generate_series(1, $2) AS s,
    LATERAL (SELECT CASE
        WHEN s % 2 = 1 THEN 'visitor'
        WHEN s = 2 AND c.source_app = 'chatbot' THEN 'bot'
        WHEN c.operator_id IS NOT NULL THEN 'operator'
        ELSE 'visitor' END AS sender) AS who
WHERE c.account_id = $1
"""


MIGRATION = dict(load_migrations("postgres"))[9]
BACKFILL = MIGRATION[MIGRATION.index("UPDATE conversations SET") :]


@dataclass(frozen=True, slots=True)
class Timing:
    scenario: str
    report: str
    p50_ms: float
    max_ms: float


async def load(url: str, conversations: int, messages: int) -> None:
    conn = await asyncpg.connect(url)
    try:
        t0 = time.perf_counter()
        await conn.execute("SELECT setseed(0.19)")
        await conn.execute(
            "INSERT INTO accounts (id, name, created) VALUES ($1, 'bench', 0)", ACCOUNT
        )
        start = datetime.datetime.combine(FIRST_DAY, datetime.time(), datetime.UTC).timestamp()
        await conn.execute(
            LOAD_CONVERSATIONS, ACCOUNT, conversations, start, OPERATORS, messages, DAYS
        )
        await conn.execute(LOAD_MESSAGES, ACCOUNT, messages)
        loaded = time.perf_counter() - t0
        # The reports' columns, filled by migration 0009's own statements, as on an upgrade.
        await conn.execute(BACKFILL)
        filled = time.perf_counter() - t0 - loaded
        await conn.execute("VACUUM ANALYZE")
        counted = await conn.fetchval("SELECT count(*) FROM messages")
        print(f"loaded {conversations:,} conversations and {counted:,} messages in {loaded:.1f} s,"
              f" 0009's backfill took {filled:.1f} s", flush=True)  # fmt: skip
    finally:
        await conn.close()


def scenarios() -> list[tuple[str, ReportQuery]]:
    whole = period(ReportRequest(
        start=str(FIRST_DAY), end=str(FIRST_DAY + datetime.timedelta(days=DAYS - 1)), tz=ZONE,
    )).query  # fmt: skip
    # Issue 18: every site open 09:00-17:00 on weekdays, so each duration counts open time.
    week = week_seconds(
        parse_hours([{"day": d, "open": "09:00", "close": "17:00"} for d in WEEKDAYS[:5]])
    )
    shifts = offsets(ZoneInfo(ZONE), whole.start - HOURS_MARGIN_S, whole.end + HOURS_MARGIN_S)
    hours = tuple(SiteHours(site, week, shifts) for site in (1, 2, 3))
    return [
        (f"90 days, {ZONE}", whole),
        ("90 days, business hours on every site", replace(whole, hours=hours)),
        ("90 days, one operator", replace(whole, operator_id=7)),
        ("90 days, live chat only", replace(whole, source_apps=("liveoperator",))),
        ("last 7 days", replace(whole, start=whole.end - 7 * 86_400)),
    ]


async def time_reports(store: PostgresStore, repeat: int) -> list[Timing]:
    reports: dict[str, Callable[[str, ReportQuery], Awaitable[object]]] = {
        "volume": store.report_volume,
        "response-times": store.report_response_times,
        "handover": store.report_handover,
        "ratings": store.report_ratings,
    }
    timings = []
    for name, query in scenarios():
        for kind, run in reports.items():
            await run(ACCOUNT, query)
            samples = []
            for _ in range(repeat):
                t0 = time.perf_counter()
                await run(ACCOUNT, query)
                samples.append((time.perf_counter() - t0) * 1000)
            timings.append(Timing(name, kind, statistics.median(samples), max(samples)))
            print(f"  {name} {kind}: p50 {timings[-1].p50_ms:.1f} ms", flush=True)
    return timings


async def explain(url: str) -> None:
    conn = await asyncpg.connect(url)
    try:
        _, query = scenarios()[0]
        for kind in ("volume", "response_times", "handover", "ratings"):
            report = getattr(PG_REPORTS, kind)(ACCOUNT, query)
            for sql, params in report.statements:
                plan = await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *params)
                print(f"\n-- {kind}\n" + "\n".join(r[0] for r in plan))
    finally:
        await conn.close()


async def run(
    url: str, conversations: int, messages: int, repeat: int, plans: bool
) -> list[Timing]:
    store = PostgresStore(url)
    await store.open()
    try:
        await load(url, conversations, messages)
        timings = await time_reports(store, repeat)
        if plans:
            await explain(url)
        return timings
    finally:
        await store.close()


def table(timings: Sequence[Timing]) -> str:
    lines = ["| scenario | report | p50 ms | slowest ms |", "|---|---|---|---|"]
    lines += [f"| {t.scenario} | {t.report} | {t.p50_ms:.1f} | {t.max_ms:.1f} |" for t in timings]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reports_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--postgres-admin", default=POSTGRES_ADMIN_URL)
    parser.add_argument("--conversations", type=int, default=100_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--explain", action="store_true", help="print PostgreSQL's plans")
    parser.add_argument("--record", action="store_true", help="append the table to the doc")
    args = parser.parse_args(argv)
    with postgres_database(args.postgres_admin) as url:
        timings = asyncio.run(
            run(url, args.conversations, args.messages, args.repeat, args.explain)
        )
    result = table(timings)
    print(result)
    if args.record:
        when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
        size = f"{args.conversations:,} conversations x {args.messages} messages"
        record_section(
            DOC,
            RESULTS_HEADING,
            f"### {when}, {git_revision()}\n\n- machine: {machine()}\n- {size}\n\n{result}",
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
