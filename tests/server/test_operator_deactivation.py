"""Issue 18: an operator who leaves is deactivated; their open conversations are handed on."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.server.test_admin import ROOT, admin_token, key, listing, operator_token


async def deactivate(
    client: httpx.AsyncClient, tenant: Tenant, operator_id: int, **body: Any
) -> httpx.Response:
    return await client.post(
        f"{ROOT}/operators/{operator_id}/deactivate", headers=key(tenant), json=body
    )


async def owned_by_alex(tenant: Tenant, status: str | None = None) -> str:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi")
    if status:
        await tenant.ok("setstatus", convoID=convo, status=status)
    return convo


async def conversation(tenant: Tenant, convo: str) -> dict[str, Any]:
    found: dict[str, Any] = (await tenant.ok("gethistory", convoID=convo))["conversation"]
    return found


async def test_deactivating_puts_open_conversations_back_in_the_queue(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    active, waiting, resolved = (
        await owned_by_alex(tenant),
        await owned_by_alex(tenant, "waiting"),
        await owned_by_alex(tenant, "resolved"),
    )
    theirs = await tenant.visitor_says("For Ada")
    await tenant.ok("sendmessage", convoID=theirs, operatorID=tenant.admin_id, message="Hi")
    token = await operator_token(client, tenant)

    response = await deactivate(client, tenant, tenant.operator_id)
    assert response.status_code == 200, response.json()
    assert response.json()["moved"] == 2
    assert response.json()["operator"]["active"] is False
    assert (await conversation(tenant, active))["operatorID"] is None
    assert (await conversation(tenant, active))["status"] == "open"
    assert (await conversation(tenant, waiting))["operatorID"] is None
    assert (await conversation(tenant, waiting))["status"] == "waiting"
    assert (await conversation(tenant, resolved))["operatorID"] == tenant.operator_id
    assert (await conversation(tenant, theirs))["operatorID"] == tenant.admin_id
    # Their name stays on what they wrote.
    history = await tenant.ok("gethistory", convoID=active)
    assert history["messages"][1]["operatorName"] == "Alex"

    # They can no longer sign in, their token is gone, and nobody can hand them work.
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    assert_error(login, 403, "operator_deactivated")
    inbox = await client.get("/api/v1/operator/inbox", headers=bearer(token))
    assert inbox.status_code == 401
    ada = await admin_token(client, tenant)
    refused = await client.post(
        f"/api/v1/operator/transfer/{theirs}",
        headers=bearer(ada),
        json={"operator_id": tenant.operator_id},
    )
    assert_error(refused, 409, "operator_deactivated")
    refused = await tenant.command(
        "sendmessage", convoID=active, operatorID=tenant.operator_id, message="still me"
    )
    assert_error(refused, 409, "operator_deactivated")
    listed = {o["id"]: o["active"] for o in await listing(client, tenant, "operators")}
    assert listed == {tenant.admin_id: True, tenant.operator_id: False}

    # Again: nothing left to move. Reactivated, they sign in again.
    assert (await deactivate(client, tenant, tenant.operator_id)).json()["moved"] == 0
    back = await client.patch(
        f"{ROOT}/operators/{tenant.operator_id}", headers=key(tenant), json={"active": True}
    )
    assert back.json()["operator"]["active"] is True
    await operator_token(client, tenant)


async def test_deactivating_hands_conversations_to_a_named_colleague(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    convo = await owned_by_alex(tenant)
    response = await deactivate(client, tenant, tenant.operator_id, to_operator_id=tenant.admin_id)
    assert response.json()["moved"] == 1
    moved = await conversation(tenant, convo)
    assert (moved["operatorID"], moved["status"]) == (tenant.admin_id, "active")


async def test_bad_deactivations_change_nothing(client: httpx.AsyncClient, tenant: Tenant) -> None:
    convo = await owned_by_alex(tenant)
    alex = tenant.operator_id
    for body, status, code in (
        ({"to_operator_id": alex}, 400, "invalid_field"),
        ({"to_operator_id": 99}, 404, "operator_not_found"),
        ({"to_operator_id": 2**70}, 400, "invalid_field"),
        ({"to_operator_id": [tenant.admin_id]}, 400, "invalid_field"),
        ({"to_operator_id": "\u0661"}, 400, "invalid_field"),  # an Arabic-Indic 1
        ({"to_operator_id": "1\x00"}, 400, "invalid_field"),
    ):
        assert_error(await deactivate(client, tenant, alex, **body), status, code)
    assert_error(await deactivate(client, tenant, 99), 404, "operator_not_found")
    assert_error(await deactivate(client, tenant, 2**70), 404, "operator_not_found")
    refused = await client.patch(
        f"{ROOT}/operators/{alex}", headers=key(tenant), json={"active": False}
    )
    assert_error(refused, 400, "invalid_field")
    # Only an admin deactivates.
    token = await operator_token(client, tenant)
    response = await client.post(
        f"{ROOT}/operators/{tenant.admin_id}/deactivate", headers=bearer(token), json={}
    )
    assert response.status_code == 403
    assert (await conversation(tenant, convo))["operatorID"] == alex
    assert all(o["active"] for o in await listing(client, tenant, "operators"))


async def test_deleting_an_operator_who_owns_open_conversations_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    convo = await owned_by_alex(tenant)
    refused = await client.delete(f"{ROOT}/operators/{tenant.operator_id}", headers=key(tenant))
    assert_error(refused, 409, "operator_has_conversations")
    await tenant.ok("setstatus", convoID=convo, status="resolved")
    deleted = await client.delete(f"{ROOT}/operators/{tenant.operator_id}", headers=key(tenant))
    assert deleted.status_code == 200, deleted.json()
