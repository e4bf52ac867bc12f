"""Read receipts both ways (issue 18), from the read cursors the server keeps: operators learn
how far the visitor has read (``visitor_read_seq``, a message seq), the visitor how far the
operators have (``seenSeq``, a visitor seq); live as ``read`` events, and in the REST answers
after a reload. On SQLite and on PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from server.api.chat_window import VISITOR_READS
from tests.conftest import Tenant
from tests.server.realtime_clients import serve, sse, websocket
from tests.server.test_operator_panel import (
    Panel,
    chat,
    chatpoll,
    follow,
    login,
    visitor_socket,
)
from tests.storage.conftest import (
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)


@pytest.fixture
async def alex(tenant: Tenant) -> Panel:
    return await login(tenant, "alex", tenant.operator_id)


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def test_the_operators_see_how_far_the_visitor_has_read(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant, "Hello")
    reply = (await alex.ok("message", conversation_id=convo, content="How can I help?"))["message"]
    assert (await alex.view(convo))["conversation"]["visitor_read_seq"] < reply["seq"]
    async with sse(base, alex.token) as stream:
        await chatpoll(tenant, convoID=convo)  # the window shows the reply
        read = (await stream.until("read")).data
    assert read == {"conversation_id": convo, "visitor_read_seq": reply["seq"]}
    assert (await alex.view(convo))["conversation"]["visitor_read_seq"] == reply["seq"]


async def test_the_visitor_sees_how_far_the_operators_have_read_in_its_own_numbering(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant, "Hello")
    await alex.ok("note", conversation_id=convo, content="Check the order")
    await tenant.visitor_says("Are you there?", convoID=convo)
    polled = await chatpoll(tenant, convoID=convo)
    assert polled["seenSeq"] == 0
    # The note has a message seq but no visitor seq: the visitor's numbering has no gap.
    asked = polled["messages"][-1]
    assert (asked["message"], asked["seq"]) == ("Are you there?", 2)
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 2)
        await alex.view(convo)
        read = await ws.until("read")
    assert read["data"] == {"convoID": convo, "seenSeq": 2}
    assert (await chatpoll(tenant, convoID=convo))["seenSeq"] == 2


async def test_the_window_on_a_socket_says_what_it_showed(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant, "Hello")
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 1)
        await alex.ok("message", conversation_id=convo, content="Hi there")
        shown = await ws.until("message:new")
        async with sse(base, alex.token) as stream:
            await ws.send(type="read", seq=shown["seq"])
            read = (await stream.until("read")).data
    view = await alex.view(convo)
    assert read["visitor_read_seq"] == view["conversation"]["visitor_read_seq"] == 2


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param('{"type": "read"}', id="missing"),
        pytest.param('{"type": "read", "seq": 0}', id="zero"),
        pytest.param('{"type": "read", "seq": "two"}', id="text"),
        pytest.param('{"type": "read", "seq": [1, 2]}', id="list"),
        pytest.param('{"type": "read", "seq": ' + "9" * 40 + "}", id="huge"),
    ],
)
async def test_a_bad_read_frame_is_an_error_frame_and_moves_nothing(
    base: str, tenant: Tenant, alex: Panel, frame: str
) -> None:
    convo = await chat(tenant, "Hello")
    await alex.ok("message", conversation_id=convo, content="Hi there")
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 2)
        await ws.conn.send(frame)
        error = await ws.until("error")
        assert error["error"]["code"] in ("missing_field", "invalid_field")
        await ws.send(type="ping")
        await ws.until("pong")
    assert (await alex.view(convo))["conversation"]["visitor_read_seq"] == 0


async def test_read_frames_past_the_conversations_budget_are_refused_and_the_socket_stays(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant, "Hello")
    await alex.ok("message", conversation_id=convo, content="Hi there")
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 2)
        # Each read costs a store read: a loop sending them spends the burst, then is told.
        for _ in range(VISITOR_READS.capacity):
            await ws.send(type="read", seq=1)
        await ws.send(type="read", seq=1)
        error = await ws.until("error")
        assert error["error"]["code"] == "rate_limited"
        assert error["error"]["retry_after"] >= 1
        await ws.send(type="ping")
        await ws.until("pong")
