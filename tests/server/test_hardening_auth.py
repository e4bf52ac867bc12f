"""Issue 21, authentication items, at the HTTP surface: login lockout (4) and revocation (5)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server.api.auth import DEVICE_COOKIE, LOGIN_PER_DEVICE, LOGIN_PER_EMAIL, LOGIN_PER_IP
from tests.conftest import TEST_PASSWORD, Tenant, assert_error

LOGIN = "/api/v1/auth/login"
ATTACKER_IP = "203.0.113.66"
VICTIM_IP = "198.51.100.20"


def _client(app: ASGIApp, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://liveop.test")


@pytest.fixture
async def attacker(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, ATTACKER_IP) as client:
        yield client


@pytest.fixture
async def victim(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app, VICTIM_IP) as client:
        yield client


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


# ------------------------------------------------------------------------------------------
# Item 4: anyone can lock an operator out


async def test_anyone_can_lock_an_operator_out_not_from_a_browser_they_used_before(
    attacker: httpx.AsyncClient, victim: httpx.AsyncClient, tenant: Tenant
) -> None:
    email = f"alex@{tenant.account_id}.test"
    assert (await _login(victim, email, TEST_PASSWORD)).status_code == 200
    # The report's attack: wrong passwords for the victim's email until it answers 429 (the
    # victim's first login spent one of the budget), and more of them to keep it so.
    for _ in range(LOGIN_PER_EMAIL.limit - 1):
        assert_error(await _login(attacker, email, "guess"), 401, "invalid_credentials")
    for _ in range(3):
        assert_error(await _login(attacker, email, TEST_PASSWORD), 429, "rate_limited")
    # The attacker is held; the operator, from the browser they signed in with, is not.
    again = await _login(victim, email.upper(), TEST_PASSWORD)
    assert again.status_code == 200, again.json()


async def test_a_known_browser_has_a_guessing_budget_of_its_own(
    victim: httpx.AsyncClient, tenant: Tenant
) -> None:
    email = f"alex@{tenant.account_id}.test"
    assert (await _login(victim, email, TEST_PASSWORD)).status_code == 200
    for _ in range(LOGIN_PER_DEVICE.limit):
        assert_error(await _login(victim, email, "guess"), 401, "invalid_credentials")
    assert_error(await _login(victim, email, TEST_PASSWORD), 429, "rate_limited")


async def test_a_device_cookie_counts_only_for_the_email_it_was_issued_for(
    attacker: httpx.AsyncClient, tenant: Tenant
) -> None:
    # The attacker's own login (Ada's) gives a cookie, which buys nothing against Alex.
    assert (await _login(attacker, f"ada@{tenant.account_id}.test", TEST_PASSWORD)).is_success
    email = f"alex@{tenant.account_id}.test"
    for _ in range(LOGIN_PER_EMAIL.limit):
        assert_error(await _login(attacker, email, "guess"), 401, "invalid_credentials")
    assert_error(await _login(attacker, email, "guess"), 429, "rate_limited")
    # A forged cookie is no cookie at all.
    attacker.cookies.set(DEVICE_COOKIE, "forged.mac", path="/api/v1/auth/")
    assert_error(await _login(attacker, email, "guess"), 429, "rate_limited")


async def test_guessing_from_many_addresses_still_meets_the_per_email_budget(
    app: Starlette, tenant: Tenant
) -> None:
    email = f"alex@{tenant.account_id}.test"
    for i in range(LOGIN_PER_EMAIL.limit):
        async with _client(app, f"203.0.113.{i + 1}") as bot:
            assert_error(await _login(bot, email, "guess"), 401, "invalid_credentials")
    async with _client(app, "203.0.113.200") as bot:
        assert_error(await _login(bot, email, "guess"), 429, "rate_limited")
    assert LOGIN_PER_IP.limit > LOGIN_PER_EMAIL.limit
