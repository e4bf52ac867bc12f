"""The reports' figures (issue 19) on both backends, against conversations whose expected
values are worked out by hand below: reopened, transferred, never answered, handed over from
the bot, proactive, outside the period, on another site, channel, team and account.

Times are written in local hours (UTC+1) from Monday 2026-03-02 00:00 local.
"""

from __future__ import annotations

import dataclasses
import secrets
import sqlite3
from datetime import UTC, date, datetime
from pathlib import Path

import asyncpg
import pytest

from server.conversations import Draft, _append
from storage.base import (
    Durations,
    HandoverFigures,
    RatingComment,
    RatingFigures,
    ReportQuery,
    ResponseFigures,
    Store,
)
from storage.migrations import load_migrations
from storage.models import (
    Change,
    Conversation,
    Message,
    Operator,
    Sender,
    SourceApp,
    Status,
    UserInfo,
)

OFFSET = 3600
START = datetime(2026, 3, 2, tzinfo=UTC).timestamp() - OFFSET
END = START + 3 * 86_400
MONDAY = (date(2026, 3, 2) - date(1970, 1, 1)).days
ACCOUNT = "acct_reports"


def at(hours: float, seconds: float = 0) -> float:
    return START + hours * 3600 + seconds


def query(**filters: object) -> ReportQuery:
    return ReportQuery(START, END, ((int(START), OFFSET),), **filters)  # type: ignore[arg-type]


Said = tuple[Sender, float, int | None]


async def put(
    store: Store,
    account_id: str,
    said: list[Said],
    *,
    source_app: SourceApp = "liveoperator",
    status: Status | None = None,
    owner: int | None = None,
    resolved_at: float | None = None,
    site_id: int = 1,
    team_id: int | None = None,
    rating: tuple[int, str, float] | None = None,
) -> str:
    """Runs the engine's rules over ``said`` (created at the first message), then sets what
    later operator actions would (status, owner after a transfer, rating) and writes it all."""
    convo = Conversation(
        id=secrets.token_urlsafe(8), account_id=account_id, source_app=source_app,
        status="open", mode="bot", operator_id=None, team_id=team_id, user_info=UserInfo(),
        created=said[0][1], last_activity=said[0][1], resolved_at=None, site_id=site_id,
    )  # fmt: skip
    messages: list[Message] = []
    for sender, when, operator_id in said:
        operator = Operator(account_id, operator_id, "Op", "", False, 0) if operator_id else None
        change = _append(convo, convo, Draft(sender, operator, "hi"), when)
        convo = change.after
        messages.extend(change.messages)
    convo = dataclasses.replace(
        convo,
        status=status or convo.status,
        operator_id=owner if owner is not None else convo.operator_id,
        resolved_at=resolved_at,
    )
    if rating is not None:
        score, comment, rated = rating
        convo = dataclasses.replace(
            convo, rating=score, rating_comment=comment, rated_resolved_at=rated
        )
    final = convo
    await store.write(account_id, None, lambda _: Change(None, final, tuple(messages)))
    return final.id


