"""Operator login and the credentials every account-scoped endpoint accepts."""

from __future__ import annotations

import secrets
import time
from typing import Any, cast

import httpx
import jwt
import pytest

from server.auth import Authenticator
from server.errors import Unauthorized
from server.security import TokenClaims, issue_token
from server.services import Services
from storage.base import Store
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer

LOGIN = "/api/v1/auth/login"
CANNED = "/api/v1/admin/canned"
OPERATORS = "/api/v1/admin/operators"


def admin_email(tenant: Tenant) -> str:
    return f"ada@{tenant.account_id}.test"


def operator_email(tenant: Tenant) -> str:
    return f"alex@{tenant.account_id}.test"


async def login(client: httpx.AsyncClient, email: str, password: str) -> dict[str, Any]:
    response = await client.post(LOGIN, json={"email": email, "password": password})
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    return body


# login


async def test_login_returns_a_token_and_the_operator(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    before = time.time()
    body = await login(client, admin_email(tenant), TEST_PASSWORD)
    assert body["success"] is True
    assert body["operator"] == {
        "id": tenant.admin_id,
        "name": "Ada Admin",
        "email": admin_email(tenant),
        "is_admin": True,
        "role": "admin",
        "lang": "en",
        "avatar_url": "",
        "active": True,
    }
    ttl = services.settings.jwt_ttl_s
    assert before + ttl - 5 <= body["expires_at"] <= time.time() + ttl + 5
    claims = jwt.decode(body["token"], options={"verify_signature": False})
    assert claims["exp"] == pytest.approx(body["expires_at"], abs=1)


async def test_login_token_works_as_bearer(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = (await login(client, admin_email(tenant), TEST_PASSWORD))["token"]
    response = await client.get(CANNED, headers=bearer(token))
    assert response.status_code == 200, response.json()
    assert response.json() == {"success": True, "canned": []}


async def test_login_accepts_a_form_body(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        LOGIN, data={"email": operator_email(tenant), "password": TEST_PASSWORD}
    )
    body = response.json()
    assert response.status_code == 200, body
    assert body["operator"]["id"] == tenant.operator_id
    assert body["operator"]["is_admin"] is False


async def test_login_email_is_case_insensitive_and_trimmed(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = await login(client, f"  {admin_email(tenant).upper()} ", TEST_PASSWORD)
    assert body["operator"]["id"] == tenant.admin_id


async def test_login_password_is_case_sensitive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        LOGIN, json={"email": admin_email(tenant), "password": TEST_PASSWORD.upper()}
    )
    assert_error(response, 401, "invalid_credentials")


async def test_wrong_password_and_unknown_email_look_the_same(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    wrong = await client.post(LOGIN, json={"email": admin_email(tenant), "password": "nope-nope"})
    unknown = await client.post(
        LOGIN, json={"email": "nobody@nowhere.test", "password": TEST_PASSWORD}
    )
    assert_error(wrong, 401, "invalid_credentials")
    assert_error(unknown, 401, "invalid_credentials")
    assert wrong.json() == unknown.json()


async def test_one_accounts_password_does_not_open_another_accounts_login(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    response = await client.post(
        LOGIN, json={"email": admin_email(other_tenant), "password": "nope-nope"}
    )
    assert_error(response, 401, "invalid_credentials")


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"email": "ada@example.test"},
        {"password": TEST_PASSWORD},
        {"email": "", "password": TEST_PASSWORD},
        {"email": "ada@example.test", "password": ""},
    ],
)
async def test_login_without_a_field_is_missing_field(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, str]
) -> None:
    assert_error(await client.post(LOGIN, json=fields), 400, "missing_field")


async def test_login_with_wrong_json_types_is_a_400(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        LOGIN, json={"email": [admin_email(tenant)], "password": TEST_PASSWORD}
    )
    assert_error(response, 400, "invalid_field")


async def test_login_with_a_huge_password_is_refused_before_hashing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(LOGIN, json={"email": admin_email(tenant), "password": "x" * 1000})
    assert_error(response, 400, "invalid_field")


async def test_login_with_a_non_json_body_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        LOGIN, content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert_error(response, 400, "invalid_json")


# tokens


async def test_expired_token_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, services: Services
) -> None:
    token, _ = issue_token(
        services.settings.secret_key, TokenClaims(tenant.account_id, tenant.admin_id), ttl_s=-10
    )
    assert_error(await client.get(CANNED, headers=bearer(token)), 401, "invalid_token")


async def test_token_signed_with_another_key_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token, _ = issue_token(
        secrets.token_urlsafe(48), TokenClaims(tenant.account_id, tenant.admin_id), ttl_s=600
    )
    assert_error(await client.get(CANNED, headers=bearer(token)), 401, "invalid_token")


async def test_unsigned_token_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    payload = {"iss": "liveop", "sub": str(tenant.admin_id), "acc": tenant.account_id,
               "exp": int(time.time()) + 600}  # fmt: skip
    token = jwt.encode(payload, key=None, algorithm="none")
    assert_error(await client.get(CANNED, headers=bearer(token)), 401, "invalid_token")


async def test_token_of_a_deleted_operator_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = (await login(client, operator_email(tenant), TEST_PASSWORD))["token"]
    assert (await client.get(CANNED, headers=bearer(token))).status_code == 200
    deleted = await client.delete(
        f"{OPERATORS}/{tenant.operator_id}", headers={"X-Api-Key": tenant.api_key}
    )
    assert deleted.status_code == 200, deleted.json()
    assert_error(await client.get(CANNED, headers=bearer(token)), 401, "invalid_token")


