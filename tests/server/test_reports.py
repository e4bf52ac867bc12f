"""Issue 19 at the public surface: the visitor's satisfaction rating (chat window URL), its
display in the operator panel and on the stream, and the reports API, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.server.realtime_clients import SSEClient, serve, sse
from tests.storage.conftest import postgres_url  # noqa: F401 (a fixture, used by name)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

PANEL = "/api/v1/operator"


async def token(tenant: Tenant, who: str) -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{who}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    assert response.status_code == 200, response.json()
    return bearer(response.json()["token"])


async def chat(tenant: Tenant, text: str = "Hello") -> str:
    response = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage", data={"message": text}
    )
    convo: str = response.json()["convoID"]
    return convo


async def rate(tenant: Tenant, convo: str, **body: Any) -> httpx.Response:
    return await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/rate", json={"convoID": convo, **body}
    )


async def panel(tenant: Tenant, headers: dict[str, str], path: str) -> dict[str, Any]:
    response = await tenant.client.post(f"{PANEL}/{path}", json={}, headers=headers)
    assert response.status_code == 200, response.json()
    body: dict[str, Any] = response.json()
    return body


async def view(tenant: Tenant, headers: dict[str, str], convo: str) -> dict[str, Any]:
    response = await tenant.client.get(f"{PANEL}/conversation/{convo}", headers=headers)
    assert response.status_code == 200, response.json()
    conversation: dict[str, Any] = response.json()["conversation"]
    return conversation


@pytest.fixture
async def alex(tenant: Tenant) -> dict[str, str]:
    return await token(tenant, "alex")


@pytest.fixture
async def ada(tenant: Tenant) -> dict[str, str]:
    return await token(tenant, "ada")


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as url:
        yield url


# ratings


async def test_a_resolved_conversation_is_rated_once_and_shown_to_operators(
    tenant: Tenant, alex: dict[str, str]
) -> None:
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    rated = await rate(tenant, convo, rating=4, comment="  Quick, thanks!  ")
    assert rated.status_code == 200, rated.json()
    assert rated.json() == {
        "success": True, "convoID": convo, "rating": 4, "comment": "Quick, thanks!",
    }  # fmt: skip
    shown = await view(tenant, alex, convo)
    assert shown["rating"] == {
        "score": 4, "comment": "Quick, thanks!", "resolved_at": shown["resolved_at"],
    }  # fmt: skip
    assert_error(await rate(tenant, convo, rating=5), 409, "already_rated")
    assert (await view(tenant, alex, convo))["rating"]["score"] == 4


async def test_a_reopened_and_re_resolved_conversation_may_be_rated_again(
    tenant: Tenant, alex: dict[str, str]
) -> None:
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    assert (await rate(tenant, convo, rating=2)).status_code == 200
    await chat_again(tenant, convo)
    assert_error(await rate(tenant, convo, rating=5), 409, "not_resolved")
    # The earlier rating stays on record while the conversation is open again.
    assert (await view(tenant, alex, convo))["rating"]["score"] == 2
    await panel(tenant, alex, f"close/{convo}")
    assert (await rate(tenant, convo, rating="5", comment="Sorted")).status_code == 200
    assert (await view(tenant, alex, convo))["rating"]["comment"] == "Sorted"


async def chat_again(tenant: Tenant, convo: str) -> None:
    response = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage",
        data={"message": "One more thing", "convoID": convo},
    )
    assert response.status_code == 200, response.json()


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"rating": 0}, "invalid_rating"),
        ({"rating": 6}, "invalid_rating"),
        ({"rating": -1}, "invalid_rating"),
        ({"rating": "5.0"}, "invalid_rating"),
        ({"rating": 5.0}, "invalid_field"),
        ({"rating": "\u0665"}, "invalid_rating"),  # Arabic-Indic five
        ({"rating": " 5"}, "invalid_rating"),
        ({"rating": [5]}, "invalid_field"),
        ({"rating": True}, "invalid_field"),
        ({"rating": "\x00"}, "invalid_rating"),
        ({}, "missing_field"),
        ({"rating": 5, "comment": "bad\x00"}, "invalid_characters"),
        ({"rating": 5, "comment": "c" * 1001}, "message_too_long"),
        ({"rating": 5, "comment": ["x"]}, "invalid_field"),
        ({"rating": 5, "operatorID": 1}, "operator_not_allowed"),
    ],
)
async def test_bad_ratings_are_refused_and_store_nothing(
    tenant: Tenant, alex: dict[str, str], body: dict[str, Any], code: str
) -> None:
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    assert_error(await rate(tenant, convo, **body), 400, code)
    assert (await view(tenant, alex, convo))["rating"] is None


async def test_rating_a_conversation_not_resolved_is_409(tenant: Tenant) -> None:
    assert_error(await rate(tenant, await chat(tenant), rating=5), 409, "not_resolved")


async def test_rating_an_unknown_or_missing_conversation_is_404_or_400(
    tenant: Tenant, other_tenant: Tenant, alex: dict[str, str]
) -> None:
    assert_error(await rate(tenant, "nope", rating=5), 404, "conversation_not_found")
    theirs = await chat(other_tenant)
    assert_error(await rate(tenant, theirs, rating=5), 404, "conversation_not_found")
    response = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/rate", json={"rating": 5}
    )
    assert_error(response, 400, "missing_field")


async def test_a_site_that_turns_ratings_off_refuses_them(
    tenant: Tenant, alex: dict[str, str], ada: dict[str, str]
) -> None:
    response = await tenant.client.patch(
        "/api/v1/admin/sites/1", json={"ask_rating": False}, headers=ada
    )
    assert response.status_code == 200 and response.json()["site"]["ask_rating"] is False
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    assert_error(await rate(tenant, convo, rating=5), 409, "rating_disabled")
    bad = await tenant.client.patch(
        "/api/v1/admin/sites/1", json={"ask_rating": "maybe"}, headers=ada
    )
    assert_error(bad, 400, "invalid_field")


async def test_a_rating_is_announced_as_a_conversation_update(
    base: str, tenant: Tenant, alex: dict[str, str]
) -> None:
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    stream: SSEClient
    async with sse(base, alex["Authorization"].removeprefix("Bearer ")) as stream:
        assert (await rate(tenant, convo, rating=3, comment="ok")).status_code == 200
        event = await stream.next()
        assert event.event == "conversation:updated"
        assert event.data["rating"]["score"] == 3 and event.data["rating"]["comment"] == "ok"


# the reports API

REPORTS = "/api/v1/reports"


def around_today(**params: Any) -> dict[str, Any]:
    """A period that holds every conversation a test has just made, whatever the hour."""
    today = datetime.now(UTC).date()
    return {"from": str(today - timedelta(days=1)), "to": str(today + timedelta(days=1)),
            **params}  # fmt: skip


async def get_report(
    tenant: Tenant, headers: dict[str, str], kind: str, params: dict[str, Any]
) -> httpx.Response:
    return await tenant.client.get(f"{REPORTS}/{kind}", params=params, headers=headers)


async def test_a_rating_reaches_the_ratings_report_as_json_and_csv(
    tenant: Tenant, alex: dict[str, str], ada: dict[str, str]
) -> None:
    convo = await chat(tenant)
    await panel(tenant, alex, f"close/{convo}")
    assert (await rate(tenant, convo, rating=4, comment='Nice, "quick"')).status_code == 200
    response = await get_report(tenant, ada, "ratings", around_today(tz="Europe/Berlin"))
    body = response.json()
    assert response.status_code == 200, body
    assert (body["report"], body["count"], body["average"]) == ("ratings", 1, 4.0)
    assert body["period"]["tz"] == "Europe/Berlin" and body["period"]["business_hours"] is False
    assert [r["count"] for r in body["rows"] if r["kind"] == "score"] == [0, 0, 0, 1, 0]
    comments = [r for r in body["rows"] if r["kind"] == "comment"]
    assert [(c["score"], c["comment"], c["conversation_id"]) for c in comments] == [
        (4, 'Nice, "quick"', convo)
    ]
    exported = await get_report(tenant, ada, "ratings.csv", around_today(tz="Europe/Berlin"))
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    assert "attachment" in exported.headers["content-disposition"]
    lines = exported.text.splitlines()
    assert lines[0] == "kind,score,count,comment,conversation_id,resolved_at"
    assert lines[4] == "score,4,1,,,"
    assert lines[6].startswith(f'comment,4,,"Nice, ""quick""",{convo},')
    assert len(lines) == 1 + len(body["rows"])


