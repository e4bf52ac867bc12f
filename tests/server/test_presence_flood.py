"""Issue 21 item 11: anonymous session polls and sockets with made-up session ids pushed real
visitors out of the operators' online list. Live session marks are bounded per client
address and per account, on the memory and the Redis presence alike."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from realtime.presence import (
    SESSIONS_PER_ACCOUNT,
    SESSIONS_PER_ADDRESS,
    MemoryPresence,
    Presence,
    RedisPresence,
    session_mark,
)
from server.settings import Settings, load_settings
from tests.conftest import TEST_PASSWORD, Tenant, bearer
from tests.redis_server import RedisServer
from tests.server.realtime_clients import serve, websocket

ATTACKER_IP = "203.0.113.66"
VISITOR_IP = "198.51.100.7"


@pytest.fixture(params=["memory", "redis"])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    environ = {"LIVEOP_DATA_DIR": str(tmp_path / "data")}
    if request.param == "redis":
        server: RedisServer = request.getfixturevalue("redis_server")
        environ["LIVEOP_BROKER_URL"] = server.url
    return load_settings(environ)


def _from(app: Starlette, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://liveop.test")


async def _online_sessions(tenant: Tenant) -> set[str]:
    login = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    listed = await tenant.client.get(
        "/api/v1/operator/all-online-visitors", headers=bearer(login.json()["token"])
    )
    return {v["session_id"] for v in listed.json()["visitors"]}


async def test_invented_session_ids_from_one_address_do_not_crowd_out_real_visitors(
    app: Starlette, tenant: Tenant
) -> None:
    poll = f"/{tenant.account_id}/liveoperator/chatpoll"
    async with _from(app, ATTACKER_IP) as attacker, _from(app, VISITOR_IP) as visitor:
        for i in range(SESSIONS_PER_ADDRESS + 20):
            answered = await attacker.post(poll, data={"sessionID": f"invented-{i:04d}"})
            assert answered.status_code == 200  # the poll itself is never refused
        assert (await visitor.post(poll, data={"sessionID": "real-visitor-1"})).is_success
    online = await _online_sessions(tenant)
    assert "real-visitor-1" in online
    assert len({s for s in online if s.startswith("invented-")}) == SESSIONS_PER_ADDRESS


async def test_invented_session_ids_on_sockets_are_bounded_too(
    app: Starlette, tenant: Tenant
) -> None:
    async with serve(app) as base:
        url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
        sockets = []
        for i in range(SESSIONS_PER_ADDRESS + 5):
            opened = websocket(url)
            ws = await opened.__aenter__()
            sockets.append(opened)
            await ws.send(type="hello", sessionID=f"invented-{i:04d}", siteID=1)
            await ws.until("ready")
        try:
            online = await _online_sessions(tenant)
        finally:
            for opened in sockets:
                await opened.__aexit__(None, None, None)
    # 127.0.0.1 is every socket's address here: the bound holds for sockets as for polls.
    assert len({s for s in online if s.startswith("invented-")}) == SESSIONS_PER_ADDRESS


@pytest.fixture(params=["memory", "redis"])
def presence(request: pytest.FixtureRequest) -> Presence:
    if request.param == "memory":
        return MemoryPresence()
    server: RedisServer = request.getfixturevalue("redis_server")
    return RedisPresence(server.client())


async def test_session_marks_are_bounded_per_address_and_per_account(presence: Presence) -> None:
    accepted = 0
    for address in range(SESSIONS_PER_ACCOUNT // SESSIONS_PER_ADDRESS + 2):
        for i in range(SESSIONS_PER_ADDRESS + 3):
            mark = session_mark(1, f"s-{address}-{i}")
            accepted += await presence.session_seen("acct", mark, f"10.0.0.{address}")
    assert accepted == SESSIONS_PER_ACCOUNT
    assert len(await presence.visitors_online("acct")) == SESSIONS_PER_ACCOUNT
    # A live mark is refreshed whatever the bounds; another account has its own.
    assert await presence.session_seen("acct", session_mark(1, "s-0-0"), "10.0.0.0")
    assert await presence.session_seen("other", session_mark(1, "s-0-0"), "10.0.0.0")
