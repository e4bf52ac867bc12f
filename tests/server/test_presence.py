"""Operator heartbeat and availability, online visitors: seed 001's presence endpoints."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette

from realtime.presence import OPERATOR_TTL_S, SWEEP_EVERY, VISITOR_TTL_S, MemoryPresence
from server import availability
from tests.conftest import TEST_PASSWORD, Tenant
from tests.server.realtime_clients import serve, sse, websocket


async def _auth(tenant: Tenant, who: str = "alex") -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{who}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return {"Authorization": f"Bearer {response.json()['token']}"}


async def _second_site(tenant: Tenant) -> None:
    created = await tenant.client.post(
        "/api/v1/admin/sites", json={"name": "Shop"}, headers={"X-Api-Key": tenant.api_key}
    )
    assert created.json()["site"]["id"] == 2


async def test_heartbeat_makes_an_operator_online(tenant: Tenant) -> None:
    await _second_site(tenant)
    headers = await _auth(tenant)
    before = await tenant.client.get("/api/v1/operator/status", headers=headers)
    assert before.json() == {
        "success": True, "online": False, "away_site_ids": [], "away": False
    }  # fmt: skip
    beat = await tenant.client.post(
        "/api/v1/operator/heartbeat", json={"site_ids": [1, 2]}, headers=headers
    )
    assert beat.json() == {"success": True}
    after = await tenant.client.get("/api/v1/operator/status", headers=headers)
    assert after.json()["online"] is True


async def test_set_status_takes_an_operator_off_one_site(tenant: Tenant) -> None:
    await _second_site(tenant)
    headers = await _auth(tenant)
    await tenant.client.post("/api/v1/operator/heartbeat", json={"site_ids": [1]}, headers=headers)
    off = await tenant.client.post(
        "/api/v1/operator/set-status", json={"site_id": 1, "online": False}, headers=headers
    )
    assert off.json() == {"success": True}
    one = await tenant.client.get("/api/v1/operator/status?site_id=1", headers=headers)
    two = await tenant.client.get("/api/v1/operator/status?site_id=2", headers=headers)
    assert (one.json()["online"], two.json()["online"]) == (False, True)
    assert one.json()["away_site_ids"] == [1]
    await tenant.client.post(
        "/api/v1/operator/set-status", json={"site_id": 1, "online": True}, headers=headers
    )
    back = await tenant.client.get("/api/v1/operator/status?site_id=1", headers=headers)
    assert back.json()["online"] is True


async def test_the_away_switch_takes_an_operator_off_every_site(tenant: Tenant) -> None:
    await _second_site(tenant)
    headers = await _auth(tenant)
    await tenant.client.post("/api/v1/operator/heartbeat", json={"site_ids": [1]}, headers=headers)
    away = await tenant.client.post(
        "/api/v1/operator/availability", json={"away": True}, headers=headers
    )
    assert away.json() == {"success": True}
    status = (await tenant.client.get("/api/v1/operator/status", headers=headers)).json()
    assert (status["away"], status["away_site_ids"]) == (True, [1, 2])
    listed = await tenant.client.get("/api/v1/operator/operators", headers=headers)
    me = [o for o in listed.json()["operators"] if o["id"] == tenant.operator_id]
    assert (me[0]["online"], me[0]["away"]) == (True, True)
    await tenant.client.post("/api/v1/operator/availability", json={"away": False}, headers=headers)
    status = (await tenant.client.get("/api/v1/operator/status", headers=headers)).json()
    assert (status["away"], status["away_site_ids"], status["online"]) == (False, [], True)


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("heartbeat", {"site_ids": "1,2"}, "invalid_field"),
        ("heartbeat", {"site_ids": [0]}, "invalid_field"),
        ("heartbeat", {"site_ids": list(range(1, 200))}, "invalid_field"),
        ("set-status", {"online": True}, "missing_field"),
        ("set-status", {"site_id": 1}, "missing_field"),
        ("set-status", {"site_id": 1, "online": "maybe"}, "invalid_field"),
        ("set-status", {"site_id": -1, "online": True}, "invalid_field"),
        ("availability", {}, "missing_field"),
        ("availability", {"away": "maybe"}, "invalid_field"),
        ("availability", {"away": [True]}, "invalid_field"),
        ("availability", {"away": "1\u0000"}, "invalid_field"),
    ],
)
async def test_bad_presence_input(tenant: Tenant, path: str, body: object, code: str) -> None:
    response = await tenant.client.post(
        f"/api/v1/operator/{path}", json=body, headers=await _auth(tenant)
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == code


async def test_presence_needs_an_operator(tenant: Tenant) -> None:
    anonymous = await tenant.client.post("/api/v1/operator/heartbeat", json={})
    assert anonymous.status_code == 401
    with_key = await tenant.client.post(
        "/api/v1/operator/heartbeat", json={}, headers={"X-Api-Key": tenant.api_key}
    )
    assert with_key.status_code == 400
    assert with_key.json()["error"]["code"] == "operator_required"


async def test_visitors_who_poll_are_online_and_only_to_their_account(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    convo = (
        await tenant.client.post(
            f"/{tenant.account_id}/liveoperator/postmessage",
            data={"message": "hi", "fname": "Jane"},
        )
    ).json()["convoID"]
    await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/chatpoll", data={"convoID": convo, "since": 0}
    )
    mine = await tenant.client.get(
        "/api/v1/operator/all-online-visitors", headers=await _auth(tenant)
    )
    visitors = mine.json()["visitors"]
    assert [(v["conversation_id"], v["name"], v["channel"]) for v in visitors] == [
        (convo, "Jane", "chat")
    ]
    theirs = await other_tenant.client.get(
        "/api/v1/operator/all-online-visitors", headers=await _auth(other_tenant)
    )
    assert theirs.json()["visitors"] == []


async def test_a_visitor_listing_reads_only_the_newest_marks(
    tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each listed conversation is a store read: a busy account's listing stops at
    VISITORS_SCAN_MAX marks, newest first."""
    monkeypatch.setattr(availability, "VISITORS_SCAN_MAX", 2)
    for session in ("sess_first_visitor", "sess_second_visitor", "sess_third_visitor"):
        polled = await tenant.client.post(
            f"/{tenant.account_id}/liveoperator/chatpoll", data={"sessionID": session}
        )
        assert polled.status_code == 200
    listed = await tenant.client.get(
        "/api/v1/operator/all-online-visitors", headers=await _auth(tenant)
    )
    sessions = {v["session_id"] for v in listed.json()["visitors"]}
    assert len(sessions) == 2 and "sess_first_visitor" not in sessions


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def test_connected_visitors_are_online_and_presence_reaches_the_stream(
    base: str, tenant: Tenant
) -> None:
    convo = await tenant.visitor_says("hi", sourceApp="liveoperator")
    headers = await _auth(tenant)
    token = headers["Authorization"].split()[1]
    async with (
        sse(base, token) as stream,
        websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws,
        httpx.AsyncClient(base_url=f"http://{base}", headers=headers) as client,
    ):
        await ws.send(type="hello", convoID=convo, seq=1)
        await ws.until("ready")
        online = (await client.get("/api/v1/operator/all-online-visitors")).json()["visitors"]
        assert [v["conversation_id"] for v in online] == [convo]
        await client.post("/api/v1/operator/heartbeat", json={"site_ids": [1]})
        presence = await stream.until("presence")
        assert presence.id is None
        assert presence.data == {
            "operator_id": tenant.operator_id, "online": True, "site_id": None, "away": False
        }  # fmt: skip


