"""Issue 18 over HTTP, on SQLite and PostgreSQL: a team's round robin among its online
operators (the admin's settings, presence, the limit, the Online/Away switch), and operators'
personal canned responses (their REST, the composer's canned_id, bad input)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.directory import PERSONAL_CANNED_MAX
from server.services import Services
from tests.conftest import Tenant, assert_error
from tests.server.test_admin import ROOT, key
from tests.server.test_inbox import OPERATOR, Panel, admin_of, operator_of
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)


async def _admin(tenant: Tenant, method: str, path: str, **body: Any) -> dict[str, Any]:
    response = await tenant.client.request(method, f"{ROOT}/{path}", json=body, headers=key(tenant))
    found: dict[str, Any] = response.json()
    assert response.status_code in (200, 201), found
    return found


async def _routed_site(tenant: Tenant, **team: Any) -> tuple[int, int]:
    """A team of Ada and Alex with ``team`` settings, and a site routed to it."""
    members = [tenant.admin_id, tenant.operator_id]
    team_id = (await _admin(tenant, "POST", "teams", name="Sales", member_ids=members, **team))[
        "team"
    ]["id"]
    site_id = (await _admin(tenant, "POST", "sites", name="Shop", team_id=team_id))["site"]["id"]
    return team_id, site_id


async def _owner(tenant: Tenant, site_id: int) -> int | None:
    """The owner of a new conversation a visitor opens on the site."""
    convo = await tenant.visitor_says("Hello?", sourceApp="liveoperator", siteID=site_id)
    owner: int | None = (await tenant.ok("gethistory", convoID=convo))["conversation"]["operatorID"]
    return owner


async def _online(panel: Panel, site_id: int) -> None:
    await panel.ok("POST", f"{OPERATOR}/heartbeat", {"site_ids": [site_id]})


async def test_an_auto_assigning_team_gives_new_conversations_in_turn_within_the_limit(
    tenant: Tenant,
) -> None:
    _, site = await _routed_site(tenant, auto_assign=True, assign_limit=1)
    ada, alex = await admin_of(tenant), await operator_of(tenant)
    await _online(ada, site)
    await _online(alex, site)

    assert await _owner(tenant, site) == tenant.admin_id
    assert await _owner(tenant, site) == tenant.operator_id
    # Both own one open conversation, the team's limit: the next one waits in the queue.
    waiting = await tenant.visitor_says("Anyone?", sourceApp="liveoperator", siteID=site)
    assert (await alex.row(waiting))["operator_id"] is None
    assert waiting in await alex.inbox(owner="unassigned")

    # Alex finishes his: his slot is free, and what waited in the queue is his now.
    (his,) = await alex.inbox(owner="mine")
    await alex.ok("POST", f"{OPERATOR}/close/{his}")
    assert (await alex.row(waiting))["operator_id"] == tenant.operator_id
    assert await _owner(tenant, site) is None


async def test_away_and_offline_operators_are_passed_over(tenant: Tenant) -> None:
    _, site = await _routed_site(tenant, auto_assign=True)
    # Nobody has the inbox open: the conversation stays in the team's queue.
    assert await _owner(tenant, site) is None
    ada, alex = await admin_of(tenant), await operator_of(tenant)
    await _online(ada, site)
    await _online(alex, site)
    await ada.ok("POST", f"{OPERATOR}/availability", {"away": True})
    assert [await _owner(tenant, site) for _ in range(2)] == [tenant.operator_id] * 2
    await ada.ok("POST", f"{OPERATOR}/availability", {"away": False})
    # No limit: the turn goes round, Ada first after Alex.
    assert [await _owner(tenant, site) for _ in range(3)] == [
        tenant.admin_id,
        tenant.operator_id,
        tenant.admin_id,
    ]


async def test_waiting_conversations_go_out_when_an_operator_comes_in_or_frees_a_slot(
    tenant: Tenant,
) -> None:
    _, site = await _routed_site(tenant, auto_assign=True, assign_limit=1)
    older = await tenant.visitor_says("First", sourceApp="liveoperator", siteID=site)
    newer = await tenant.visitor_says("Second", sourceApp="liveoperator", siteID=site)
    alex = await operator_of(tenant)

    # Alex opens the inbox: the oldest waiting conversation is his; his limit keeps the other.
    await _online(alex, site)
    assert await alex.inbox(owner="mine") == [older]
    assert await alex.inbox(owner="unassigned") == [newer]
    # He resolves it: the next one comes to him.
    await alex.ok("POST", f"{OPERATOR}/close/{older}")
    assert await alex.inbox(owner="mine", status="open") == [newer]

    # Away, he gets nothing; back, he gets what waited (once his slot is free).
    await alex.ok("POST", f"{OPERATOR}/conversation/{newer}/status", {"status": "waiting"})
    await alex.ok("POST", f"{OPERATOR}/availability", {"away": True})
    third = await tenant.visitor_says("Third", sourceApp="liveoperator", siteID=site)
    assert (await alex.row(third))["operator_id"] is None
    await alex.ok("POST", f"{OPERATOR}/availability", {"away": False})
    assert (await alex.row(third))["operator_id"] == tenant.operator_id


async def test_first_replier_claiming_stays_the_default(tenant: Tenant) -> None:
    team_id, site = await _routed_site(tenant)
    alex = await operator_of(tenant)
    await _online(alex, site)
    assert await _owner(tenant, site) is None
    # Turned on later, by the admin's PATCH.
    patched = await _admin(tenant, "PATCH", f"teams/{team_id}", auto_assign=True, assign_limit=5)
    assert (patched["team"]["auto_assign"], patched["team"]["assign_limit"]) == (True, 5)
    assert await _owner(tenant, site) == tenant.operator_id


@pytest.mark.parametrize(
    "body",
    [
        {"assign_limit": -1},
        {"assign_limit": 1001},
        {"assign_limit": "many"},
        {"assign_limit": [3]},
        {"assign_limit": 2**70},
        {"assign_limit": 1.5},
        {"assign_limit": True},
        {"auto_assign": "maybe"},
        {"auto_assign": [True]},
        {"auto_assign": 1},
        {"auto_assign": "yes\x00"},
    ],
)
async def test_bad_team_settings_are_refused(tenant: Tenant, body: dict[str, Any]) -> None:
    team_id, _ = await _routed_site(tenant)
    for method, path, extra in (
        ("POST", f"{ROOT}/teams", {"name": "Night"}),
        ("PATCH", f"{ROOT}/teams/{team_id}", {}),
    ):
        response = await tenant.client.request(
            method, path, json={**extra, **body}, headers=key(tenant)
        )
        assert_error(response, 400, "invalid_field")
    assert (await _admin(tenant, "GET", "teams"))["teams"][0]["auto_assign"] is False


async def test_only_admins_change_a_teams_settings(tenant: Tenant) -> None:
    team_id, _ = await _routed_site(tenant)
    alex = await operator_of(tenant)
    response = await alex.client.patch(
        f"{ROOT}/teams/{team_id}", json={"auto_assign": True}, headers=alex.headers
    )
    assert response.status_code == 403


# personal canned responses

MINE = f"{OPERATOR}/canned"


async def test_an_operator_keeps_canned_responses_only_they_see_and_send(
    tenant: Tenant, services: Services
) -> None:
    await _admin(tenant, "POST", "canned", name="Hello", message="Hello!")
    ada, alex = await admin_of(tenant), await operator_of(tenant)
    created = (
        await alex.ok("POST", MINE, {"name": "Mine", "tag": "own", "message": "Hi {fname}, Alex"})
    )["canned"]
    assert created == {
        "id": 2, "name": "Mine", "tag": "own", "message": "Hi {fname}, Alex", "personal": True,
    }  # fmt: skip
    assert (await alex.ok("GET", MINE))["canned"] == [created]
    assert (await ada.ok("GET", MINE))["canned"] == []
    # The account's list is the account's only.
    assert [c["id"] for c in (await _admin(tenant, "GET", "canned"))["canned"]] == [1]

    convo = await tenant.visitor_says("Hi", userInfo={"fname": "Zed"})
    sent = await alex.reply(convo, "", canned_id=2)
    assert sent["message"]["content"] == "Hi Zed, Alex"
    # Another operator's is as absent as one never written, to send, change or delete.
    await ada.reply(convo, "I'll take it")
    for panel, method, path, body in (
        (ada, "POST", f"{OPERATOR}/message", {"conversation_id": convo, "canned_id": 2}),
        (ada, "PATCH", f"{MINE}/2", {"name": "Ada's now"}),
        (ada, "DELETE", f"{MINE}/2", None),
        # The account's response is not Alex's own to change through this door.
        (alex, "PATCH", f"{MINE}/1", {"name": "Alex's now"}),
        (alex, "DELETE", f"{MINE}/1", None),
        (alex, "PATCH", f"{MINE}/99", {"name": "Nothing"}),
    ):
        response = await panel.client.request(method, path, json=body, headers=panel.headers)
        assert_error(response, 404, "canned_not_found")
    # Nor through the admin's: it is not the account's.
    response = await ada.client.patch(f"{ROOT}/canned/2", json={"name": "X"}, headers=ada.headers)
    assert_error(response, 404, "canned_not_found")

    patched = (await alex.ok("PATCH", f"{MINE}/2", {"message": "Hey {fname}"}))["canned"]
    assert (patched["name"], patched["message"]) == ("Mine", "Hey {fname}")
    await alex.ok("DELETE", f"{MINE}/2")
    assert (await alex.ok("GET", MINE))["canned"] == []
    assert await services.store.list_canned(tenant.account_id) != []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"message": "No name"}, "missing_field"),
        ({"name": "No message"}, "missing_field"),
        ({"name": "", "message": "Hi"}, "missing_field"),
        ({"name": "Nul\x00", "message": "Hi"}, "invalid_field"),
        ({"name": "x" * 101, "message": "Hi"}, "invalid_field"),
        ({"name": ["a"], "message": "Hi"}, "invalid_field"),
        ({"name": "Hi", "message": ["a"]}, "invalid_field"),
        ({"name": "Hi", "message": "a\x00b"}, "invalid_characters"),
        ({"name": "Hi", "message": "x" * 20_000}, "message_too_long"),
        ({"name": "Hi", "message": "Hi", "tag": {"a": 1}}, "invalid_field"),
    ],
)
async def test_bad_personal_canned_responses_are_refused(
    tenant: Tenant, body: dict[str, Any], code: str
) -> None:
    alex = await operator_of(tenant)
    response = await alex.client.post(MINE, json=body, headers=alex.headers)
    assert_error(response, 400, code)
    assert (await alex.ok("GET", MINE))["canned"] == []


async def test_personal_canned_paths_and_callers(client: httpx.AsyncClient, tenant: Tenant) -> None:
    alex = await operator_of(tenant)
    for path, status, code in (
        (f"{MINE}/99999999999999999999999", 404, "canned_not_found"),
        (f"{MINE}/abc", 404, "not_found"),
    ):
        response = await alex.client.patch(path, json={"name": "X"}, headers=alex.headers)
        assert_error(response, status, code)
    # An operator's own: the account's key has no operator to own them.
    response = await client.post(MINE, json={"name": "Hi", "message": "Hi"}, headers=key(tenant))
    assert_error(response, 400, "operator_required")
    assert_error(await client.get(MINE), 401, "missing_credentials")


async def test_an_operators_personal_canned_responses_are_bounded(
    tenant: Tenant, services: Services
) -> None:
    alex = await operator_of(tenant)
    for n in range(PERSONAL_CANNED_MAX):
        await services.directory.create_canned(
            tenant.account_id, name=f"R{n}", tag="", message="Hi", owner=alex.operator_id
        )
    body = {"name": "One more", "message": "Hi"}
    response = await alex.client.post(MINE, json=body, headers=alex.headers)
    assert_error(response, 400, "too_many_canned")
    # The account's responses are the admins' to keep, and count apart.
    await _admin(tenant, "POST", "canned", name="Team", message="Hello!")
