"""Every list an admin can grow is bounded (server.errors.at_most): the next one is a clear
``400 too_many_<what>``, nothing is written, and deleting one frees a place. The bounds are
lowered here to what the account already holds plus one, so each test creates a few rows; the
real figures are the module constants, documented in docs/api.md."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server import assistants, channels, directory, webhooks
from tests.conftest import Tenant, assert_error
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

ADMIN = "/api/v1/admin"
SMS = {
    "kind": "sms",
    "account_sid": "AC" + "0123456789abcdef" * 2,
    "auth_token": "f00dfacef00dfacef00dfacef00dface",
    "from": "+15550100100",
    "public_url": "https://chat.example.test/",
}
ASSISTANT = {"base_url": "http://127.0.0.1:9/v1", "model": "m", "monthly_token_budget": 1000}

# (plural in the path, module and constant to lower, the list's key, a body for the nth)
CASES: list[tuple[str, Any, str, Any]] = [
    ("operators", directory, "OPERATORS_MAX",
     lambda n: {"name": f"Op {n}", "email": f"op{n}@bounds.test", "password": "a-password-1"}),
    ("teams", directory, "TEAMS_MAX", lambda n: {"name": f"Team {n}", "member_ids": []}),
    ("sites", directory, "SITES_MAX", lambda n: {"name": f"Site {n}"}),
    ("canned", directory, "ACCOUNT_CANNED_MAX", lambda n: {"name": f"C{n}", "message": "Hi"}),
    ("channels", channels, "CHANNELS_MAX",
     lambda n: {**SMS, "name": f"Line {n}", "from": f"+1555010010{n}"}),
    ("assistants", assistants, "ASSISTANTS_MAX", lambda n: {**ASSISTANT, "name": f"A{n}"}),
    ("webhooks", webhooks, "WEBHOOKS_MAX",
     lambda n: {"url": f"https://hooks.example.test/{n}", "events": ["message.created"]}),
]  # fmt: skip


async def _held(client: httpx.AsyncClient, headers: dict[str, str], plural: str) -> list[Any]:
    response = await client.get(f"{ADMIN}/{plural}", headers=headers)
    assert response.status_code == 200, response.text
    listed: list[Any] = response.json()[plural]
    return listed


@pytest.mark.parametrize(("plural", "module", "constant", "body"), CASES)
async def test_the_next_one_past_the_bound_is_refused_and_a_delete_frees_a_place(
    client: httpx.AsyncClient,
    tenant: Tenant,
    monkeypatch: pytest.MonkeyPatch,
    plural: str,
    module: Any,
    constant: str,
    body: Any,
) -> None:
    headers = {"X-Api-Key": tenant.api_key}
    held = len(await _held(client, headers, plural))
    monkeypatch.setattr(module, constant, held + 2)
    created = []
    for n in range(2):
        response = await client.post(f"{ADMIN}/{plural}", json=body(n), headers=headers)
        assert response.status_code == 201, response.text
        created.append(response.json())
    refused = await client.post(f"{ADMIN}/{plural}", json=body(2), headers=headers)
    assert_error(refused, 400, f"too_many_{plural}")
    assert len(await _held(client, headers, plural)) == held + 2
    if plural == "operators":
        return  # an operator is deactivated, and keeps their place with their history
    last = (await _held(client, headers, plural))[-1]
    deleted = await client.delete(f"{ADMIN}/{plural}/{last['id']}", headers=headers)
    assert deleted.status_code == 200, deleted.text
    response = await client.post(f"{ADMIN}/{plural}", json=body(3), headers=headers)
    assert response.status_code == 201, response.text


async def test_open_invitations_take_operator_seats(
    client: httpx.AsyncClient, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    headers = {"X-Api-Key": tenant.api_key}
    held = len(await _held(client, headers, "operators"))
    monkeypatch.setattr(directory, "OPERATORS_MAX", held + 1)
    invite = {"email": "new@bounds.test", "name": "New"}
    response = await client.post(f"{ADMIN}/invites", json=invite, headers=headers)
    assert response.status_code == 201, response.text
    # The seat is the invitation's: neither an operator nor another invitation fits.
    body = {"name": "Op", "email": "op@bounds.test", "password": "a-password-1"}
    refused = await client.post(f"{ADMIN}/operators", json=body, headers=headers)
    assert_error(refused, 400, "too_many_operators")
    second = {"email": "second@bounds.test", "name": "Second"}
    refused = await client.post(f"{ADMIN}/invites", json=second, headers=headers)
    assert_error(refused, 400, "too_many_operators")
