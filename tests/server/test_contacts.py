"""Contacts on the operator panel (issue 14): an SMS and a web chat from one person are two
contacts until an operator merges them; what the chat window's visitor typed is a possible
match, never a link."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from server.services import Services
from tests.conftest import Tenant, assert_error, bearer
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import operator_token
from tests.server.test_webhooks_twilio import CUSTOMER, Line, _line, inbound
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

CONTACTS = "/api/v1/operator/contacts"
SESSION = "sess_contact_0001"


@pytest.fixture
async def line(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> Line:
    return await _line(client, services, tenant)


@pytest.fixture
async def headers(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, str]:
    return bearer(await operator_token(client, tenant))


async def _get(client: httpx.AsyncClient, path: str, headers: dict[str, str], **params: Any) -> Any:
    response = await client.get(path, params=params, headers=headers)
    assert response.status_code == 200, response.text
    return response.json()


async def _sms_conversation(line: Line) -> str:
    response = await line.post(inbound(1, "Where is my order?"))
    assert response.status_code == 200, response.text
    (convo,) = await line.conversations()
    return convo.id


async def _web_conversation(tenant: Tenant, phone: str) -> str:
    return await tenant.visitor_says(
        "Hello from the website",
        sourceApp="liveoperator",
        sessionID=SESSION,
        userInfo={"fname": "Ada", "phone": phone, "email": "Ada@Example.COM"},
    )


async def test_the_same_phone_typed_in_the_chat_window_is_a_possible_match_then_merged(
    client: httpx.AsyncClient, line: Line, tenant: Tenant, headers: dict[str, str]
) -> None:
    sms_id = await _sms_conversation(line)
    web_id = await _web_conversation(tenant, "+1 (555) 765-4321")

    sms = (await _get(client, f"/api/v1/operator/conversation/{sms_id}", headers))["contact"]
    web = (await _get(client, f"/api/v1/operator/conversation/{web_id}", headers))["contact"]
    assert sms["id"] != web["id"]
    assert [(i["kind"], i["value"], i["verified"]) for i in sms["identities"]] == [
        ("phone", CUSTOMER, True)
    ]
    # Typed details are normalised and kept unverified; the session is the widget's own.
    assert [(i["kind"], i["value"], i["verified"]) for i in web["identities"]] == [
        ("session", SESSION, True),
        ("email", "Ada@example.com", False),
        ("phone", CUSTOMER, False),
    ]
    assert web["name"] == "Ada"

    found = (await _get(client, f"{CONTACTS}/{sms['id']}", headers))["contact"]
    assert [c["id"] for c in found["conversations"]] == [sms_id]
    assert found["conversations"][0]["channel"] == "sms"
    assert [m["id"] for m in found["possible_matches"]] == [web["id"]]

    response = await client.post(
        f"{CONTACTS}/{sms['id']}/merge", json={"from_id": web["id"]}, headers=headers
    )
    assert response.status_code == 200, response.text
    merged = response.json()["contact"]
    assert {c["id"] for c in merged["conversations"]} == {sms_id, web_id}
    assert merged["possible_matches"] == []
    assert [(i["kind"], i["verified"]) for i in merged["identities"]] == [
        ("phone", True),
        ("session", True),
        ("email", False),
    ]
    # A repeated merge (a retried request) answers the same; the other way round is refused.
    again = await client.post(
        f"{CONTACTS}/{sms['id']}/merge", json={"from_id": web["id"]}, headers=headers
    )
    assert again.status_code == 200 and again.json()["contact"] == merged
    backwards = await client.post(
        f"{CONTACTS}/{web['id']}/merge", json={"from_id": sms["id"]}, headers=headers
    )
    assert_error(backwards, 409, "contact_merged")
    assert_error(
        await client.get(f"{CONTACTS}/{web['id']}", headers=headers), 404, "contact_not_found"
    )
    view = await _get(client, f"/api/v1/operator/conversation/{web_id}", headers)
    assert view["contact"]["id"] == sms["id"]


async def test_a_merge_is_announced_to_the_accounts_operators(
    app: Any, client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    first = await tenant_contact(tenant, services)
    second = await tenant_contact(tenant, services)
    token = await operator_token(client, tenant)
    async with serve(app) as base, sse(base, token) as stream:
        response = await client.post(
            f"{CONTACTS}/{first}/merge", json={"from_id": second}, headers=bearer(token)
        )
        assert response.status_code == 200, response.text
        event = await stream.until("contact:merged")
    assert event.id is None  # state: never replayed
    assert event.data == {"contact_id": first, "from_id": second, "moved": 1}


async def test_a_returning_widget_session_joins_its_contact(
    client: httpx.AsyncClient, tenant: Tenant, headers: dict[str, str]
) -> None:
    first = await tenant.visitor_says("One", sourceApp="liveoperator", sessionID=SESSION)
    second = await tenant.visitor_says("Two", sourceApp="liveoperator", sessionID=SESSION)
    elsewhere = await tenant.visitor_says("Three")
    contacts = [
        (await _get(client, f"/api/v1/operator/conversation/{c}", headers))["contact"]["id"]
        for c in (first, second, elsewhere)
    ]
    assert contacts[0] == contacts[1] != contacts[2]


async def test_concurrent_first_messages_of_one_session_make_one_contact(
    services: Services, tenant: Tenant
) -> None:
    opened = await asyncio.gather(
        *(
            tenant.visitor_says(f"Hello {n}", sourceApp="liveoperator", sessionID=SESSION)
            for n in range(8)
        )
    )
    found = [await services.store.get_conversation(tenant.account_id, c) for c in opened]
    assert len({c.id for c in found if c}) == 8
    assert len({c.contact_id for c in found if c}) == 1


async def test_search_finds_by_name_and_identity_literally(
    client: httpx.AsyncClient, line: Line, tenant: Tenant, headers: dict[str, str]
) -> None:
    await _sms_conversation(line)
    await _web_conversation(tenant, "+44 20 7946 0958")
    by_phone = (await _get(client, CONTACTS, headers, q="+4420"))["contacts"]
    assert [c["name"] for c in by_phone] == ["Ada"]
    assert len((await _get(client, CONTACTS, headers, q="ADA@"))["contacts"]) == 1
    assert (await _get(client, CONTACTS, headers, q="%"))["contacts"] == []
    assert len((await _get(client, CONTACTS, headers, q="+1555", limit=1))["contacts"]) == 1


@pytest.mark.parametrize(
    ("path", "params", "status", "code"),
    [
        (f"{CONTACTS}/999", {}, 404, "contact_not_found"),
        (f"{CONTACTS}/0", {}, 404, "contact_not_found"),
        (f"{CONTACTS}/{10**30}", {}, 404, "contact_not_found"),
        (f"{CONTACTS}/-1", {}, 404, "not_found"),
        (f"{CONTACTS}/\uff11", {}, 404, "not_found"),
        (CONTACTS, {}, 400, "missing_field"),
        (CONTACTS, {"q": "a\x00b"}, 400, "invalid_field"),
        (CONTACTS, {"q": "x" * 201}, 400, "invalid_field"),
        (CONTACTS, {"q": "ada", "limit": "0"}, 400, "invalid_field"),
        (CONTACTS, {"q": "ada", "limit": "101"}, 400, "invalid_field"),
        (CONTACTS, {"q": "ada", "limit": "٣"}, 400, "invalid_field"),
    ],
)
async def test_bad_reads_are_clear_4xx(
    client: httpx.AsyncClient,
    headers: dict[str, str],
    path: str,
    params: dict[str, str],
    status: int,
    code: str,
) -> None:
    assert_error(await client.get(path, params=params, headers=headers), status, code)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_field"),
        ({"from_id": [2]}, 400, "invalid_field"),
        ({"from_id": "2\x00"}, 400, "invalid_field"),
        ({"from_id": 10**30}, 400, "invalid_field"),
        ({"from_id": True}, 400, "invalid_field"),
        ({"from_id": 999}, 404, "contact_not_found"),
        ({"from_id": "SELF"}, 400, "merge_into_itself"),
    ],
)
async def test_bad_merges_are_clear_4xx_and_change_nothing(
    client: httpx.AsyncClient,
    services: Services,
    line: Line,
    tenant: Tenant,
    headers: dict[str, str],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    convo = await services.store.get_conversation(tenant.account_id, await _sms_conversation(line))
    assert convo is not None and convo.contact_id is not None
    if body.get("from_id") == "SELF":
        body = {"from_id": convo.contact_id}
    before = await services.store.get_contact(tenant.account_id, convo.contact_id)
    response = await client.post(f"{CONTACTS}/{convo.contact_id}/merge", json=body, headers=headers)
    assert_error(response, status, code)
    assert await services.store.get_contact(tenant.account_id, convo.contact_id) == before


async def test_another_accounts_contact_is_absent(
    client: httpx.AsyncClient,
    services: Services,
    line: Line,
    tenant: Tenant,
    other_tenant: Tenant,
) -> None:
    # Ids are numbered per account: the other account holds contact 1 only, this one 1-3.
    await _sms_conversation(line)
    await tenant_contact(tenant, services)
    mine = await tenant_contact(tenant, services)
    theirs = await tenant_contact(other_tenant, services)
    assert (mine, theirs) == (3, 1)
    outsider = bearer(await operator_token(client, other_tenant))
    path = f"{CONTACTS}/{mine}"
    assert_error(await client.get(path, headers=outsider), 404, "contact_not_found")
    assert (await _get(client, CONTACTS, outsider, q="+1555"))["contacts"] == []
    merge = await client.post(f"{path}/merge", json={"from_id": theirs}, headers=outsider)
    assert_error(merge, 404, "contact_not_found")
    assert await services.store.get_contact(other_tenant.account_id, theirs) is not None
    assert_error(await client.get(path), 401, "missing_credentials")


async def tenant_contact(tenant: Tenant, services: Services) -> int:
    """The contact of a new conversation of ``tenant``."""
    convo = await services.store.get_conversation(
        tenant.account_id, await tenant.visitor_says("Hi")
    )
    assert convo is not None and convo.contact_id is not None
    return convo.contact_id