@pytest.fixture
async def seeded(store: Store) -> dict[str, int | str]:
    await store.create_account(ACCOUNT, "Reports", "hash-reports")
    await store.create_account("acct_other", "Other", "hash-other")
    alex = (await store.create_operator(ACCOUNT, "Alex", "alex@r.test", "x", False)).id
    ada = (await store.create_operator(ACCOUNT, "Ada", "ada@r.test", "x", True)).id
    sales = (await store.create_team(ACCOUNT, "Sales", [alex])).id
    shop = (await store.create_site(ACCOUNT, "Shop", "#000000", "right", "", None)).id
    # A: answered in 2 minutes, resolved after an hour, rated 5 with a comment.
    a = await put(
        store, ACCOUNT, [("visitor", at(9), None), ("operator", at(9, 120), alex)],
        status="resolved", owner=alex, resolved_at=at(10), rating=(5, "Great", at(10)),
    )  # fmt: skip
    # B: answered in 10 minutes, resolved Monday 11:00, reopened Tuesday 08:00 and resolved
    # again at 09:00: it counts once, on Tuesday, 23 hours after it opened, rated 3 then.
    await put(
        store, ACCOUNT,
        [("visitor", at(10), None), ("operator", at(10, 600), alex),
         ("visitor", at(32), None), ("operator", at(32, 60), alex)],
        status="resolved", owner=alex, resolved_at=at(33), rating=(3, "", at(33)),
    )  # fmt: skip
    # C: Alex answers in 30 minutes and transfers it to Ada, who resolves it at 16:00: the
    # first response is Alex's, the resolution and the rating Ada's.
    c = await put(
        store, ACCOUNT,
        [("visitor", at(38), None), ("operator", at(38, 1800), alex),
         ("operator", at(39), ada)],
        status="resolved", owner=ada, resolved_at=at(40), rating=(1, "Slow", at(40)),
    )  # fmt: skip
    # D: never answered, routed to Sales.
    await put(store, ACCOUNT, [("visitor", at(68), None)], team_id=sales)
    # E: the bot answers, then Ada takes over 5 minutes after the visitor's first message.
    await put(
        store, ACCOUNT,
        [("visitor", at(51), None), ("bot", at(51, 5), None), ("visitor", at(51, 60), None),
         ("operator", at(51, 300), ada)],
        source_app="chatbot",
    )  # fmt: skip
    # F: the bot still handles it: no first response to wait for.
    await put(
        store, ACCOUNT, [("visitor", at(52), None), ("bot", at(52, 5), None)],
        source_app="chatbot",
    )  # fmt: skip
    # G: an SMS opened before the period, resolved in it (Monday 02:00) after 4 hours.
    await put(
        store, ACCOUNT, [("visitor", at(-2), None), ("operator", at(-1), alex)],
        source_app="smsbroadcast", status="resolved", owner=alex, resolved_at=at(2),
    )  # fmt: skip
    # H: proactive, on the shop's site: the response time runs from the visitor's answer.
    await put(
        store, ACCOUNT,
        [("operator", at(12), alex), ("visitor", at(12, 60), None),
         ("operator", at(12, 3660), alex)],
        site_id=shop,
    )  # fmt: skip
    # Another account's conversation in the same hours never counts.
    await put(store, "acct_other", [("visitor", at(9), None)])
    return {"alex": alex, "ada": ada, "sales": sales, "shop": shop, "a": a, "c": c}


async def test_volume_counts_by_local_day_and_hour_of_the_week(
    store: Store, seeded: dict[str, int | str]
) -> None:
    volume = await store.report_volume(ACCOUNT, query())
    assert volume.opened_by_day == {MONDAY: 3, MONDAY + 1: 1, MONDAY + 2: 3}
    assert volume.resolved_by_day == {MONDAY: 2, MONDAY + 1: 2}
    assert volume.opened_by_hour == {9: 1, 10: 1, 12: 1, 38: 1, 51: 1, 52: 1, 68: 1}
    assert volume.resolved_by_hour == {2: 1, 10: 1, 33: 1, 40: 1}


async def test_response_times_over_reopened_transferred_unanswered_and_bot_conversations(
    store: Store, seeded: dict[str, int | str]
) -> None:
    # First responses 120 (A), 300 (E), 600 (B), 1800 (C), 3600 (H); D unanswered; F the
    # bot's. Resolutions 3600 (A), 7200 (C), 14400 (G), 82800 (B, reopened).
    assert await store.report_response_times(ACCOUNT, query()) == ResponseFigures(
        first_response=Durations(5, 600, 3600),
        unanswered=1,
        first_response_bands=(0, 1, 2, 1, 1, 0, 0),
        resolution=Durations(4, 7200, 82800),
    )


async def test_an_operators_figures_follow_transfers(
    store: Store, seeded: dict[str, int | str]
) -> None:
    alex = await store.report_response_times(ACCOUNT, query(operator_id=seeded["alex"]))
    # Alex sent C's first reply before transferring it; its resolution is Ada's.
    assert alex.first_response == Durations(4, 600, 3600)
    assert alex.resolution == Durations(3, 14400, 82800) and alex.unanswered == 0
    ada = await store.report_response_times(ACCOUNT, query(operator_id=seeded["ada"]))
    assert (ada.first_response, ada.resolution) == (
        Durations(1, 300, 300),
        Durations(1, 7200, 7200),
    )
    ratings = await store.report_ratings(ACCOUNT, query(operator_id=seeded["ada"]))
    assert (ratings.count, ratings.average) == (1, 1.0)
    opened = await store.report_volume(ACCOUNT, query(operator_id=seeded["alex"]))
    assert opened.opened_by_day == {MONDAY: 3} and opened.resolved_by_day == {
        MONDAY: 2, MONDAY + 1: 1,
    }  # fmt: skip


async def test_filters_by_site_channel_and_team(store: Store, seeded: dict[str, int | str]) -> None:
    site = await store.report_volume(ACCOUNT, query(site_id=seeded["shop"]))
    assert site.opened_by_day == {MONDAY: 1} and site.resolved_by_day == {}
    bots = await store.report_handover(ACCOUNT, query(source_apps=("chatbot",)))
    assert bots == HandoverFigures(opened=2, with_bot=2, handed_over=1)
    team = await store.report_response_times(ACCOUNT, query(team_id=seeded["sales"]))
    assert team.unanswered == 1 and team.first_response == Durations(0, None, None)
    nothing = await store.report_ratings(ACCOUNT, query(source_apps=()))
    assert nothing == RatingFigures(0, None, (0, 0, 0, 0, 0), ())