async def test_every_report_answers_with_figures_from_the_store(
    tenant: Tenant, alex: dict[str, str], ada: dict[str, str]
) -> None:
    convo = await chat(tenant)
    await tenant.client.post(
        f"{PANEL}/message", json={"conversation_id": convo, "content": "Hi"}, headers=alex
    )
    await panel(tenant, alex, f"close/{convo}")
    await chat(tenant)  # never answered
    volume = (await get_report(tenant, ada, "volume", around_today())).json()
    days = [r for r in volume["rows"] if r["series"] == "day"]
    assert len(days) == 3 and sum(d["opened"] for d in days) == 2
    assert sum(d["resolved"] for d in days) == 1
    assert len([r for r in volume["rows"] if r["series"] == "hour_of_week"]) == 168
    times = (await get_report(tenant, ada, "response-times", around_today())).json()
    assert times["first_response"]["count"] == 1 and times["unanswered"] == 1
    assert times["resolution"]["count"] == 1
    handover = (await get_report(tenant, ada, "handover", around_today())).json()
    assert handover["rows"] == [{"opened": 2, "with_bot": 0, "handed_over": 0, "share": None}]


async def test_an_operator_sees_only_their_own_figures(
    tenant: Tenant, alex: dict[str, str], ada: dict[str, str]
) -> None:
    mine = await chat(tenant)
    await panel(tenant, alex, f"accept/{mine}")
    theirs = await chat(tenant)
    await panel(tenant, ada, f"accept/{theirs}")
    own = (await get_report(tenant, alex, "volume", around_today())).json()
    assert own["period"]["filters"]["operator_id"] == tenant.operator_id
    assert sum(r["opened"] for r in own["rows"] if r["series"] == "day") == 1
    explicit = await get_report(
        tenant, alex, "volume", around_today(operator_id=tenant.operator_id)
    )
    assert explicit.status_code == 200
    other = await get_report(tenant, alex, "volume", around_today(operator_id=tenant.admin_id))
    assert_error(other, 403, "own_figures_only")
    everyone = (await get_report(tenant, ada, "volume", around_today())).json()
    assert sum(r["opened"] for r in everyone["rows"] if r["series"] == "day") == 2


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"tz": "Mars/Olympus"}, 400, "invalid_time_zone"),
        ({"tz": "../../etc/passwd"}, 400, "invalid_time_zone"),
        ({"tz": "UTC\x00"}, 400, "invalid_time_zone"),
        ({"from": "2026-03-05", "to": "2026-03-04"}, 400, "invalid_period"),
        ({"from": "2025-01-01", "to": "2026-01-02"}, 400, "period_too_long"),
        ({"from": "2026-02-30", "to": "2026-03-01"}, 400, "invalid_date"),
        ({"from": "20260301", "to": "2026-03-01"}, 400, "invalid_date"),
        ({"from": "\u0662\u0660\u0662\u0666-03-01", "to": "2026-03-01"}, 400, "invalid_date"),
        ({"from": None}, 400, "missing_field"),
        ({"channel": "fax"}, 400, "invalid_channel"),
        ({"site_id": "0"}, 400, "invalid_field"),
        ({"site_id": "x"}, 400, "invalid_field"),
        ({"site_id": "99"}, 404, "site_not_found"),
        ({"team_id": "99"}, 404, "team_not_found"),
        ({"operator_id": "99"}, 404, "operator_not_found"),
    ],
)
async def test_bad_report_parameters_are_refused(
    tenant: Tenant, ada: dict[str, str], params: dict[str, Any], status: int, code: str
) -> None:
    query = {k: v for k, v in {**around_today(), **params}.items() if v is not None}
    assert_error(await get_report(tenant, ada, "volume", query), status, code)


