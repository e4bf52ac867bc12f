"""An operator's own profile and invitations of teammates (issue 18), on SQLite and
PostgreSQL: what works, and every bad input refused with a clear 4xx."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.directory import PENDING_INVITES_MAX
from server.services import Services
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import admin_token, operator_token, token_of
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

ME = "/api/v1/operator/me"
INVITES = "/api/v1/admin/invites"
OPEN = "/api/v1/auth/invite"
ACCEPT = "/api/v1/auth/invite/accept"
NEW_PASSWORD = "a-new-password-9"


async def _ok(response: httpx.Response, status: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == status, body
    assert body["success"] is True
    return body


async def _invite(
    client: httpx.AsyncClient, tenant: Tenant, email: str = "sam@example.test", **fields: Any
) -> dict[str, Any]:
    headers = bearer(await admin_token(client, tenant))
    body = {"email": email, "name": "Sam Newcomer", **fields}
    answer = await _ok(await client.post(INVITES, json=body, headers=headers), 201)
    invite: dict[str, Any] = answer["invite"]
    return invite


# the profile


async def test_an_operator_renames_themselves_and_sets_avatar_and_language(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = bearer(await operator_token(client, tenant))
    me = (await _ok(await client.get(ME, headers=headers)))["operator"]
    assert (me["id"], me["name"]) == (tenant.operator_id, "Alex")
    changes = {"name": "  Alex Rivera ", "avatar_url": "https://cdn.example.test/a.png",
               "lang": "pt_br"}  # fmt: skip
    updated = (await _ok(await client.patch(ME, json=changes, headers=headers)))["operator"]
    assert (updated["name"], updated["avatar_url"], updated["lang"]) == (
        "Alex Rivera", "https://cdn.example.test/a.png", "pt-BR",
    )  # fmt: skip
    # The same token still works (no password changed), and the admin's list agrees.
    listed = await _ok(await client.get("/api/v1/admin/operators", headers=headers))
    assert any(o["name"] == "Alex Rivera" for o in listed["operators"])
    cleared = await client.patch(ME, json={"avatar_url": ""}, headers=headers)
    assert (await _ok(cleared))["operator"]["avatar_url"] == ""


async def test_a_new_password_needs_the_current_one_and_signs_out_other_sessions(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    email = f"alex@{tenant.account_id}.test"
    elsewhere = bearer(await token_of(client, email))
    headers = bearer(await token_of(client, email))
    missing = await client.patch(ME, json={"password": NEW_PASSWORD}, headers=headers)
    assert_error(missing, 400, "current_password_required")
    wrong = {"password": NEW_PASSWORD, "current_password": "not-the-password"}
    assert_error(await client.patch(ME, json=wrong, headers=headers), 403, "wrong_password")
    short = {"password": "short", "current_password": TEST_PASSWORD}
    assert_error(await client.patch(ME, json=short, headers=headers), 400, "invalid_field")
    # Nothing changed so far: the old password still signs in.
    await token_of(client, email)
    right = {"password": NEW_PASSWORD, "current_password": TEST_PASSWORD}
    answer = await _ok(await client.patch(ME, json=right, headers=headers))
    assert answer["operator"]["id"] == tenant.operator_id and answer["token"]
    assert_error(await client.get(ME, headers=elsewhere), 401, "invalid_token")
    assert_error(await client.get(ME, headers=headers), 401, "invalid_token")
    await _ok(await client.get(ME, headers=bearer(answer["token"])))
    await token_of(client, email, NEW_PASSWORD)
    old = {"email": email, "password": TEST_PASSWORD}
    assert_error(await client.post("/api/v1/auth/login", json=old), 401, "invalid_credentials")


async def test_colleagues_hear_of_a_renamed_operator(
    app: Starlette, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    colleague = await admin_token(client, tenant)
    headers = bearer(await operator_token(client, tenant))
    async with serve(app) as base, sse(base, colleague) as stream:
        await _ok(await client.patch(ME, json={"name": "Alex Rivera"}, headers=headers))
        event = await stream.until("operator:updated")
        assert event.id is None  # state: never replayed
        assert (event.data["id"], event.data["name"]) == (tenant.operator_id, "Alex Rivera")
        # An admin's change is told the same way.
        path = f"/api/v1/admin/operators/{tenant.operator_id}"
        renamed = await client.patch(path, json={"name": "Alex R."}, headers=bearer(colleague))
        await _ok(renamed)
        event = await stream.until("operator:updated")
        assert event.data["name"] == "Alex R."


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"name": ""}, "invalid_field"),
        ({"name": "   "}, "invalid_field"),
        ({"name": "x" * 101}, "invalid_field"),
        ({"name": "Al\x00ex"}, "invalid_field"),
        ({"name": "Al\u202eex"}, "invalid_field"),
        ({"name": ["Alex"]}, "invalid_field"),
        ({"name": {"first": "Alex"}}, "invalid_field"),
        ({"avatar_url": "javascript:alert(1)"}, "invalid_field"),
        ({"avatar_url": "ftp://example.test/a.png"}, "invalid_field"),
        ({"avatar_url": "https://example.test/a b.png"}, "invalid_field"),
        ({"avatar_url": "https://example.test/\x00.png"}, "invalid_field"),
        ({"avatar_url": "https://example.test/" + "a" * 2100}, "invalid_field"),
        ({"lang": "klingon-language"}, "invalid_language"),
        ({"lang": 10**30}, "invalid_field"),
        ({"password": NEW_PASSWORD, "current_password": ["pw-operator-1"]}, "invalid_field"),
        ({"password": "x" * 300, "current_password": TEST_PASSWORD}, "invalid_field"),
    ],
)
async def test_bad_profile_changes_are_refused_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], code: str
) -> None:
    headers = bearer(await operator_token(client, tenant))
    before = (await _ok(await client.get(ME, headers=headers)))["operator"]
    assert_error(await client.patch(ME, json=fields, headers=headers), 400, code)
    assert (await _ok(await client.get(ME, headers=headers)))["operator"] == before


async def test_the_profile_is_an_operators_not_the_api_keys(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    key = {"X-Api-Key": tenant.api_key}
    assert_error(await client.get(ME, headers=key), 400, "operator_required")
    patch = await client.patch(ME, json={"name": "Key"}, headers=key)
    assert_error(patch, 400, "operator_required")
    assert_error(await client.get(ME), 401, "missing_credentials")


# invitations


async def test_an_invitee_chooses_a_password_and_is_signed_in_once(
    client: httpx.AsyncClient, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    headers = bearer(await admin_token(client, tenant))
    team = await _ok(
        await client.post("/api/v1/admin/teams", json={"name": "Support"}, headers=headers), 201
    )
    team_id = team["team"]["id"]
    caplog.set_level(logging.DEBUG)
    invite = await _invite(client, tenant, "Sam@Example.test", is_admin=True, team_ids=[team_id])
    token = invite["token"]
    assert invite["path"] == f"/app/#/invite/{token}" and len(token) >= 43
    assert (invite["email"], invite["is_admin"], invite["team_ids"]) == (
        "sam@example.test", True, [team_id],
    )  # fmt: skip
    assert invite["expires_at"] > time.time() + 6 * 24 * 3600
    pending = (await _ok(await client.get(INVITES, headers=headers)))["invites"]
    assert [(i["id"], i["email"]) for i in pending] == [(invite["id"], "sam@example.test")]
    assert "token" not in pending[0]

    opened = (await _ok(await client.post(OPEN, json={"token": token})))["invite"]
    assert (opened["email"], opened["name"], opened["account_name"]) == (
        "sam@example.test", "Sam Newcomer", "Acme",
    )  # fmt: skip
    accepted = await _ok(await client.post(ACCEPT, json={"token": token, "password": NEW_PASSWORD}))
    operator = accepted["operator"]
    assert (operator["name"], operator["email"], operator["is_admin"]) == (
        "Sam Newcomer", "sam@example.test", True,
    )  # fmt: skip
    me = await _ok(await client.get(ME, headers=bearer(accepted["token"])))
    assert me["operator"]["id"] == operator["id"]
    teams = (await _ok(await client.get("/api/v1/admin/teams", headers=headers)))["teams"]
    assert operator["id"] in next(t for t in teams if t["id"] == team_id)["member_ids"]
    await token_of(client, "sam@example.test", NEW_PASSWORD)

    # Used: the link says so, works no more, and is no longer pending.
    again = await client.post(ACCEPT, json={"token": token, "password": "another-password"})
    assert_error(again, 409, "invite_used")
    assert_error(await client.post(OPEN, json={"token": token}), 409, "invite_used")
    assert (await _ok(await client.get(INVITES, headers=headers)))["invites"] == []
    # The token never reaches a log line.
    assert token not in caplog.text


async def test_a_link_used_twice_at_once_makes_one_operator(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    invite = await _invite(client, tenant)
    tries = [
        client.post(ACCEPT, json={"token": invite["token"], "password": f"{NEW_PASSWORD}{n}"})
        for n in range(4)
    ]
    answers = await asyncio.gather(*tries)
    assert sorted(r.status_code for r in answers) == [200, 409, 409, 409]
    for refused in (r for r in answers if r.status_code == 409):
        assert_error(refused, 409, "invite_used")
    emails = [o.email for o in await services.store.list_operators(tenant.account_id)]
    assert emails.count("sam@example.test") == 1


async def test_an_expired_or_revoked_invitation_cannot_be_used(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    expired = await _invite(client, tenant, "late@example.test")
    # The week passes: the invitation's expiry is moved to the past where it is kept.
    store: Any = services.store
    await store._write(
        lambda conn: conn.execute("UPDATE invites SET expires = $1", time.time() - 1)
    )
    assert_error(await client.post(OPEN, json={"token": expired["token"]}), 409, "invite_expired")
    late = {"token": expired["token"], "password": NEW_PASSWORD}
    assert_error(await client.post(ACCEPT, json=late), 409, "invite_expired")
    headers = bearer(await admin_token(client, tenant))
    # Expired invitations stay listed until an admin revokes them.
    assert [
        i["id"] for i in (await _ok(await client.get(INVITES, headers=headers)))["invites"]
    ] == [expired["id"]]
    revoked = await _invite(client, tenant, "gone@example.test")
    await _ok(await client.delete(f"{INVITES}/{revoked['id']}", headers=headers))
    gone = {"token": revoked["token"], "password": NEW_PASSWORD}
    assert_error(await client.post(ACCEPT, json=gone), 404, "invite_not_found")
    again = await client.delete(f"{INVITES}/{revoked['id']}", headers=headers)
    assert_error(again, 404, "invite_not_found")
    emails = {o.email for o in await services.store.list_operators(tenant.account_id)}
    assert not emails & {"late@example.test", "gone@example.test"}


async def test_invitations_are_per_account(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = await _invite(client, other_tenant, "pat@example.test")
    headers = bearer(await admin_token(client, tenant))
    assert (await _ok(await client.get(INVITES, headers=headers)))["invites"] == []
    refused = await client.delete(f"{INVITES}/{theirs['id']}", headers=headers)
    assert_error(refused, 404, "invite_not_found")
    # Another account's team is no team of this one; its email is free here.
    other_team = {"email": "pat@example.test", "name": "Pat", "team_ids": [1]}
    await _ok(await client.post("/api/v1/admin/teams", json={"name": "T"},
                                headers={"X-Api-Key": other_tenant.api_key}), 201)  # fmt: skip
    assert_error(
        await client.post(INVITES, json=other_team, headers=headers), 404, "team_not_found"
    )
    mine = await _invite(client, tenant, "pat@example.test")
    # Their link makes an operator of theirs, never of this account.
    body = {"token": theirs["token"], "password": NEW_PASSWORD}
    accepted = await _ok(await client.post(ACCEPT, json=body))
    me = await _ok(await client.get(ME, headers=bearer(accepted["token"])))
    assert me["operator"]["email"] == "pat@example.test"
    assert_error(
        await client.get(INVITES, headers=bearer(accepted["token"])), 403, "admin_required"
    )
    still = (await _ok(await client.get(INVITES, headers=headers)))["invites"]
    assert [i["id"] for i in still] == [mine["id"]]


async def test_only_admins_invite(client: httpx.AsyncClient, tenant: Tenant) -> None:
    headers = bearer(await operator_token(client, tenant))
    body = {"email": "x@example.test", "name": "X"}
    assert_error(await client.post(INVITES, json=body, headers=headers), 403, "admin_required")
    assert_error(await client.get(INVITES, headers=headers), 403, "admin_required")
    assert_error(await client.delete(f"{INVITES}/1", headers=headers), 403, "admin_required")
    # The API key acts as an admin.
    created = await client.post(INVITES, json=body, headers={"X-Api-Key": tenant.api_key})
    assert (await _ok(created, 201))["invite"]["invited_by"] is None


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({"name": "Sam"}, 400, "missing_field"),
        ({"email": "sam@example.test"}, 400, "missing_field"),
        ({"email": "not an email", "name": "Sam"}, 400, "invalid_field"),
        ({"email": ["sam@example.test"], "name": "Sam"}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "S\x00m"}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "x" * 101}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "Sam", "is_admin": "maybe"}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "Sam", "team_ids": [10**30]}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "Sam", "team_ids": "1"}, 400, "invalid_field"),
        ({"email": "sam@example.test", "name": "Sam", "team_ids": [9]}, 404, "team_not_found"),
        (
            {"email": "sam@example.test", "name": "Sam", "team_ids": list(range(60))},
            400,
            "invalid_field",
        ),
    ],
)
async def test_bad_invitations_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], status: int, code: str
) -> None:
    headers = bearer(await admin_token(client, tenant))
    assert_error(await client.post(INVITES, json=fields, headers=headers), status, code)
    assert (await _ok(await client.get(INVITES, headers=headers)))["invites"] == []


async def test_an_operators_email_cannot_be_invited_again(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    headers = bearer(await admin_token(client, tenant))
    taken = {"email": f"ALEX@{tenant.account_id}.test", "name": "Alex Again"}
    assert_error(await client.post(INVITES, json=taken, headers=headers), 409, "email_taken")
    # Two invitations for one email: the first accepted takes it, the second is refused.
    first, second = await _invite(client, tenant), await _invite(client, tenant)
    await _ok(await client.post(ACCEPT, json={"token": first["token"], "password": NEW_PASSWORD}))
    late = await client.post(ACCEPT, json={"token": second["token"], "password": NEW_PASSWORD})
    assert_error(late, 409, "email_taken")


@pytest.mark.parametrize(
    ("fields", "status", "code"),
    [
        ({}, 400, "missing_field"),
        ({"token": "no-such-token", "password": NEW_PASSWORD}, 404, "invite_not_found"),
        ({"token": "bad\x00token", "password": NEW_PASSWORD}, 400, "invalid_characters"),
        ({"token": "t" * 500, "password": NEW_PASSWORD}, 400, "invalid_field"),
        ({"token": ["a"], "password": NEW_PASSWORD}, 400, "invalid_field"),
        ({"token": 12345678901234567890, "password": NEW_PASSWORD}, 404, "invite_not_found"),
    ],
)
async def test_bad_invitation_links_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], status: int, code: str
) -> None:
    assert_error(await client.post(ACCEPT, json=fields), status, code)
    opened = {k: v for k, v in fields.items() if k == "token"}
    assert_error(await client.post(OPEN, json=opened), status, code)


async def test_an_invitees_password_is_checked_and_the_link_survives_a_bad_one(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    invite = await _invite(client, tenant)
    for password in ("short", "x" * 257, ["a-list-password"]):
        refused = await client.post(ACCEPT, json={"token": invite["token"], "password": password})
        assert_error(refused, 400, "invalid_field")
    await _ok(await client.post(ACCEPT, json={"token": invite["token"], "password": NEW_PASSWORD}))


async def test_open_invitations_are_bounded_and_revoking_frees_a_place(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    for n in range(PENDING_INVITES_MAX):
        await services.directory.invite(
            tenant.account_id, None, email=f"p{n}@example.test", name="P", is_admin=False,
            team_ids=[],
        )  # fmt: skip
    headers = bearer(await admin_token(client, tenant))
    body = {"email": "late@example.test", "name": "Late"}
    assert_error(await client.post(INVITES, json=body, headers=headers), 400, "too_many_invites")
    first = (await _ok(await client.get(INVITES, headers=headers)))["invites"][0]
    await _ok(await client.delete(f"{INVITES}/{first['id']}", headers=headers))
    await _ok(await client.post(INVITES, json=body, headers=headers), 201)
