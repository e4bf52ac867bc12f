"""Operator SSE, visitor WebSocket and tenant WebSocket, over a real uvicorn."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx
import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from server import auth
from server.api import stream
from server.logs import RedactSecrets, redact
from server.services import Services
from tests.conftest import TEST_PASSWORD, Tenant
from tests.server.realtime_clients import serve, sse, websocket


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _token(tenant: Tenant, operator_id: int | None = None) -> str:
    operator = operator_id or tenant.operator_id
    email = f"{'alex' if operator == tenant.operator_id else 'ada'}@{tenant.account_id}.test"
    response = await tenant.client.post(
        "/api/v1/auth/login", json={"email": email, "password": TEST_PASSWORD}
    )
    token: str = response.json()["token"]
    return token


async def _read_to_the_end(read: Callable[[], Awaitable[object]]) -> None:
    """Reads until the connection ends, which ``read`` raises."""
    while True:
        await read()


def _ws(base: str, tenant: Tenant) -> str:
    return f"ws://{base}/{tenant.account_id}/liveoperator/ws"


async def test_operator_stream_carries_account_events_with_seq_ids(
    base: str, tenant: Tenant
) -> None:
    async with sse(base, await _token(tenant)) as stream:
        convo = await tenant.visitor_says("Hello", userInfo={"fname": "Jane"})
        new = await stream.next()
        assert (new.event, new.id) == ("conversation:new", "1")
        assert new.data["id"] == convo and new.data["channel"] == "chatbot"
        assert new.data["contact_data"]["fname"] == "Jane"
        message = await stream.next()
        assert (message.event, message.id) == ("message:new", "2")
        assert message.data["message"]["content"] == "Hello"
        assert message.data["conversation"]["unread"] == 1
        await tenant.ok("settyping", convoID=convo)
        typing = await stream.next()
        assert typing.event == "typing" and typing.id is None
        assert typing.data == {"conversation_id": convo, "side": "visitor", "expires_in": 5}
        await tenant.ok("setstatus", convoID=convo, status="waiting")
        updated = await stream.next()
        assert (updated.event, updated.id, updated.data["status"]) == (
            "conversation:updated",
            "3",
            "waiting",
        )


async def test_operator_stream_starts_with_ready_and_its_cursor(base: str, tenant: Tenant) -> None:
    await tenant.visitor_says("before")
    async with sse(base, await _token(tenant)) as stream:
        assert stream.first is not None
        assert (stream.first.event, stream.first.id) == ("ready", "2")
    async with sse(base, await _token(tenant), last_event_id="1") as stream:
        assert stream.first is not None
        assert (stream.first.event, stream.first.id) == ("ready", "1")
        replayed = await stream.next()
        assert (replayed.event, replayed.id) == ("message:new", "2")


async def test_an_idle_operator_stream_gets_keepalive_comments(
    base: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream, "KEEPALIVE_S", 0.05)
    async with (
        httpx.AsyncClient(base_url=f"http://{base}", timeout=5) as client,
        client.stream(
            "GET", "/api/v1/operator/stream", params={"token": await _token(tenant)}
        ) as response,
    ):
        lines = response.aiter_lines()
        seen: list[str] = []
        while sum(line.startswith(": ping") for line in seen) < 2:
            seen.append(await asyncio.wait_for(anext(lines), 5))
        assert seen[:3] == ["id: 0", "event: ready", "data: {}"]
        await tenant.visitor_says("after the pings")
        while not seen[-1].startswith("event: conversation:new"):
            seen.append(await asyncio.wait_for(anext(lines), 5))


async def test_a_signed_out_operators_stream_ends_and_is_not_let_back_in(
    base: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "RECHECK_S", 0.2)
    token = await _token(tenant)
    colleague = await _token(tenant, tenant.admin_id)
    async with sse(base, token) as mine, sse(base, colleague) as theirs:
        await tenant.visitor_says("before")
        await mine.until("conversation:new")
        signed_out = await tenant.client.post(
            "/api/v1/auth/sign-out", headers={"Authorization": f"Bearer {token}"}
        )
        assert signed_out.status_code == 200, signed_out.text
        with pytest.raises(EOFError):
            await _read_to_the_end(mine.next)
        # Only the token signed out: the colleague's stream goes on.
        await tenant.visitor_says("after")
        await theirs.until("conversation:new")
        await theirs.until("conversation:new")
    async with httpx.AsyncClient(base_url=f"http://{base}") as client:
        again = await client.get("/api/v1/operator/stream", params={"token": token})
        assert again.status_code == 401 and again.json()["error"]["code"] == "invalid_token"


async def test_operator_stream_resumes_exactly_after_last_event_id(
    base: str, tenant: Tenant
) -> None:
    token = await _token(tenant)
    async with sse(base, token) as stream:
        convo = await tenant.visitor_says("one")
        await stream.next()
        await stream.next()
        last = stream.last_id
    for text in ("two", "three"):
        await tenant.visitor_says(text, convoID=convo)
    async with sse(base, token, last_event_id=last) as stream:
        replayed = [await stream.next(), await stream.next()]
        assert [e.id for e in replayed] == ["3", "4"]
        assert [e.data["message"]["content"] for e in replayed] == ["two", "three"]
        await tenant.visitor_says("four", convoID=convo)
        live = await stream.next()
        assert live.id == "5" and live.data["message"]["content"] == "four"


async def test_operator_stream_resets_an_unknown_cursor(base: str, tenant: Tenant) -> None:
    await tenant.visitor_says("one")
    async with sse(base, await _token(tenant), last_event_id="999") as stream:
        reset = stream.first
        assert reset is not None
        assert (reset.event, reset.id) == ("reset", "2")


async def test_operator_stream_auth_and_cursor_errors(base: str, tenant: Tenant) -> None:
    async with httpx.AsyncClient(base_url=f"http://{base}") as client:
        missing = await client.get("/api/v1/operator/stream")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "missing_credentials"
        bad = await client.get("/api/v1/operator/stream", params={"token": "nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "invalid_token"
        cursor = await client.get(
            "/api/v1/operator/stream",
            params={"token": await _token(tenant)},
            headers={"Last-Event-ID": "abc"},
        )
        assert cursor.status_code == 400 and cursor.json()["error"]["code"] == "invalid_field"


async def test_operator_stream_never_shows_another_account(
    base: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with sse(base, await _token(tenant)) as stream:
        await other_tenant.visitor_says("not yours")
        mine = await tenant.visitor_says("yours")
        first = await stream.next()
        assert first.data["id"] == mine and first.id == "1"


async def test_visitor_socket_chat_with_acks_events_and_typing(base: str, tenant: Tenant) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello")
        assert (await ws.recv())["type"] == "ready"
        await ws.send(type="send", message="Hi", clientMsgID="m-1", fname="Jane")
        ack = await ws.until("ack")
        assert (ack["seq"], ack["clientMsgID"], ack["duplicate"]) == (1, "m-1", False)
        convo = ack["convoID"]
        own = await ws.until("message:new")
        assert own["seq"] == 1 and own["data"]["message"] == "Hi"
        await tenant.ok("settyping", convoID=convo, operatorID=tenant.operator_id)
        typing = await ws.until("typing")
        assert typing["data"]["side"] == "operator"
        await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Yo")
        reply = await ws.until("message:new")
        assert reply["seq"] == 2 and reply["data"]["operatorName"] == "Alex"
        await ws.send(type="typing")
        # Frames are handled in order: the pong says the typing frame has been.
        await ws.send(type="ping")
        await ws.until("pong")
        polled = await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id)
        assert polled["typing"] is True
        await ws.send(type="send", message="Hi", clientMsgID="m-1")
        again = await ws.until("ack")
        assert again["duplicate"] is True and again["seq"] == 1
        await tenant.ok("setstatus", convoID=convo, status="resolved")
        status = await ws.until("status")
        assert status["data"] == {"convoID": convo, "status": "resolved"}
    history = await tenant.ok("gethistory", convoID=convo)
    assert [m["message"] for m in history["messages"]] == ["Hi", "Yo"]
    assert history["conversation"]["sourceApp"] == "liveoperator"


async def test_visitor_socket_resumes_from_the_last_seq(base: str, tenant: Tenant) -> None:
    convo = await tenant.visitor_says("one", sourceApp="liveoperator")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="two")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="three")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=1)
        frames = [await ws.until("message:new"), await ws.until("message:new")]
        assert [(f["seq"], f["data"]["message"]) for f in frames] == [(2, "two"), (3, "three")]


async def test_visitor_socket_errors_are_frames_and_close_codes(
    base: str, tenant: Tenant, other_tenant: Tenant
) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello")
        await ws.recv()
        await ws.send(type="send", message="   ", clientMsgID="e-1")
        error = await ws.until("error")
        assert error["error"]["code"] == "empty_message" and error["clientMsgID"] == "e-1"
        await ws.send(type="typing")
        assert (await ws.until("error"))["error"]["code"] == "conversation_not_found"
        await ws.send(type="dance")
        assert (await ws.until("error"))["error"]["code"] == "unknown_frame"
        await ws.conn.send("not json")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000
    theirs = await other_tenant.visitor_says("secret")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=theirs)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4004


async def test_visitor_socket_needs_hello_within_five_seconds(base: str, tenant: Tenant) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv(timeout_s=8)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4001


async def test_tenant_socket_follows_seed_003(base: str, tenant: Tenant) -> None:
    async with websocket(f"ws://{base}/api/ws/tenant") as ws:
        await ws.send(type="auth", token=await _token(tenant, tenant.admin_id))
        assert (await ws.recv())["type"] == "auth_ok"
        convo = await tenant.visitor_says("Hello")
        new = await ws.recv()
        assert new["type"] == "conversation:new" and new["data"]["id"] == convo
        assert new["seq"] == 1 and "contact_data" in new["data"]
        message = await ws.recv()
        assert message["type"] == "message:new" and message["data"]["message"]["seq"] == 1
    await tenant.visitor_says("missed", convoID=convo)
    async with websocket(f"ws://{base}/api/ws/tenant") as ws:
        await ws.send(type="auth", token=await _token(tenant), since=2)
        await ws.until("auth_ok")
        missed = await ws.recv()
        assert missed["seq"] == 3 and missed["data"]["message"]["content"] == "missed"


async def test_a_deactivated_operators_tenant_socket_is_closed(
    base: str, tenant: Tenant, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(auth, "RECHECK_S", 0.2)
    async with websocket(f"ws://{base}/api/ws/tenant") as ws:
        await ws.send(type="auth", token=await _token(tenant))
        assert (await ws.recv())["type"] == "auth_ok"
        deactivated = await tenant.client.post(
            f"/api/v1/admin/operators/{tenant.operator_id}/deactivate",
            headers={"X-Api-Key": tenant.api_key},
            json={},
        )
        assert deactivated.status_code == 200, deactivated.text
        with pytest.raises(ConnectionClosed) as closed:
            await _read_to_the_end(ws.recv)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003


async def test_tenant_socket_refuses_a_bad_token(base: str) -> None:
    async with websocket(f"ws://{base}/api/ws/tenant") as ws:
        await ws.send(type="auth", token="forged")
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4003


async def test_detached_connections_leave_no_listeners(
    base: str, tenant: Tenant, services: Services
) -> None:
    async with sse(base, await _token(tenant)) as stream:
        await tenant.visitor_says("x")
        await stream.next()
        assert services.hub.listening() == 1
    for _ in range(100):
        if services.hub.listening() == 0:
            break
        await asyncio.sleep(0.02)
    assert services.hub.listening() == 0


def test_tokens_never_reach_the_access_log() -> None:
    assert redact("/api/v1/operator/stream?token=eyJ.abc.def&x=1") == (
        "/api/v1/operator/stream?token=[redacted]&x=1"
    )
    record = logging.LogRecord(
        "uvicorn.access", logging.INFO, __file__, 1, '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:1", "GET", "/api/v1/operator/stream?token=secret", "1.1", 200), None,
    )  # fmt: skip
    RedactSecrets().filter(record)
    assert "secret" not in record.getMessage()


async def test_ready_comes_first_with_the_current_status_and_seq(base: str, tenant: Tenant) -> None:
    convo = await tenant.visitor_says("one", sourceApp="liveoperator")
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=0)
        ready = await ws.recv()
        assert ready == {"type": "ready", "convoID": convo, "status": "waiting", "seq": 1}
        assert (await ws.recv())["seq"] == 1


async def test_hello_seq_beyond_the_conversation_is_reset_not_silenced(
    base: str, tenant: Tenant
) -> None:
    convo = await tenant.visitor_says("one", sourceApp="liveoperator")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=50)
        await ws.until("ready")
        assert await ws.recv() == {"type": "reset", "seq": 1}
        await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="2")
        assert (await ws.until("message:new"))["seq"] == 2


async def test_client_msg_id_is_limited_on_the_socket_too(base: str, tenant: Tenant) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello")
        await ws.recv()
        await ws.send(type="send", message="hi", clientMsgID="x" * 129)
        assert (await ws.until("error"))["error"]["code"] == "invalid_field"


async def test_visitor_status_event_only_when_the_status_changes(base: str, tenant: Tenant) -> None:
    convo = await tenant.visitor_says("one", sourceApp="liveoperator")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=1)
        await ws.until("ready")
        await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id)  # unread changes
        # The operators' read is the visitor's "Seen" (issue 18), and no status.
        read = await ws.recv()
        assert (read["type"], read["data"]["seenSeq"]) == ("read", 1)
        await tenant.ok("setstatus", convoID=convo, status="resolved")
        frame = await ws.recv()
        assert frame["type"] == "status"
        assert frame["data"]["status"] == "resolved"


async def test_a_visitor_closing_its_socket_logs_no_error(
    base: str, tenant: Tenant, caplog: pytest.LogCaptureFixture
) -> None:
    convo = await tenant.visitor_says("one", sourceApp="liveoperator")
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=1)
        await ws.until("ready")
    await asyncio.sleep(0.2)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_visitor_frames_of_the_wrong_type_are_errors_not_silently_dropped(
    base: str, tenant: Tenant
) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(type="hello")
        await ws.recv()
        await ws.send(type="send", message="hi", clientMsgID={"not": "text"})
        assert (await ws.until("error"))["error"]["code"] == "invalid_field"
        await ws.send(type="send", clientMsgID="m-9")
        missing = await ws.until("error")
        assert missing["error"]["code"] == "missing_field"
        assert missing["clientMsgID"] == "m-9"
        await ws.send(type="send", message=["hi"])
        assert (await ws.until("error"))["error"]["code"] == "invalid_field"


@pytest.mark.parametrize(
    "hello",
    [
        {"type": "hello", "convoID": 42.5},
        {"type": "hello", "convoID": "x" * 65},
        {"type": "hello", "seq": True},
        {"type": "hello", "seq": -1},
        {"type": "hello", "seq": "soon"},
    ],
)
async def test_a_malformed_hello_closes_with_4000(
    base: str, tenant: Tenant, hello: dict[str, object]
) -> None:
    async with websocket(_ws(base, tenant)) as ws:
        await ws.send(**hello)
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 4000
