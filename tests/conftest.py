"""Fixtures shared by every suite: an app on a real SQLite file, driven over HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.security import hash_password
from server.services import Services
from server.settings import Settings, load_settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    """The documented error shape: the status, success false, a code and a message."""
    body = response.json()
    assert response.status_code == status, body
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["error"]["message"]


def require_service(reason: str) -> None:
    """Skip with ``reason`` on a laptop; CI sets LIVEOP_REQUIRE_SERVICES=1 to fail instead."""
    if os.environ.get("LIVEOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"required service missing: {reason}")
    pytest.skip(reason)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: Starlette) -> Services:
    found = app.state.services
    assert isinstance(found, Services)
    return found


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liveop.test") as c:
        yield c


@dataclass
class Tenant:
    """One account with an admin operator and a plain operator, driven through the API."""

    client: httpx.AsyncClient
    account_id: str
    api_key: str
    admin_id: int
    operator_id: int

    def envelope(self, command: str, **fields: str) -> dict[str, str]:
        """An App Command form, with ``fields`` beside the credentials."""
        return {
            "accountID": self.account_id,
            "key": self.api_key,
            "app": "liveoperator",
            "command": command,
            **fields,
        }

    async def command(self, command: str, **fields: Any) -> httpx.Response:
        form = self.envelope(command, json=orjson.dumps(fields).decode())
        return await self.client.post("/", data=form)

    async def ok(self, command: str, **fields: Any) -> dict[str, Any]:
        response = await self.command(command, **fields)
        body: dict[str, Any] = response.json()
        assert response.status_code == 200, body
        assert body["success"] is True
        return body

    async def visitor_says(self, text: str, **fields: Any) -> str:
        """Opens (or continues) a conversation as the visitor; returns its convoID."""
        body = await self.ok("sendmessage", message=text, **fields)
        convo_id: str = body["convoID"]
        return convo_id

    async def event_seq(self, services: Services) -> int:
        events = await services.store.list_events(self.account_id, after_seq=0, limit=100_000)
        return events[-1].seq if events else 0


# Hashing is the slow part of making operators; one real hash serves every test operator.
TEST_PASSWORD = "pw-operator-1"
TEST_PASSWORD_HASH = hash_password(TEST_PASSWORD)


async def make_tenant(client: httpx.AsyncClient, services: Services, name: str = "Acme") -> Tenant:
    """An account with an admin (Ada) and an operator (Alex), both with TEST_PASSWORD."""
    account, key = await services.directory.create_account(name)
    store = services.store
    admin = await store.create_operator(
        account.id, "Ada Admin", f"ada@{account.id}.test", TEST_PASSWORD_HASH, True
    )
    operator = await store.create_operator(
        account.id, "Alex", f"alex@{account.id}.test", TEST_PASSWORD_HASH, False
    )
    return Tenant(client, account.id, key, admin.id, operator.id)


@pytest.fixture
async def tenant(client: httpx.AsyncClient, services: Services) -> Tenant:
    return await make_tenant(client, services)


@pytest.fixture
async def other_tenant(client: httpx.AsyncClient, services: Services) -> Tenant:
    return await make_tenant(client, services, "Globex")


# The private redis-server fixture, for every suite that needs a Redis it may break, and a
# fake Google for every suite that sends pushes.
pytest_plugins = ["tests.redis_server", "tests.fake_google", "tests.dovecot_server"]
