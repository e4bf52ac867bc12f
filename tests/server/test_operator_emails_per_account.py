"""Issue 21 item 9, which emails are operators elsewhere: creating an operator with an email
used in another account answered 409 email_taken, so an admin learnt who uses the product.
Emails are now unique per account; login takes an optional account, and without it checks the
password against every operator with the email (a bounded, equal amount of work), answering
409 account_required only when the password works in more than one. On SQLite and
PostgreSQL."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import server.auth
from server.auth import LOGIN_ACCOUNTS_MAX
from server.services import Services
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, make_tenant
from tests.storage.conftest import postgres_url
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

__all__ = ["postgres_url"]

ADMIN = "/api/v1/admin/operators"
LOGIN = "/api/v1/auth/login"
SHARED = "Shared@Example.test"


async def _add(tenant: Tenant, email: str, password: str) -> httpx.Response:
    return await tenant.client.post(
        ADMIN,
        headers={"X-Api-Key": tenant.api_key},
        json={"name": "Sam", "email": email, "password": password},
    )


async def _login(client: httpx.AsyncClient, email: str, password: str, **more: Any) -> Any:
    return await client.post(LOGIN, json={"email": email, "password": password, **more})


async def _signed_in_to(response: httpx.Response, tenant: Tenant) -> None:
    body = response.json()
    assert response.status_code == 200, body
    services = tenant.client._transport.app.state.services  # type: ignore[attr-defined]
    assert isinstance(services, Services)
    assert (await services.auth.token(body["token"])).account_id == tenant.account_id


async def test_an_email_used_in_another_account_is_accepted(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    taken_elsewhere = f"alex@{tenant.account_id}.test".upper()
    response = await _add(other_tenant, taken_elsewhere, "long-enough-1")
    assert response.status_code == 201, response.json()
    assert_error(
        await _add(other_tenant, taken_elsewhere.lower(), "long-enough-1"), 409, "email_taken"
    )
    # Each password still signs in to its own account, without naming it.
    await _signed_in_to(await _login(tenant.client, taken_elsewhere, TEST_PASSWORD), tenant)
    await _signed_in_to(await _login(tenant.client, taken_elsewhere, "long-enough-1"), other_tenant)


async def test_a_password_that_works_in_two_accounts_needs_the_account(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    for each in (tenant, other_tenant):
        assert (await _add(each, SHARED, "same-password")).status_code == 201
    client = tenant.client
    assert_error(await _login(client, SHARED, "same-password"), 409, "account_required")
    # A wrong password tells nothing about how many accounts use the email.
    assert_error(await _login(client, SHARED, "wrong-password"), 401, "invalid_credentials")
    for each in (tenant, other_tenant):
        named = await _login(client, SHARED, "same-password", account=each.account_id)
        await _signed_in_to(named, each)
    unknown = await _login(client, SHARED, "same-password", account="no-such-account")
    assert_error(unknown, 401, "invalid_credentials")
    # The account's own operators log in naming it too, and not naming another.
    alex = f"alex@{tenant.account_id}.test"
    await _signed_in_to(
        await _login(client, alex, TEST_PASSWORD, account=tenant.account_id), tenant
    )
    elsewhere = await _login(client, alex, TEST_PASSWORD, account=other_tenant.account_id)
    assert_error(elsewhere, 401, "invalid_credentials")


async def test_an_email_in_more_accounts_than_are_checked_needs_the_account(
    client: httpx.AsyncClient, services: Services
) -> None:
    tenants = [await make_tenant(client, services, f"T{n}") for n in range(LOGIN_ACCOUNTS_MAX + 1)]
    for n, each in enumerate(tenants):
        assert (await _add(each, SHARED, f"password-{n}")).status_code == 201
    # The first LOGIN_ACCOUNTS_MAX accounts (by id) are checked: a password right there
    # needs the account named; one right only in an unchecked account does not match.
    checked = sorted(t.account_id for t in tenants)[:LOGIN_ACCOUNTS_MAX]
    for n, each in enumerate(tenants):
        unnamed = await _login(client, SHARED, f"password-{n}")
        if each.account_id in checked:
            assert_error(unnamed, 409, "account_required")
        else:
            assert_error(unnamed, 401, "invalid_credentials")
        named = await _login(client, SHARED, f"password-{n}", account=each.account_id)
        await _signed_in_to(named, each)


async def test_login_checks_as_many_passwords_whether_or_not_the_email_is_used(
    tenant: Tenant, other_tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Equal work, so the time does not tell: the KDF runs LOGIN_ACCOUNTS_MAX times without
    an account, once with one, for an unknown email as for one used in one or two accounts."""
    checks: list[str] = []
    verify = server.auth.verify_password

    def counted(password: str, encoded: str) -> bool:
        checks.append(encoded)
        return verify(password, encoded)

    monkeypatch.setattr(server.auth, "verify_password", counted)
    client = tenant.client

    async def kdf_runs(email: str, **more: Any) -> int:
        checks.clear()
        await _login(client, email, "not-the-password", **more)
        return len(checks)

    unknown = await kdf_runs("nobody@example.test")
    once = await kdf_runs(f"alex@{tenant.account_id}.test")
    assert (await _add(other_tenant, f"alex@{tenant.account_id}.test", "long-enough-1")).is_success
    twice = await kdf_runs(f"alex@{tenant.account_id}.test")
    assert unknown == once == twice == LOGIN_ACCOUNTS_MAX
    assert await kdf_runs("nobody@example.test", account=tenant.account_id) == 1
    assert await kdf_runs(f"alex@{tenant.account_id}.test", account=tenant.account_id) == 1


@pytest.mark.parametrize("account", ["a\x00b", "x" * 65, ["a"], {"id": "a"}])
async def test_a_bad_account_in_a_login_is_a_400(tenant: Tenant, account: Any) -> None:
    response = await _login(
        tenant.client, f"alex@{tenant.account_id}.test", TEST_PASSWORD, account=account
    )
    assert response.status_code == 400, response.json()
    assert response.json()["success"] is False