async def test_bot_handover_share(store: Store, seeded: dict[str, int | str]) -> None:
    assert await store.report_handover(ACCOUNT, query()) == HandoverFigures(7, 2, 1)


async def test_ratings_average_distribution_and_newest_comments(
    store: Store, seeded: dict[str, int | str]
) -> None:
    ratings = await store.report_ratings(ACCOUNT, query())
    assert ratings == RatingFigures(
        count=3,
        average=3.0,
        distribution=(1, 0, 1, 0, 1),
        comments=(
            RatingComment(str(seeded["c"]), 1, "Slow", at(40), int(seeded["ada"])),
            RatingComment(str(seeded["a"]), 5, "Great", at(10), int(seeded["alex"])),
        ),
    )


async def test_an_empty_period_has_no_figures(store: Store, seeded: dict[str, int | str]) -> None:
    empty = ReportQuery(END + 86_400, END + 2 * 86_400, ((0, 0),))
    assert await store.report_response_times(ACCOUNT, empty) == ResponseFigures(
        Durations(0, None, None), 0, (0,) * 7, Durations(0, None, None)
    )
    assert await store.report_handover(ACCOUNT, empty) == HandoverFigures(0, 0, 0)


async def test_days_and_hours_follow_a_daylight_saving_change(store: Store) -> None:
    """Berlin moves from UTC+1 to UTC+2 at 01:00 UTC on Sunday 2026-03-29."""
    await store.create_account(ACCOUNT, "Reports", "hash-reports")
    change = int(datetime(2026, 3, 29, 1, tzinfo=UTC).timestamp())
    utc = datetime(2026, 3, 28, tzinfo=UTC).timestamp()
    for hours in (24.5, 25.5, 46.5):  # 01:30 CET, 03:30 CEST, Monday 00:30 CEST
        await put(store, ACCOUNT, [("visitor", utc + hours * 3600, None)])
    berlin = ReportQuery(utc - 3600, utc + 3 * 86_400, ((int(utc - 3600), 3600), (change, 7200)))
    volume = await store.report_volume(ACCOUNT, berlin)
    sunday = (date(2026, 3, 29) - date(1970, 1, 1)).days
    assert volume.opened_by_day == {sunday: 2, sunday + 1: 1}
    assert volume.opened_by_hour == {6 * 24 + 1: 1, 6 * 24 + 3: 1, 0: 1}


def backfill(dialect: str) -> list[str]:
    """Migration 0009's statements that fill the report columns of existing conversations."""
    sql = dict(load_migrations(dialect))[9]
    return [s for s in sql[sql.index("UPDATE conversations SET") :].split(";") if s.strip()]


CLEARED = (
    "UPDATE conversations SET asked_at = NULL, replied_at = NULL, replied_by = NULL,"
    " bot_answered = {false}"
)


async def conversations_of(store: Store, ids: list[str]) -> list[Conversation | None]:
    return [await store.get_conversation(ACCOUNT, i) for i in ids]


async def seed_for_backfill(store: Store) -> list[str]:
    await store.create_account(ACCOUNT, "Reports", "hash-reports")
    return [
        await put(store, ACCOUNT, said)
        for said in (
            [("operator", at(1), 1), ("visitor", at(2), None), ("operator", at(3), 2)],
            [("visitor", at(1), None), ("bot", at(1, 5), None), ("operator", at(2), 1)],
            [("visitor", at(1), None), ("bot", at(1, 5), None)],
            [("visitor", at(1), None)],
        )
    ]


async def test_migration_0009_fills_report_columns_as_the_engine_does_on_sqlite(
    sqlite_store: Store, tmp_path: Path
) -> None:
    ids = await seed_for_backfill(sqlite_store)
    expected = await conversations_of(sqlite_store, ids)
    conn = sqlite3.connect(tmp_path / "contract.db")
    with conn:
        conn.execute(CLEARED.format(false=0))
        for statement in backfill("sqlite"):
            conn.execute(statement)
    conn.close()
    assert await conversations_of(sqlite_store, ids) == expected


async def test_migration_0009_fills_report_columns_as_the_engine_does_on_postgres(
    postgres_store: Store, postgres_url: str
) -> None:
    ids = await seed_for_backfill(postgres_store)
    expected = await conversations_of(postgres_store, ids)
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute(CLEARED.format(false="FALSE"))
        for statement in backfill("postgres"):
            await conn.execute(statement)
    finally:
        await conn.close()
    assert await conversations_of(postgres_store, ids) == expected
