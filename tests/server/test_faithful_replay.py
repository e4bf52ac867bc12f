"""Faithful replay: what a client receives after reconnecting with a cursor is byte for byte
what it received live, on the SSE stream, the tenant WebSocket and the visitor WebSocket.

Each test records a live session over a history that keeps changing the conversation
(messages, a note, status changes, a read), then reconnects from the start and compares."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import AsyncIterator

import orjson
import pytest
from starlette.applications import Starlette

from server.event_catalogue import CATALOGUE
from server.services import Services
from server.settings import Settings
from tests.conftest import TEST_PASSWORD, Tenant, bearer
from tests.server.realtime_clients import Socket, SSEClient, serve, sse, websocket

LOG_KINDS = {kind.name for kind in CATALOGUE if kind.sequenced}
# The messages of the history below that the visitor sees (the note is for operators only).
VISITOR_MESSAGES = 3


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _token(tenant: Tenant) -> str:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    token: str = response.json()["token"]
    return token


async def _start(tenant: Tenant) -> str:
    """The visitor's first message: conversation:new and message:new."""
    return await tenant.visitor_says("one", sourceApp="liveoperator", userInfo={"fname": "Jo"})


async def _go_on(tenant: Tenant, convo: str, token: str) -> None:
    """More account events, each changing what message 1's conversation looks like."""
    operator = tenant.operator_id
    await tenant.ok("sendmessage", convoID=convo, operatorID=operator, message="two")
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    await tenant.visitor_says("three", convoID=convo)
    response = await tenant.client.post(
        "/api/v1/operator/note",
        json={"conversation_id": convo, "content": "VIP"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    await tenant.ok("poll", convoID=convo, operatorID=operator)  # reads: unread drops to 0
    await tenant.ok("setstatus", convoID=convo, status="resolved")


async def _sse_events(stream: SSEClient, upto: int) -> list[tuple[str, str, str]]:
    """The stream's log events up to the account seq ``upto``, as (kind, id, data) exactly
    as sent (state events carry no id and are not replayed)."""
    got: list[tuple[str, str, str]] = []
    while not got or int(got[-1][1]) < upto:
        event = await stream.next()
        if event.id is not None:
            got.append((event.event, event.id, event.raw))
    return got


async def _socket_events(ws: Socket, count: int) -> list[str | bytes]:
    """The next ``count`` log events on a socket, exactly as sent (controls such as ``ready``
    and ``auth_ok`` carry a seq too, so the kind decides)."""
    got: list[str | bytes] = []
    while len(got) < count:
        raw = await ws.recv_raw()
        if orjson.loads(raw)["type"] in LOG_KINDS:
            got.append(raw)
    return got


async def test_sse_replay_from_an_early_last_event_id_is_what_was_sent_live(
    base: str, tenant: Tenant, services: Services
) -> None:
    token = await _token(tenant)
    async with sse(base, token) as live:
        convo = await _start(tenant)
        await _go_on(tenant, convo, token)
        head = await tenant.event_seq(services)
        sent = await _sse_events(live, head)
    async with sse(base, token, last_event_id="0") as again:
        replayed = await _sse_events(again, head)
    assert replayed == sent
    assert [seq for _, seq, _ in sent] == [str(n) for n in range(1, head + 1)]
    # The bug this pins: message 1 replayed with the conversation as it is now.
    first = orjson.loads(sent[1][2])
    assert first["message"]["content"] == "one"
    assert first["conversation"]["status"] == "open" and first["conversation"]["preview"] == "one"


async def test_tenant_socket_replay_from_since_zero_is_what_was_sent_live(
    base: str, tenant: Tenant, services: Services
) -> None:
    token = await _token(tenant)
    async with websocket(f"ws://{base}/api/ws/tenant") as live:
        await live.send(type="auth", token=token)
        await live.until("auth_ok")
        convo = await _start(tenant)
        await _go_on(tenant, convo, token)
        head = await tenant.event_seq(services)
        sent = await _socket_events(live, head)
    async with websocket(f"ws://{base}/api/ws/tenant") as again:
        await again.send(type="auth", token=token, since=0)
        await again.until("auth_ok")
        replayed = await _socket_events(again, head)
    assert replayed == sent
    assert [orjson.loads(frame)["seq"] for frame in sent] == list(range(1, head + 1))


async def test_visitor_socket_replay_from_seq_zero_is_what_was_sent_live(
    base: str, tenant: Tenant
) -> None:
    token = await _token(tenant)
    url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
    convo = await _start(tenant)
    async with websocket(url) as live:
        await live.send(type="hello", convoID=convo, seq=1)
        await live.until("ready")
        await _go_on(tenant, convo, token)
        sent = await _socket_events(live, VISITOR_MESSAGES - 1)
    async with websocket(url) as again:
        await again.send(type="hello", convoID=convo, seq=1)
        await again.until("ready")
        replayed = await _socket_events(again, VISITOR_MESSAGES - 1)
    assert replayed == sent
    assert [orjson.loads(f)["data"]["message"] for f in sent] == ["two", "three"]


async def test_visitor_replay_keeps_the_delivery_state_a_reply_was_sent_with(
    base: str, tenant: Tenant, services: Services
) -> None:
    """An SMS reply goes out as queued; once delivered, its row says sent, but the event that
    announced it said queued, and so does its replay."""
    convo = await tenant.visitor_says(
        "hi", sourceApp="smsbroadcast", userInfo={"phone": "+15550100"}
    )
    url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
    async with websocket(url) as live:
        await live.send(type="hello", convoID=convo, seq=1)
        await live.until("ready")
        await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="yo")
        (sent,) = await _socket_events(live, 1)
    assert orjson.loads(sent)["data"]["delivery"] == "queued"
    (job,) = await services.store.claim_outbound(
        "test-worker", channels=("sms",), now=time.time() + 60, lease_s=60, limit=1
    )
    assert await services.store.finish_outbound(
        job, "test-worker", sent=True, error=None, retry_at=None
    )
    async with websocket(url) as again:
        await again.send(type="hello", convoID=convo, seq=1)
        await again.until("ready")
        assert await _socket_events(again, 1) == [sent]


async def test_events_written_before_migration_0006_still_replay(
    base: str, tenant: Tenant, services: Services, settings: Settings
) -> None:
    """Rows from before 0006 kept no payload: they replay rendered from the rows as they are
    now, on the operators' stream and the visitor's socket alike."""
    token = await _token(tenant)
    convo = await _start(tenant)
    await _go_on(tenant, convo, token)
    head = await tenant.event_seq(services)
    with sqlite3.connect(settings.database_url.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE events SET data = NULL, visitor_data = NULL")
    async with sse(base, token, last_event_id="0") as stream:
        replayed = await _sse_events(stream, head)
    assert [kind for kind, _, _ in replayed][:2] == ["conversation:new", "message:new"]
    first = orjson.loads(replayed[1][2])
    assert first["message"]["content"] == "one"
    assert first["conversation"]["status"] == "resolved"  # as it is now: the old rendering
    url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
    async with websocket(url) as ws:
        await ws.send(type="hello", convoID=convo, seq=0)
        frames = await _socket_events(ws, VISITOR_MESSAGES)
    assert [orjson.loads(f)["data"]["message"] for f in frames] == ["one", "two", "three"]
