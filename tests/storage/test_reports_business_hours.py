"""Business-hours-aware durations in the reports (issues 18 and 19), on both backends: only
time inside a site's open hours counts, worked out by hand below.

The shop is open Monday to Friday 09:00-17:00, Europe/Berlin; the default site has no hours
and keeps wall-clock time.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from server.business_hours import parse_hours
from server.reports import ReportRequest, Reports
from storage.base import Durations, ResponseFigures, SitePatch, Store
from tests.storage.test_reports_sql import put

ACCOUNT = "acct_hours"
BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_5 = [
    {"day": day, "open": "09:00", "close": "17:00"} for day in ("mon", "tue", "wed", "thu", "fri")
]


def berlin(day: str, clock: str) -> float:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=BERLIN).timestamp()


@pytest.fixture
async def shop(store: Store) -> int:
    await store.create_account(ACCOUNT, "Hours", "hash-hours")
    site = await store.create_site(ACCOUNT, "Shop", "#000000", "right", "", None)
    hours = SitePatch(time_zone="Europe/Berlin", business_hours=parse_hours(WEEKDAYS_9_TO_5))
    await store.update_site(ACCOUNT, site.id, hours)
    return site.id


async def times(store: Store, start: str, end: str, site_id: int | None = None) -> ResponseFigures:
    figures = await Reports(store).figures(
        ACCOUNT, None, "response-times", ReportRequest(start, end, "Europe/Berlin", site_id=site_id)
    )
    assert isinstance(figures[1], ResponseFigures)
    return figures[1]


async def test_only_open_hours_count_on_a_site_with_business_hours(store: Store, shop: int) -> None:
    # A: asked Friday 18:00 (closed), answered Monday 09:30: 30 minutes; resolved Monday
    # 10:00: an hour.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-20", "18:00"), None),
         ("operator", berlin("2026-11-23", "09:30"), 1)],
        site_id=shop, status="resolved", resolved_at=berlin("2026-11-23", "10:00"),
    )  # fmt: skip
    # B: asked Friday 16:00, answered Monday 10:00: 1 h + 1 h; resolved Tuesday 10:00:
    # 1 h Friday + 8 h Monday + 1 h Tuesday.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-20", "16:00"), None),
         ("operator", berlin("2026-11-23", "10:00"), 1)],
        site_id=shop, status="resolved", resolved_at=berlin("2026-11-24", "10:00"),
    )  # fmt: skip
    # C: asked and answered within Wednesday's hours: 5 minutes.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-18", "10:00"), None),
         ("operator", berlin("2026-11-18", "10:05"), 1)],
        site_id=shop,
    )  # fmt: skip
    # F: asked and answered on Saturday, when the shop is closed: no open time at all.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-21", "10:00"), None),
         ("operator", berlin("2026-11-21", "11:00"), 1)],
        site_id=shop,
    )  # fmt: skip
    # D: the default site has no hours: Saturday's 10 minutes count in full.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-21", "12:00"), None),
         ("operator", berlin("2026-11-21", "12:10"), 1)],
    )  # fmt: skip

    everything = await times(store, "2026-11-16", "2026-11-29")
    # First responses 0 (F), 300 (C), 600 (D), 1800 (A), 7200 (B): the median is the third.
    assert everything.first_response == Durations(5, 600, 7200)
    assert everything.resolution == Durations(2, 3600, 36000)
    # The bands count business time too: F under a minute, C and D under 15, A under an
    # hour, B under four.
    assert everything.first_response_bands == (1, 0, 2, 1, 1, 0, 0)
    only_shop = await times(store, "2026-11-16", "2026-11-29", site_id=shop)
    assert only_shop.first_response == Durations(4, 300, 7200)


async def test_open_time_across_a_daylight_saving_change(store: Store, shop: int) -> None:
    # Asked Friday 16:00 CEST, answered Monday 10:00 CET, after the clocks went back on
    # Sunday: an hour on Friday and one on Monday, though 67 hours went by.
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-10-23", "16:00"), None),
         ("operator", berlin("2026-10-26", "10:00"), 1)],
        site_id=shop,
    )  # fmt: skip
    figures = await times(store, "2026-10-19", "2026-10-30")
    assert figures.first_response == Durations(1, 7200, 7200)


async def test_always_open_when_the_hours_are_cleared(store: Store, shop: int) -> None:
    await put(
        store, ACCOUNT,
        [("visitor", berlin("2026-11-20", "16:00"), None),
         ("operator", berlin("2026-11-23", "10:00"), 1)],
        site_id=shop,
    )  # fmt: skip
    await store.update_site(ACCOUNT, shop, SitePatch(business_hours=()))
    figures = await times(store, "2026-11-16", "2026-11-29")
    assert figures.first_response == Durations(1, 66 * 3600, 66 * 3600)