async def test_unknown_reports_and_callers_are_refused(tenant: Tenant, ada: dict[str, str]) -> None:
    assert_error(await get_report(tenant, ada, "profit", around_today()), 404, "report_not_found")
    assert_error(await get_report(tenant, {}, "volume", around_today()), 401, "missing_credentials")
    by_key = await get_report(tenant, bearer(tenant.api_key), "ratings", around_today())
    assert by_key.status_code == 200 and by_key.json()["count"] == 0


async def test_rateable_says_when_the_window_should_ask(
    tenant: Tenant, alex: dict[str, str], ada: dict[str, str]
) -> None:
    convo = await chat(tenant)
    url = f"/{tenant.account_id}/liveoperator/rateable"

    async def asks() -> bool:
        response = await tenant.client.post(url, data={"convoID": convo})
        assert response.status_code == 200, response.json()
        answer: bool = response.json()["ask"]
        return answer

    assert await asks() is False  # not resolved
    await panel(tenant, alex, f"close/{convo}")
    assert await asks() is True
    await rate(tenant, convo, rating=5)
    assert await asks() is False  # this resolution is rated
    await tenant.client.patch("/api/v1/admin/sites/1", json={"ask_rating": False}, headers=ada)
    await chat_again(tenant, convo)
    await panel(tenant, alex, f"close/{convo}")
    assert await asks() is False  # the site does not ask
    assert_error(await tenant.client.post(url, data={}), 400, "missing_field")
    assert_error(
        await tenant.client.post(url, data={"convoID": "x"}), 404, "conversation_not_found"
    )
