"""Issue 21, authentication items, at the HTTP surface: login lockout (4) and revocation (5)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server.api.auth import DEVICE_COOKIE, LOGIN_PER_DEVICE, LOGIN_PER_EMAIL, LOGIN_PER_IP
from server.app import create_app
from server.services import Services
from server.settings import load_settings
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer, make_tenant
from tests.storage.conftest import postgres_url

__all__ = ["postgres_url"]

LOGIN = "/api/v1/auth/login"
ATTACKER_IP = "203.0.113.66"
VICTIM_IP = "198.51.100.20"
SHARED_SECRET_KEY = "k" * 48


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


# ------------------------------------------------------------------------------------------
# Item 5: tokens outlive a password change


@pytest.fixture(params=["sqlite", "postgres"])
async def two_processes(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_url: str
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient, Tenant]]:
    """Two apps on one store, as two processes behind a balancer; SQLite shares its file.
    (The PostgreSQL database is made for both parameters: an async fixture cannot be asked
    for conditionally.)"""
    if request.param == "postgres":
        database_url = postgres_url
    else:
        database_url = f"sqlite:///{tmp_path / 'shared.db'}"
    async with AsyncExitStack() as stack:
        clients = []
        for name in ("first", "second"):
            settings = load_settings(
                {
                    "LIVEOP_DATA_DIR": str(tmp_path / name),
                    "LIVEOP_DATABASE_URL": database_url,
                    "LIVEOP_SECRET_KEY": SHARED_SECRET_KEY,
                }
            )
            app = create_app(settings)
            await stack.enter_async_context(app.router.lifespan_context(app))
            clients.append(await stack.enter_async_context(_client(app, VICTIM_IP)))
        first = clients[0]
        svc = first._transport.app.state.services  # type: ignore[attr-defined]
        assert isinstance(svc, Services)
        yield first, clients[1], await make_tenant(first, svc)


async def _token(client: httpx.AsyncClient, email: str, password: str = TEST_PASSWORD) -> str:
    response = await _login(client, email, password)
    assert response.status_code == 200, response.json()
    token: str = response.json()["token"]
    return token


async def _works(client: httpx.AsyncClient, token: str) -> bool:
    response = await client.get("/api/v1/admin/operators", headers=bearer(token))
    if response.status_code == 401:
        assert_error(response, 401, "invalid_token")
        return False
    assert response.status_code == 200, response.json()
    return True


async def test_tokens_outlive_a_password_change_no_more_on_any_process(
    two_processes: tuple[httpx.AsyncClient, httpx.AsyncClient, Tenant],
) -> None:
    first, second, tenant = two_processes
    alex = f"alex@{tenant.account_id}.test"
    admin = await _token(first, f"ada@{tenant.account_id}.test")
    stolen = await _token(first, alex)
    assert await _works(second, stolen)
    reset = await first.patch(
        f"/api/v1/admin/operators/{tenant.operator_id}",
        json={"password": "a-new-password"},
        headers=bearer(admin),
    )
    assert reset.status_code == 200, reset.json()
    assert not await _works(first, stolen)
    assert not await _works(second, stolen)
    # The admin's own token is untouched, and Alex signs in with the new password.
    assert await _works(second, admin)
    assert await _works(second, await _token(second, alex, "a-new-password"))
    assert_error(await _login(second, alex, TEST_PASSWORD), 401, "invalid_credentials")


async def test_sign_out_revokes_this_token_on_every_process_and_no_other(
    two_processes: tuple[httpx.AsyncClient, httpx.AsyncClient, Tenant],
) -> None:
    first, second, tenant = two_processes
    alex = f"alex@{tenant.account_id}.test"
    laptop, phone = await _token(first, alex), await _token(first, alex)
    signed_out = await first.post("/api/v1/auth/sign-out", headers=bearer(laptop))
    assert signed_out.status_code == 200, signed_out.json()
    assert not await _works(second, laptop)
    assert await _works(second, phone)
    # Signing out twice is no error of the server's: the token is simply not valid any more.
    assert_error(
        await second.post("/api/v1/auth/sign-out", headers=bearer(laptop)), 401, "invalid_token"
    )


async def test_sign_out_everywhere_revokes_every_earlier_token_on_every_process(
    two_processes: tuple[httpx.AsyncClient, httpx.AsyncClient, Tenant],
) -> None:
    first, second, tenant = two_processes
    alex = f"alex@{tenant.account_id}.test"
    laptop, phone = await _token(first, alex), await _token(second, alex)
    everywhere = await second.post("/api/v1/auth/sign-out-everywhere", headers=bearer(phone))
    assert everywhere.status_code == 200, everywhere.json()
    assert not await _works(first, laptop)
    assert not await _works(second, phone)
    assert await _works(first, await _token(second, alex))


async def test_signing_out_needs_an_operator_token(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for path in ("/api/v1/auth/sign-out", "/api/v1/auth/sign-out-everywhere"):
        assert_error(await client.post(path), 401, "missing_credentials")
        assert_error(await client.post(path, headers=bearer("not.a.jwt")), 401, "invalid_token")
        with_key = await client.post(path, headers={"X-Api-Key": tenant.api_key})
        assert_error(with_key, 400, "operator_required")