async def test_deleted_operators_token_stays_dead_after_a_new_operator_is_created(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Ids are never reused, so an old token cannot come to name somebody else."""
    token = (await login(client, operator_email(tenant), TEST_PASSWORD))["token"]
    key = {"X-Api-Key": tenant.api_key}
    await client.delete(f"{OPERATORS}/{tenant.operator_id}", headers=key)
    created = await client.post(
        OPERATORS,
        headers=key,
        json={"name": "New", "email": "new@example.test", "password": "pw-new-123"},
    )
    assert created.status_code == 201, created.json()
    assert created.json()["operator"]["id"] != tenant.operator_id
    assert_error(await client.get(CANNED, headers=bearer(token)), 401, "invalid_token")


@pytest.mark.parametrize("credential", ["garbage", "a.b.c", "", "eyJhbGciOiJIUzI1NiJ9.e30.x"])
async def test_garbage_bearer_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, credential: str
) -> None:
    response = await client.get(CANNED, headers={"Authorization": f"Bearer {credential}"})
    assert response.status_code == 401, response.json()
    assert response.json()["error"]["code"] in ("invalid_token", "missing_credentials")


async def test_no_credentials_is_missing_credentials(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert_error(await client.get(CANNED), 401, "missing_credentials")
    assert_error(
        await client.get(CANNED, headers={"Authorization": "Basic YWRhOnB3"}),
        401,
        "missing_credentials",
    )


async def test_wrong_api_key_is_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    wrong = "lok_" + secrets.token_urlsafe(32)
    assert_error(await client.get(CANNED, headers={"X-Api-Key": wrong}), 401, "invalid_credentials")
    assert_error(await client.get(CANNED, headers=bearer(wrong)), 401, "invalid_credentials")


async def test_bearer_scheme_is_case_insensitive(client: httpx.AsyncClient, tenant: Tenant) -> None:
    token = (await login(client, admin_email(tenant), TEST_PASSWORD))["token"]
    response = await client.get(CANNED, headers={"Authorization": f"bearer {token}"})
    assert response.status_code == 200, response.json()


async def test_token_of_one_account_reads_only_that_account(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    token = (await login(client, admin_email(tenant), TEST_PASSWORD))["token"]
    response = await client.get(OPERATORS, headers=bearer(token))
    emails = {o["email"] for o in response.json()["operators"]}
    assert emails == {admin_email(tenant), operator_email(tenant)}


async def test_demoted_admins_existing_token_loses_admin_rights(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    token = (await login(client, admin_email(tenant), TEST_PASSWORD))["token"]
    demoted = await client.patch(
        f"{OPERATORS}/{tenant.admin_id}",
        headers={"X-Api-Key": tenant.api_key},
        json={"is_admin": False},
    )
    assert demoted.status_code == 200, demoted.json()
    response = await client.post(
        CANNED, headers=bearer(token), json={"name": "Hi", "message": "Hello"}
    )
    assert_error(response, 403, "admin_required")


async def test_password_change_takes_effect_at_login(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    changed = await client.patch(
        f"{OPERATORS}/{tenant.operator_id}",
        headers={"X-Api-Key": tenant.api_key},
        json={"password": "a-new-password"},
    )
    assert changed.status_code == 200, changed.json()
    old = await client.post(
        LOGIN, json={"email": operator_email(tenant), "password": TEST_PASSWORD}
    )
    assert_error(old, 401, "invalid_credentials")
    await login(client, operator_email(tenant), "a-new-password")


async def test_email_change_takes_effect_at_login(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    changed = await client.patch(
        f"{OPERATORS}/{tenant.operator_id}",
        headers={"X-Api-Key": tenant.api_key},
        json={"email": "Alex.New@Example.test"},
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["operator"]["email"] == "alex.new@example.test"
    old = await client.post(
        LOGIN, json={"email": operator_email(tenant), "password": TEST_PASSWORD}
    )
    assert_error(old, 401, "invalid_credentials")
    body = await login(client, "alex.new@example.test", TEST_PASSWORD)
    assert body["operator"]["id"] == tenant.operator_id


# API keys: a key never moves to another account nor is revoked, so its owner is read once


class _CountingStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.key_reads = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def account_for_api_key(self, api_key_hash: str) -> str | None:
        self.key_reads += 1
        return await self._store.account_for_api_key(api_key_hash)


async def test_an_api_key_is_looked_up_once_and_still_refused_where_it_does_not_belong(
    services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    store = _CountingStore(services.store)
    auth = Authenticator(cast(Store, store), services.settings.secret_key, 3600)
    for _ in range(3):
        assert (await auth.account_key(tenant.account_id, tenant.api_key)).account_id == (
            tenant.account_id
        )
        assert (await auth.headers({"x-api-key": tenant.api_key})).account_id == tenant.account_id
    assert store.key_reads == 1
    # Known, but another account's: refused without a read, as an unknown key is.
    with pytest.raises(Unauthorized):
        await auth.account_key(other_tenant.account_id, tenant.api_key)
    assert store.key_reads == 1
    wrong = "lok_" + secrets.token_urlsafe(32)
    for _ in range(2):
        with pytest.raises(Unauthorized):
            await auth.account_key(tenant.account_id, wrong)
    # A miss is not kept: each wrong key is asked again (and cannot fill the table).
    assert store.key_reads == 3