async def test_memory_presence_expires() -> None:
    now = [1000.0]
    presence = MemoryPresence(clock=lambda: now[0])
    assert await presence.operator_beat("a", 1) is True
    assert await presence.operator_beat("a", 1) is False
    await presence.visitors_seen("a", ["c1"])
    now[0] += 1
    await presence.visitors_seen("a", ["c2"])
    assert await presence.visitors_online("a") == ["c2", "c1"]
    now[0] += VISITOR_TTL_S - 0.5
    assert await presence.visitors_online("a") == ["c2"]
    assert await presence.operators_online("a") == {1}
    now[0] += OPERATOR_TTL_S
    assert await presence.operators_online("a") == set()
    assert await presence.operator_beat("a", 1) is True


async def test_memory_presence_forgets_accounts_nobody_lists() -> None:
    """Regression: marks were trimmed only when their account's list was read, so an
    account whose operators never listed visitors kept every visitor it ever had."""
    now = [1000.0]
    presence = MemoryPresence(clock=lambda: now[0])
    await presence.visitors_seen("quiet", ["c1"])
    now[0] += VISITOR_TTL_S + 1
    for i in range(SWEEP_EVERY + 1):
        await presence.visitors_seen("busy", [f"v{i % 10}"])
    assert "quiet" not in presence._visitors
