"""Admin REST (/api/v1/admin/{operators,teams,canned}) as an account's admin drives it."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.security import hash_api_key
from server.services import Services
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer

ROOT = "/api/v1/admin"
SINGULAR = {"operators": "operator", "teams": "team", "canned": "canned"}
NOT_FOUND = {
    "operators": "operator_not_found",
    "teams": "team_not_found",
    "canned": "canned_not_found",
}
NEW_OPERATOR = {"name": "Bea", "email": "bea@example.test", "password": "bea-password"}


def key(tenant: Tenant) -> dict[str, str]:
    return {"X-Api-Key": tenant.api_key}


async def token_of(client: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> str:
    response = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.json()
    token: str = response.json()["token"]
    return token


async def admin_token(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return await token_of(client, f"ada@{tenant.account_id}.test")


async def operator_token(client: httpx.AsyncClient, tenant: Tenant) -> str:
    return await token_of(client, f"alex@{tenant.account_id}.test")


async def listing(client: httpx.AsyncClient, tenant: Tenant, plural: str) -> list[dict[str, Any]]:
    response = await client.get(f"{ROOT}/{plural}", headers=key(tenant))
    body = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    items: list[dict[str, Any]] = body[plural]
    return items


async def snapshot(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, list[dict[str, Any]]]:
    return {plural: await listing(client, tenant, plural) for plural in SINGULAR}


async def create(
    client: httpx.AsyncClient, tenant: Tenant, plural: str, **fields: Any
) -> dict[str, Any]:
    response = await client.post(f"{ROOT}/{plural}", headers=key(tenant), json=fields)
    body = response.json()
    assert response.status_code == 201, body
    assert body["success"] is True
    item: dict[str, Any] = body[SINGULAR[plural]]
    return item


# the three resources, end to end


async def test_operators_create_list_update_delete(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(client, tenant, "operators", **NEW_OPERATOR)
    assert created == {
        "id": 3, "name": "Bea", "email": "bea@example.test", "is_admin": False,
        "role": "operator", "lang": "en", "avatar_url": "", "active": True,
    }  # fmt: skip
    assert [o["id"] for o in await listing(client, tenant, "operators")] == [1, 2, 3]
    await token_of(client, "bea@example.test", "bea-password")

    patched = await client.patch(
        f"{ROOT}/operators/3",
        headers=key(tenant),
        json={"name": "Bea B.", "is_admin": True, "avatar_url": "https://cdn.test/bea.png"},
    )
    assert patched.status_code == 200, patched.json()
    operator = {"id": 3, "name": "Bea B.", "email": "bea@example.test", "is_admin": True}
    assert patched.json() == {
        "success": True,
        "operator": {
            **operator, "role": "admin", "lang": "en", "avatar_url": "https://cdn.test/bea.png",
            "active": True,
        },
    }  # fmt: skip
    for bad in ("javascript:alert(1)", "https://cdn.test/a b.png", "https://x/\x00"):
        refused = await client.patch(
            f"{ROOT}/operators/3", headers=key(tenant), json={"avatar_url": bad}
        )
        assert_error(refused, 400, "invalid_field")
    assert (await listing(client, tenant, "operators"))[-1] == patched.json()["operator"]

    deleted = await client.delete(f"{ROOT}/operators/3", headers=key(tenant))
    assert deleted.status_code == 200, deleted.json()
    assert deleted.json() == {"success": True}
    assert [o["id"] for o in await listing(client, tenant, "operators")] == [1, 2]
    assert_error(
        await client.delete(f"{ROOT}/operators/3", headers=key(tenant)), 404, "operator_not_found"
    )
    gone = await client.post(
        "/api/v1/auth/login", json={"email": "bea@example.test", "password": "bea-password"}
    )
    assert_error(gone, 401, "invalid_credentials")


async def test_operator_can_be_created_from_a_form(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        f"{ROOT}/operators", headers=key(tenant), data={**NEW_OPERATOR, "is_admin": "true"}
    )
    assert response.status_code == 201, response.json()
    assert response.json()["operator"]["is_admin"] is True


async def test_operator_email_is_stored_lowercase(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create(client, tenant, "operators", **{**NEW_OPERATOR, "email": "Bea@Ex.TEST"})
    assert created["email"] == "bea@ex.test"


async def test_teams_create_list_update_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, "teams", name="Sales", member_ids=[2, 1, 2])
    assert created == {
        "id": 1, "name": "Sales", "member_ids": [1, 2], "auto_assign": False, "assign_limit": 0,
    }  # fmt: skip
    assert await listing(client, tenant, "teams") == [created]

    renamed = await client.patch(f"{ROOT}/teams/1", headers=key(tenant), json={"name": "Support"})
    assert renamed.json() == {
        "success": True,
        "team": {
            "id": 1,
            "name": "Support",
            "member_ids": [1, 2],
            "auto_assign": False,
            "assign_limit": 0,
        },
    }
    emptied = await client.patch(f"{ROOT}/teams/1", headers=key(tenant), json={"member_ids": []})
    assert emptied.json()["team"] == {
        "id": 1, "name": "Support", "member_ids": [], "auto_assign": False, "assign_limit": 0,
    }  # fmt: skip
    assert await listing(client, tenant, "teams") == [emptied.json()["team"]]

    deleted = await client.delete(f"{ROOT}/teams/1", headers=key(tenant))
    assert deleted.json() == {"success": True}
    assert await listing(client, tenant, "teams") == []


async def test_team_without_members_starts_empty(client: httpx.AsyncClient, tenant: Tenant) -> None:
    assert (await create(client, tenant, "teams", name="Night shift"))["member_ids"] == []


async def test_canned_create_list_update_delete(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, "canned", name="Hi", tag="welcome", message="Hello!")
    assert created == {
        "id": 1, "name": "Hi", "tag": "welcome", "message": "Hello!", "personal": False,
    }  # fmt: skip
    untagged = await create(client, tenant, "canned", name="Bye", message="Goodbye")
    assert untagged["tag"] == ""
    assert await listing(client, tenant, "canned") == [created, untagged]

    patched = await client.patch(
        f"{ROOT}/canned/1", headers=key(tenant), json={"message": "Hello again!", "tag": ""}
    )
    assert patched.json() == {
        "success": True,
        "canned": {
            "id": 1,
            "name": "Hi",
            "tag": "",
            "message": "Hello again!",
            "personal": False,
        },
    }
    deleted = await client.delete(f"{ROOT}/canned/1", headers=key(tenant))
    assert deleted.json() == {"success": True}
    assert await listing(client, tenant, "canned") == [untagged]


async def test_patch_with_no_fields_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "canned", name="Hi", message="Hello")
    before = await snapshot(client, tenant)
    for path in ("operators/1", "canned/1"):
        response = await client.patch(f"{ROOT}/{path}", headers=key(tenant), json={})
        assert response.status_code == 200, response.json()
    assert await snapshot(client, tenant) == before


# who may call


@pytest.mark.parametrize("how", ["x-api-key", "bearer-api-key", "admin-jwt"])
async def test_api_key_and_admin_jwt_may_write(
    client: httpx.AsyncClient, tenant: Tenant, how: str
) -> None:
    headers = {
        "x-api-key": key(tenant),
        "bearer-api-key": bearer(tenant.api_key),
        "admin-jwt": bearer(await admin_token(client, tenant)),
    }[how]
    created = await client.post(
        f"{ROOT}/canned", headers=headers, json={"name": "Hi", "message": "Hello"}
    )
    assert created.status_code == 201, created.json()
    patched = await client.patch(f"{ROOT}/canned/1", headers=headers, json={"name": "Hey"})
    assert patched.status_code == 200, patched.json()
    listed = await client.get(f"{ROOT}/canned", headers=headers)
    assert listed.json()["canned"] == [
        {"id": 1, "name": "Hey", "tag": "", "message": "Hello", "personal": False}
    ]
    deleted = await client.delete(f"{ROOT}/canned/1", headers=headers)
    assert deleted.status_code == 200, deleted.json()
    assert await listing(client, tenant, "canned") == []


async def test_non_admin_operator_may_read_but_not_write(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "teams", name="Sales", member_ids=[1])
    await create(client, tenant, "canned", name="Hi", message="Hello")
    before = await snapshot(client, tenant)
    headers = bearer(await operator_token(client, tenant))
    for plural in SINGULAR:
        response = await client.get(f"{ROOT}/{plural}", headers=headers)
        assert response.status_code == 200, response.json()
        assert response.json()[plural] == before[plural]
    writes = [
        ("POST", "operators", {**NEW_OPERATOR, "is_admin": True}),
        ("PATCH", "operators/2", {"is_admin": True}),
        ("DELETE", "operators/1", None),
        ("POST", "teams", {"name": "Mine", "member_ids": [2]}),
        ("PATCH", "teams/1", {"member_ids": [2]}),
        ("DELETE", "teams/1", None),
        ("POST", "canned", {"name": "Mine", "message": "Mine"}),
        ("PATCH", "canned/1", {"message": "Mine"}),
        ("DELETE", "canned/1", None),
    ]
    for method, path, body in writes:
        response = await client.request(method, f"{ROOT}/{path}", headers=headers, json=body)
        assert_error(response, 403, "admin_required")
    assert await snapshot(client, tenant) == before


async def test_without_credentials_nothing_is_read_or_written(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    before = await snapshot(client, tenant)
    for plural in SINGULAR:
        assert_error(await client.get(f"{ROOT}/{plural}"), 401, "missing_credentials")
    assert_error(
        await client.post(f"{ROOT}/canned", json={"name": "Hi", "message": "Hello"}),
        401,
        "missing_credentials",
    )
    assert_error(await client.delete(f"{ROOT}/operators/1"), 401, "missing_credentials")
    assert_error(
        await client.patch(f"{ROOT}/operators/1", json={"name": "X"}), 401, "missing_credentials"
    )
    assert await snapshot(client, tenant) == before


# validation: a clear 400/409 and no partial write


OPERATOR_CREATE_REJECTS = [
    ({**NEW_OPERATOR, "name": ""}, 400, "missing_field"),
    ({**NEW_OPERATOR, "name": "   "}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "name": "x" * 101}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "name": ["Bea"]}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "name": True}, 400, "invalid_field"),
    ({"email": "bea@example.test", "password": "bea-password"}, 400, "missing_field"),
    ({"name": "Bea", "password": "bea-password"}, 400, "missing_field"),
    ({"name": "Bea", "email": "bea@example.test"}, 400, "missing_field"),
    ({**NEW_OPERATOR, "email": "not-an-email"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "email": "bea@localhost"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "email": "b ea@example.test"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "email": "b" * 250 + "@example.test"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "password": "1234567"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "password": "p" * 257}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "is_admin": "maybe"}, 400, "invalid_field"),
    ({**NEW_OPERATOR, "is_admin": [True]}, 400, "invalid_field"),
]


@pytest.mark.parametrize(("body", "status", "code"), OPERATOR_CREATE_REJECTS)
async def test_operator_create_rejects(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], status: int, code: str
) -> None:
    before = await snapshot(client, tenant)
    response = await client.post(f"{ROOT}/operators", headers=key(tenant), json=body)
    assert_error(response, status, code)
    assert await snapshot(client, tenant) == before


async def test_password_of_exactly_eight_characters_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "operators", **{**NEW_OPERATOR, "password": "12345678"})
    await token_of(client, NEW_OPERATOR["email"], "12345678")


async def test_duplicate_email_is_a_conflict_whatever_its_case(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    before = await snapshot(client, tenant)
    taken = f"ADA@{tenant.account_id.upper()}.TEST"
    response = await client.post(
        f"{ROOT}/operators", headers=key(tenant), json={**NEW_OPERATOR, "email": taken}
    )
    assert_error(response, 409, "email_taken")
    response = await client.patch(f"{ROOT}/operators/2", headers=key(tenant), json={"email": taken})
    assert_error(response, 409, "email_taken")
    assert await snapshot(client, tenant) == before


async def test_operator_may_keep_its_own_email_in_another_case(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    own = f"ALEX@{tenant.account_id}.test"
    response = await client.patch(f"{ROOT}/operators/2", headers=key(tenant), json={"email": own})
    assert response.status_code == 200, response.json()
    assert response.json()["operator"]["email"] == own.lower()


@pytest.mark.parametrize(
    "name",
    ["Bea\x00", "Bea\nINFO forged log line", "Bea\x1b[31m", "Bea\x7f"],
)
async def test_control_characters_in_names_are_rejected(
    client: httpx.AsyncClient, tenant: Tenant, name: str
) -> None:
    """Regression: a NUL or newline in a name was stored and shown in the inbox and logs."""
    before = await snapshot(client, tenant)
    for path, body in [
        ("operators", {**NEW_OPERATOR, "name": name}),
        ("teams", {"name": name}),
        ("canned", {"name": name, "message": "Hello"}),
        ("canned", {"name": "Hi", "tag": name, "message": "Hello"}),
    ]:
        response = await client.post(f"{ROOT}/{path}", headers=key(tenant), json=body)
        assert_error(response, 400, "invalid_field")
    response = await client.patch(f"{ROOT}/operators/1", headers=key(tenant), json={"name": name})
    assert_error(response, 400, "invalid_field")
    assert await snapshot(client, tenant) == before


async def test_canned_message_may_span_lines(client: httpx.AsyncClient, tenant: Tenant) -> None:
    created = await create(client, tenant, "canned", name="Hi", message="Hello\n\tthere")
    assert created["message"] == "Hello\n\tthere"


TEAM_CREATE_REJECTS = [
    ({"name": ""}, 400, "missing_field"),
    ({"member_ids": [1]}, 400, "missing_field"),
    ({"name": "   "}, 400, "invalid_field"),
    ({"name": "x" * 101}, 400, "invalid_field"),
    ({"name": "Sales", "member_ids": "1,2"}, 400, "invalid_field"),
    ({"name": "Sales", "member_ids": [1, "2"]}, 400, "invalid_field"),
    ({"name": "Sales", "member_ids": [True]}, 400, "invalid_field"),
    ({"name": "Sales", "member_ids": {"1": 1}}, 400, "invalid_field"),
    ({"name": "Sales", "member_ids": [1, 99]}, 400, "unknown_operator"),
    ({"name": "Sales", "member_ids": [0]}, 400, "unknown_operator"),
    ({"name": "Sales", "member_ids": [-1]}, 400, "unknown_operator"),
]


@pytest.mark.parametrize(("body", "status", "code"), TEAM_CREATE_REJECTS)
async def test_team_create_rejects(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], status: int, code: str
) -> None:
    before = await snapshot(client, tenant)
    response = await client.post(f"{ROOT}/teams", headers=key(tenant), json=body)
    assert_error(response, status, code)
    assert await snapshot(client, tenant) == before


CANNED_CREATE_REJECTS = [
    ({"name": "Hi", "message": ""}, 400, "missing_field"),
    ({"name": "Hi"}, 400, "missing_field"),
    ({"message": "Hello"}, 400, "missing_field"),
    ({"name": "Hi", "message": "  \n "}, 400, "invalid_field"),
    ({"name": "Hi", "message": "x" * 5001}, 400, "message_too_long"),
    ({"name": "x" * 101, "message": "Hello"}, 400, "invalid_field"),
    ({"name": "Hi", "tag": "t" * 51, "message": "Hello"}, 400, "invalid_field"),
    ({"name": "Hi", "message": ["Hello"]}, 400, "invalid_field"),
    ({"name": "Hi", "tag": {"a": 1}, "message": "Hello"}, 400, "invalid_field"),
]


@pytest.mark.parametrize(("body", "status", "code"), CANNED_CREATE_REJECTS)
async def test_canned_create_rejects(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any], status: int, code: str
) -> None:
    before = await snapshot(client, tenant)
    response = await client.post(f"{ROOT}/canned", headers=key(tenant), json=body)
    assert_error(response, status, code)
    assert await snapshot(client, tenant) == before


async def test_canned_message_at_the_limit_is_accepted(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    limit = services.settings.max_message_chars
    created = await create(client, tenant, "canned", name="Long", message="x" * limit)
    assert len(created["message"]) == limit


UPDATE_REJECTS = [
    ("operators/2", {"name": ""}, 400, "invalid_field"),
    ("operators/2", {"name": "x" * 101}, 400, "invalid_field"),
    ("operators/2", {"email": ""}, 400, "invalid_field"),
    ("operators/2", {"email": "nope"}, 400, "invalid_field"),
    ("operators/2", {"password": "short"}, 400, "invalid_field"),
    ("operators/2", {"password": ""}, 400, "invalid_field"),
    ("operators/2", {"is_admin": "maybe"}, 400, "invalid_field"),
    # one bad field spoils the whole patch: the good one is not applied either
    ("operators/2", {"name": "Renamed", "email": "nope"}, 400, "invalid_field"),
    ("operators/2", {"name": "Renamed", "is_admin": "maybe"}, 400, "invalid_field"),
    ("teams/1", {"name": ""}, 400, "invalid_field"),
    ("teams/1", {"member_ids": "1,2"}, 400, "invalid_field"),
    ("teams/1", {"member_ids": [99]}, 400, "unknown_operator"),
    ("teams/1", {"name": "Renamed", "member_ids": [1, 99]}, 400, "unknown_operator"),
    ("canned/1", {"message": ""}, 400, "invalid_field"),
    ("canned/1", {"message": "x" * 5001}, 400, "message_too_long"),
    ("canned/1", {"name": "   "}, 400, "invalid_field"),
    ("canned/1", {"tag": "t" * 51}, 400, "invalid_field"),
    ("canned/1", {"name": "Renamed", "message": " "}, 400, "invalid_field"),
]


@pytest.mark.parametrize(("path", "body", "status", "code"), UPDATE_REJECTS)
async def test_update_rejects(
    client: httpx.AsyncClient,
    tenant: Tenant,
    path: str,
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    await create(client, tenant, "teams", name="Sales", member_ids=[1])
    await create(client, tenant, "canned", name="Hi", message="Hello")
    before = await snapshot(client, tenant)
    response = await client.patch(f"{ROOT}/{path}", headers=key(tenant), json=body)
    assert_error(response, status, code)
    assert await snapshot(client, tenant) == before


async def test_rejected_password_change_keeps_the_old_password(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.patch(
        f"{ROOT}/operators/2", headers=key(tenant), json={"name": "X", "password": "short"}
    )
    assert_error(response, 400, "invalid_field")
    await operator_token(client, tenant)


async def test_body_that_is_not_a_json_object_is_rejected(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    before = await snapshot(client, tenant)
    for content in (b"[1, 2]", b"{broken", b'"text"'):
        response = await client.post(
            f"{ROOT}/canned",
            headers={**key(tenant), "Content-Type": "application/json"},
            content=content,
        )
        assert_error(response, 400, "invalid_json")
    assert await snapshot(client, tenant) == before


async def test_oversized_body_is_rejected(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    before = await snapshot(client, tenant)
    message = "x" * (services.settings.max_body_bytes + 1)
    response = await client.post(
        f"{ROOT}/canned", headers=key(tenant), json={"name": "Big", "message": message}
    )
    assert_error(response, 413, "body_too_large")
    assert await snapshot(client, tenant) == before


@pytest.mark.parametrize("plural", list(SINGULAR))
@pytest.mark.parametrize("item_id", ["abc", "1.5", "-1", "1e3", "%20"])
async def test_non_integer_id_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, plural: str, item_id: str
) -> None:
    for method in ("PATCH", "DELETE"):
        response = await client.request(
            method, f"{ROOT}/{plural}/{item_id}", headers=key(tenant), json={"name": "X"}
        )
        assert_error(response, 404, "not_found")


@pytest.mark.parametrize("plural", list(SINGULAR))
@pytest.mark.parametrize("item_id", [0, 99, 2**63 - 1])
async def test_unknown_id_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, plural: str, item_id: int
) -> None:
    before = await snapshot(client, tenant)
    patched = await client.patch(
        f"{ROOT}/{plural}/{item_id}", headers=key(tenant), json={"name": "X"}
    )
    assert_error(patched, 404, NOT_FOUND[plural])
    deleted = await client.delete(f"{ROOT}/{plural}/{item_id}", headers=key(tenant))
    assert_error(deleted, 404, NOT_FOUND[plural])
    assert await snapshot(client, tenant) == before


@pytest.mark.parametrize("plural", list(SINGULAR))
async def test_id_beyond_64_bits_is_not_found_rather_than_a_500(
    client: httpx.AsyncClient, tenant: Tenant, plural: str
) -> None:
    """Regression: SQLite's driver raised OverflowError on such ids, answered as a 500."""
    for item_id in (2**63, 10**30):
        patched = await client.patch(
            f"{ROOT}/{plural}/{item_id}", headers=key(tenant), json={"name": "X"}
        )
        assert_error(patched, 404, NOT_FOUND[plural])
        deleted = await client.delete(f"{ROOT}/{plural}/{item_id}", headers=key(tenant))
        assert_error(deleted, 404, NOT_FOUND[plural])


