"""Sites' business hours, away message and reply time (issue 18): the admin REST that sets
them, and what the public widget-config tells a site's widget about who can answer now."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from server.business_hours import WEEKDAYS, is_open, next_opening, parse_hours
from storage.models import Site
from tests.conftest import Tenant, assert_error
from tests.server.test_inbox import ADMIN, OPERATOR, Panel, admin_of, operator_of

BERLIN = ZoneInfo("Europe/Berlin")
NINE_TO_FIVE = [{"day": d, "open": "09:00", "close": "17:00"} for d in WEEKDAYS[:5]]


async def patch_site(tenant: Tenant, site_id: int, body: dict[str, Any]) -> Any:
    return await tenant.client.patch(
        f"{ADMIN}/sites/{site_id}", json=body, headers={"X-Api-Key": tenant.api_key}
    )


async def availability(tenant: Tenant, site_id: int = 1) -> dict[str, Any]:
    response = await tenant.client.get(
        f"/{tenant.account_id}/liveoperator/widget-config", params={"site": site_id}
    )
    assert response.status_code == 200
    found: dict[str, Any] = response.json()["availability"]
    return found


async def beat(panel: Panel, site_ids: list[int]) -> None:
    response = await panel.client.post(
        f"{OPERATOR}/heartbeat", json={"site_ids": site_ids}, headers=panel.headers
    )
    assert response.status_code == 200


def berlin(day: str, clock: str) -> float:
    return datetime.fromisoformat(f"{day}T{clock}").replace(tzinfo=BERLIN).timestamp()


def shop(**hours: Any) -> Site:
    return Site("a", 1, "Shop", "#000000", "right", "", None, 0.0, **hours)


async def test_an_admin_sets_a_sites_hours_away_message_and_reply_time(tenant: Tenant) -> None:
    body = {
        "time_zone": "Europe/Berlin",
        # Given in any order; a split day is two intervals.
        "business_hours": [
            {"day": "sat", "open": "10:00", "close": "14:00"},
            {"day": "mon", "open": "13:00", "close": "24:00"},
            {"day": "mon", "open": "08:00", "close": "12:00"},
        ],
        "away_message": "We are out.\nLeave your email and we will write back.",
        "reply_time": "within a day",
    }
    site = (await patch_site(tenant, 1, body)).json()["site"]
    assert site["time_zone"] == "Europe/Berlin"
    assert site["business_hours"] == [
        {"day": "mon", "open": "08:00", "close": "12:00"},
        {"day": "mon", "open": "13:00", "close": "24:00"},
        {"day": "sat", "open": "10:00", "close": "14:00"},
    ]
    assert (site["away_message"], site["reply_time"]) == (body["away_message"], "within a day")
    listed = await tenant.client.get(f"{ADMIN}/sites", headers={"X-Api-Key": tenant.api_key})
    assert listed.json()["sites"][0]["business_hours"] == site["business_hours"]
    # An empty list: always open again.
    cleared = (await patch_site(tenant, 1, {"business_hours": []})).json()["site"]
    assert cleared["business_hours"] == [] and cleared["time_zone"] == "Europe/Berlin"


@pytest.mark.parametrize(
    "patch",
    [
        {"time_zone": "Mars/Olympus"},
        {"time_zone": "../../etc/passwd"},
        {"time_zone": "UTC\x00"},
        {"time_zone": ["UTC"]},
        {"time_zone": "A" * 65},
        {"business_hours": "mon 09:00-17:00"},
        {"business_hours": {"day": "mon", "open": "09:00", "close": "17:00"}},
        {"business_hours": [["mon", "09:00", "17:00"]]},
        {"business_hours": [{"day": "monday", "open": "09:00", "close": "17:00"}]},
        {"business_hours": [{"day": 1, "open": "09:00", "close": "17:00"}]},
        {"business_hours": [{"day": "mon", "open": "17:00", "close": "09:00"}]},
        {"business_hours": [{"day": "mon", "open": "09:00", "close": "09:00"}]},
        {"business_hours": [{"day": "mon", "open": "9:00", "close": "17:00"}]},
        {"business_hours": [{"day": "mon", "open": "09:00", "close": "25:00"}]},
        {"business_hours": [{"day": "mon", "open": "24:00", "close": "24:00"}]},
        {"business_hours": [{"day": "mon", "open": "\u0660\u0669:00", "close": "17:00"}]},
        {"business_hours": [{"day": "mon", "open": 900, "close": 1700}]},
        {"business_hours": [{"day": "mon"}]},
        {
            "business_hours": [
                {"day": "tue", "open": "09:00", "close": "13:00"},
                {"day": "tue", "open": "12:00", "close": "17:00"},
            ]
        },
        {"business_hours": [{"day": "mon", "open": "09:00", "close": "10:00"}] * 29},
        {"away_message": "Closed\x00"},
        {"away_message": "x" * 501},
        {"away_message": ["Closed"]},
        {"reply_time": "x" * 121},
        {"reply_time": {"hours": 2}},
    ],
)
async def test_bad_hours_and_away_settings_are_a_clear_400(
    tenant: Tenant, patch: dict[str, Any]
) -> None:
    response = await patch_site(tenant, 1, patch)
    # A string that names no zone is the zone's error; anything else is a malformed field.
    named = patch.get("time_zone") in ("Mars/Olympus", "../../etc/passwd", "UTC\x00")
    assert_error(response, 400, "invalid_time_zone" if named else "invalid_field")
    unchanged = (await patch_site(tenant, 1, {})).json()["site"]
    assert (unchanged["time_zone"], unchanged["business_hours"]) == ("UTC", [])


async def test_the_widget_is_away_while_nobody_of_the_sites_team_is_online(
    tenant: Tenant,
) -> None:
    await patch_site(tenant, 1, {"away_message": "Back soon", "reply_time": "in an hour"})
    assert await availability(tenant) == {
        "away": True, "online": False, "open": True, "opens_at": None,
        "away_message": "Back soon", "reply_time": "in an hour",
    }  # fmt: skip
    alex, ada = await operator_of(tenant), await admin_of(tenant)
    await beat(alex, [1])
    assert (await availability(tenant))["away"] is False
    # Alex sets himself away from the site: nobody again.
    await alex.client.post(
        f"{OPERATOR}/set-status", json={"site_id": 1, "online": False}, headers=alex.headers
    )
    assert (await availability(tenant))["online"] is False
    # A site routed to a team counts only that team's operators: Ada's.
    team = await tenant.client.post(
        f"{ADMIN}/teams",
        json={"name": "Shop", "member_ids": [ada.operator_id]},
        headers={"X-Api-Key": tenant.api_key},
    )
    await tenant.client.post(
        f"{ADMIN}/sites", json={"name": "Shop"}, headers={"X-Api-Key": tenant.api_key}
    )
    await patch_site(tenant, 2, {"team_id": team.json()["team"]["id"]})
    await alex.client.post(
        f"{OPERATOR}/set-status", json={"site_id": 2, "online": True}, headers=alex.headers
    )
    assert (await availability(tenant, 2))["online"] is False
    await beat(ada, [2])
    assert (await availability(tenant, 2))["away"] is False


async def test_outside_business_hours_the_widget_is_away_and_says_when_it_opens(
    tenant: Tenant,
) -> None:
    await beat(await operator_of(tenant), [1])
    # Open only two days from now, 09:00-10:00 UTC: closed now, whoever is online.
    opens = datetime.now(UTC).date() + timedelta(days=2)
    hours = [{"day": WEEKDAYS[opens.weekday()], "open": "09:00", "close": "10:00"}]
    await patch_site(tenant, 1, {"business_hours": hours})
    found = await availability(tenant)
    assert (found["away"], found["online"], found["open"]) == (True, True, False)
    assert (
        found["opens_at"] == datetime(opens.year, opens.month, opens.day, 9, tzinfo=UTC).timestamp()
    )
    await patch_site(
        tenant,
        1,
        {"business_hours": [{"day": d, "open": "00:00", "close": "24:00"} for d in WEEKDAYS]},
    )
    assert await availability(tenant) | {"away_message": "", "reply_time": ""} == {
        "away": False, "online": True, "open": True, "opens_at": None,
        "away_message": "", "reply_time": "",
    }  # fmt: skip


def test_open_now_and_the_next_opening_in_the_sites_zone() -> None:
    site = shop(time_zone="Europe/Berlin", business_hours=parse_hours(NINE_TO_FIVE))
    friday = date(2026, 11, 20).isoformat()
    assert is_open(site, berlin(friday, "09:00")) and is_open(site, berlin(friday, "16:59"))
    assert not is_open(site, berlin(friday, "17:00"))
    # Friday evening: Monday 09:00; Monday early: the same morning.
    assert next_opening(site, berlin(friday, "18:00")) == berlin("2026-11-23", "09:00")
    assert next_opening(site, berlin("2026-11-23", "07:00")) == berlin("2026-11-23", "09:00")
    # Across the clocks going back (Sunday 2026-10-25): Monday 09:00 CET.
    assert next_opening(site, berlin("2026-10-23", "20:00")) == berlin("2026-10-26", "09:00")
    assert next_opening(site, berlin(friday, "10:00")) is None
    always = shop()
    assert is_open(always, 0.0) and next_opening(always, 0.0) is None


async def test_the_response_times_report_says_when_it_counted_business_hours(
    tenant: Tenant,
) -> None:
    async def period(report: str) -> dict[str, Any]:
        response = await tenant.client.get(
            f"/api/v1/reports/{report}",
            params={"from": "2026-11-16", "to": "2026-11-22"},
            headers={"X-Api-Key": tenant.api_key},
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()["period"]
        return found

    assert (await period("response-times"))["business_hours"] is False
    await patch_site(tenant, 1, {"business_hours": NINE_TO_FIVE})
    assert (await period("response-times"))["business_hours"] is True
    # Volumes have no durations.
    assert (await period("volume"))["business_hours"] is False