# ids


async def test_a_new_accounts_ids_start_at_one(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    _, api_key = await services.directory.create_account("Fresh")
    headers = {"X-Api-Key": api_key}
    for plural, body in [
        ("operators", {**NEW_OPERATOR, "email": "fresh@example.test"}),
        ("teams", {"name": "Sales"}),
        ("canned", {"name": "Hi", "message": "Hello"}),
    ]:
        response = await client.post(f"{ROOT}/{plural}", headers=headers, json=body)
        assert response.status_code == 201, response.json()
        assert response.json()[SINGULAR[plural]]["id"] == 1


async def test_ids_are_per_account(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    assert (tenant.admin_id, tenant.operator_id) == (1, 2)
    assert (other_tenant.admin_id, other_tenant.operator_id) == (1, 2)
    for who in (tenant, other_tenant, tenant):
        await create(client, who, "canned", name="Hi", message="Hello")
    assert [c["id"] for c in await listing(client, tenant, "canned")] == [1, 2]
    assert [c["id"] for c in await listing(client, other_tenant, "canned")] == [1]


@pytest.mark.parametrize(
    ("plural", "body", "first_new_id"),
    [
        ("operators", None, 3),
        ("teams", {"name": "T"}, 1),
        ("canned", {"name": "C", "message": "M"}, 1),
    ],
)
async def test_deleted_ids_are_never_reused(
    client: httpx.AsyncClient,
    tenant: Tenant,
    plural: str,
    body: dict[str, Any] | None,
    first_new_id: int,
) -> None:
    count = 0

    async def make() -> int:
        nonlocal count
        count += 1
        fields = body or {**NEW_OPERATOR, "email": f"op{count}@example.test"}
        item_id: int = (await create(client, tenant, plural, **fields))["id"]
        return item_id

    first, second = await make(), await make()
    assert (first, second) == (first_new_id, first_new_id + 1)
    await client.delete(f"{ROOT}/{plural}/{second}", headers=key(tenant))
    assert await make() == second + 1
    await client.delete(f"{ROOT}/{plural}/{first}", headers=key(tenant))
    await client.delete(f"{ROOT}/{plural}/{second + 1}", headers=key(tenant))
    assert await make() == second + 2


# how the pieces fit together


async def test_deleting_an_operator_removes_them_from_teams(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "teams", name="Sales", member_ids=[1, 2])
    await create(client, tenant, "teams", name="Support", member_ids=[2])
    deleted = await client.delete(f"{ROOT}/operators/2", headers=key(tenant))
    assert deleted.status_code == 200, deleted.json()
    teams = await listing(client, tenant, "teams")
    assert [t["member_ids"] for t in teams] == [[1], []]


async def test_deleting_a_team_keeps_its_operators(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await create(client, tenant, "teams", name="Sales", member_ids=[1, 2])
    await client.delete(f"{ROOT}/teams/1", headers=key(tenant))
    assert [o["id"] for o in await listing(client, tenant, "operators")] == [1, 2]


async def test_canned_from_admin_is_sent_with_macros(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    canned = await create(
        client, tenant, "canned", name="Greeting", message="Hi {fname}, I'm {operator}. {nope}"
    )
    convo = await tenant.visitor_says("Hello", userInfo={"fname": "Jane"})
    sent = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned["id"]
    )
    assert sent["message"]["message"] == "Hi Jane, I'm Alex. {nope}"
    assert sent["message"]["sender"] == "operator"
    assert sent["message"]["operatorID"] == tenant.operator_id

    await client.patch(
        f"{ROOT}/canned/{canned['id']}", headers=key(tenant), json={"message": "Bye {fname}"}
    )
    sent = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned["id"]
    )
    assert sent["message"]["message"] == "Bye Jane"

    await client.delete(f"{ROOT}/canned/{canned['id']}", headers=key(tenant))
    response = await tenant.command(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned["id"]
    )
    assert_error(response, 404, "canned_not_found")


async def test_fname_greets_the_first_word_of_a_whole_name_typed_in_one_field(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    canned = await create(client, tenant, "canned", name="Hi", message="Hi {fname} {lname}!")
    for info, greeting in (
        ({"fname": "Sam Visitor"}, "Hi Sam !"),
        ({"fname": "Mary Ann", "lname": "Lee"}, "Hi Mary Ann Lee!"),
    ):
        convo = await tenant.visitor_says("Hello", userInfo=info)
        sent = await tenant.ok(
            "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned["id"]
        )
        assert sent["message"]["message"] == greeting


async def test_renamed_operator_signs_canned_replies_with_the_new_name(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    canned = await create(client, tenant, "canned", name="Sig", message="- {operator}")
    await client.patch(f"{ROOT}/operators/2", headers=key(tenant), json={"name": "Alexandra"})
    convo = await tenant.visitor_says("Hello")
    sent = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned["id"]
    )
    assert sent["message"]["message"] == "- Alexandra"
    assert sent["message"]["operatorName"] == "Alexandra"


# isolation between accounts


async def _others_objects(client: httpx.AsyncClient, other: Tenant) -> None:
    """Gives the other account objects whose ids the first account does not have."""
    for n in (3, 4):
        await create(
            client, other, "operators", **{**NEW_OPERATOR, "email": f"other{n}@example.test"}
        )
    await create(client, other, "teams", name="Their team", member_ids=[1, 3])
    await create(client, other, "canned", name="Theirs", message="Their message")


@pytest.mark.parametrize("how", ["api-key", "admin-jwt"])
async def test_other_accounts_objects_do_not_exist(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, how: str
) -> None:
    await _others_objects(client, other_tenant)
    # Both accounts have a team 1, so their second team is the one whose id we lack.
    await create(client, other_tenant, "teams", name="Their second team")
    await create(client, tenant, "teams", name="Ours", member_ids=[1])
    theirs = await snapshot(client, other_tenant)
    ours = await snapshot(client, tenant)
    headers = key(tenant) if how == "api-key" else bearer(await admin_token(client, tenant))

    for plural, item_id in (("operators", 3), ("operators", 4), ("teams", 2), ("canned", 1)):
        url = f"{ROOT}/{plural}/{item_id}"
        patched = await client.patch(url, headers=headers, json={"name": "Hijacked"})
        assert_error(patched, 404, NOT_FOUND[plural])
        deleted = await client.delete(url, headers=headers)
        assert_error(deleted, 404, NOT_FOUND[plural])
    for member_ids in ([3], [4], [1, 3]):
        body = {"name": "Mixed", "member_ids": member_ids}
        created = await client.post(f"{ROOT}/teams", headers=headers, json=body)
        assert_error(created, 400, "unknown_operator")
        patched = await client.patch(f"{ROOT}/teams/1", headers=headers, json=body)
        assert_error(patched, 400, "unknown_operator")

    assert await snapshot(client, other_tenant) == theirs
    assert await snapshot(client, tenant) == ours


async def test_lists_never_include_another_accounts_items(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await _others_objects(client, other_tenant)
    await create(client, tenant, "canned", name="Ours", message="Our message")
    for headers in (
        key(tenant),
        bearer(await admin_token(client, tenant)),
        bearer(await operator_token(client, tenant)),
    ):
        for plural in SINGULAR:
            response = await client.get(f"{ROOT}/{plural}", headers=headers)
            text = response.text
            assert "other3@" not in text, text
            assert "Their" not in text, text
            assert other_tenant.account_id not in text, text
        operators = (await client.get(f"{ROOT}/operators", headers=headers)).json()["operators"]
        assert [o["id"] for o in operators] == [1, 2]
        canned = (await client.get(f"{ROOT}/canned", headers=headers)).json()["canned"]
        assert [c["name"] for c in canned] == ["Ours"]


async def test_the_same_id_in_two_accounts_names_two_objects(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await snapshot(client, other_tenant)
    response = await client.patch(
        f"{ROOT}/operators/2", headers=key(tenant), json={"name": "Ours now", "is_admin": True}
    )
    assert response.status_code == 200, response.json()
    await client.delete(f"{ROOT}/operators/1", headers=key(tenant))
    assert await snapshot(client, other_tenant) == theirs
    await token_of(client, f"ada@{other_tenant.account_id}.test")


async def test_other_accounts_canned_cannot_be_sent(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create(client, other_tenant, "canned", name="Theirs", message="Their secret text")
    convo = await tenant.visitor_says("Hello")
    response = await tenant.command(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=1
    )
    assert_error(response, 404, "canned_not_found")
    assert "secret" not in response.text


# secrets at rest


async def test_passwords_are_stored_as_scrypt_hashes(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await create(client, tenant, "operators", **NEW_OPERATOR)
    (found,) = await services.store.get_credentials(NEW_OPERATOR["email"], limit=2)
    first = found.password_hash
    assert first.startswith("scrypt$")
    assert NEW_OPERATOR["password"] not in first

    await client.patch(
        f"{ROOT}/operators/3", headers=key(tenant), json={"password": "another-password"}
    )
    (found,) = await services.store.get_credentials(NEW_OPERATOR["email"], limit=2)
    assert found.password_hash.startswith("scrypt$")
    assert found.password_hash != first
    assert "another-password" not in found.password_hash


async def test_same_password_hashes_differently_per_operator(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    """A per-operator salt: equal passwords must not be visible as equal hashes."""
    for email in ("one@example.test", "two@example.test"):
        await create(client, tenant, "operators", **{**NEW_OPERATOR, "email": email})
    (one,) = await services.store.get_credentials("one@example.test", limit=2)
    (two,) = await services.store.get_credentials("two@example.test", limit=2)
    assert one.password_hash != two.password_hash


async def test_no_secret_is_stored_in_plaintext(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    await create(client, tenant, "operators", **NEW_OPERATOR)
    path = Path(services.settings.data_dir) / "liveop.db"
    assert services.settings.database_url.endswith(str(path))
    with sqlite3.connect(path) as conn:
        stored = [row[0] for row in conn.execute("SELECT key_hash FROM api_keys")]
        columns = [row[1] for row in conn.execute("PRAGMA table_info(api_keys)")]
    assert hash_api_key(tenant.api_key) in stored
    assert all(tenant.api_key not in value for value in stored)
    assert set(columns) == {"key_hash", "account_id", "created"}
    for secret in (tenant.api_key, NEW_OPERATOR["password"]):
        assert files_containing(Path(services.settings.data_dir), secret) == []


def files_containing(directory: Path, text: str) -> list[Path]:
    """Every file, not only the database: in WAL mode recent writes live in the -wal file."""
    return [f for f in directory.iterdir() if f.is_file() and text.encode() in f.read_bytes()]


async def test_admin_responses_never_carry_password_hashes(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await client.post(f"{ROOT}/operators", headers=key(tenant), json=NEW_OPERATOR)
    listed = await client.get(f"{ROOT}/operators", headers=key(tenant))
    for response in (created, listed):
        assert "scrypt" not in response.text
        assert NEW_OPERATOR["password"] not in response.text


async def test_canned_message_with_a_nul_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/api/v1/admin/canned", json={"name": "x", "message": "a\u0000b"}, headers=key(tenant)
    )
    assert_error(response, 400, "invalid_characters")


@pytest.mark.parametrize("lang", ["english", "e", "en_US_POSIX_x", 7])
async def test_an_operators_language_must_be_a_language_code(
    client: httpx.AsyncClient, tenant: Tenant, lang: object
) -> None:
    created = await client.post(
        f"{ROOT}/operators", headers=key(tenant), json={**NEW_OPERATOR, "lang": lang}
    )
    assert created.status_code == 400
    patched = await client.patch(
        f"{ROOT}/operators/{tenant.operator_id}", headers=key(tenant), json={"lang": lang}
    )
    assert patched.status_code == 400
    assert all(o["lang"] == "en" for o in await listing(client, tenant, "operators"))


async def test_an_operators_language_is_normalised(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    patched = await client.patch(
        f"{ROOT}/operators/{tenant.operator_id}", headers=key(tenant), json={"lang": "PT_br"}
    )
    assert patched.status_code == 200 and patched.json()["operator"]["lang"] == "pt-BR"
