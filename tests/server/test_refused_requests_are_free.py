"""Issue 21 item 16: refused requests spent the rate limit, against docs/api.md ("Refused
requests spend nothing and change nothing"). Each surface validates first, then charges."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.api.chat_window import NEW_CONVERSATIONS, VISITOR_MESSAGES, VISITOR_TYPING
from tests.conftest import Tenant, assert_error
from tests.server.realtime_clients import serve, websocket

# Each is refused before anything is written: empty, too long, an address list, a clientMsgID
# too long, a site that does not exist.
REFUSED_SENDS: list[dict[str, Any]] = [
    {"message": "   "},
    {"message": "x" * 5001},
    {"message": "hi", "email": "a@x.com, b@evil.example"},
    {"message": "hi", "clientMsgID": "c" * 129},
    {"message": "hi", "siteID": 999},
]


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _post(tenant: Tenant, mode: str, **fields: Any) -> httpx.Response:
    return await tenant.client.post(f"/{tenant.account_id}/liveoperator/{mode}", data=fields)


async def test_refused_postmessages_spend_no_message_budget(tenant: Tenant) -> None:
    convo = (await _post(tenant, "postmessage", message="Hello")).json()["convoID"]
    for _ in range(VISITOR_MESSAGES.capacity):
        for refused in REFUSED_SENDS[:4]:
            response = await _post(tenant, "postmessage", convoID=convo, **refused)
            assert 400 <= response.status_code < 500 and response.status_code != 429
    # The whole burst is still there for real messages.
    for i in range(VISITOR_MESSAGES.capacity - 1):
        assert (await _post(tenant, "postmessage", convoID=convo, message=f"m{i}")).is_success


async def test_refused_first_messages_spend_no_new_conversation_budget(tenant: Tenant) -> None:
    for _ in range(NEW_CONVERSATIONS.limit):
        for refused in REFUSED_SENDS:
            response = await _post(tenant, "postmessage", **refused)
            assert 400 <= response.status_code < 500 and response.status_code != 429
    for i in range(NEW_CONVERSATIONS.limit):
        assert (await _post(tenant, "postmessage", message=f"new {i}")).is_success


async def test_refused_typing_spends_no_typing_budget(tenant: Tenant) -> None:
    for _ in range(VISITOR_TYPING.capacity + 5):
        assert_error(await _post(tenant, "chattyping", convoID="no-such-convo"), 404,
                     "conversation_not_found")  # fmt: skip
    convo = (await _post(tenant, "postmessage", message="Hello")).json()["convoID"]
    for _ in range(VISITOR_TYPING.capacity):
        assert (await _post(tenant, "chattyping", convoID=convo)).is_success


async def test_refused_socket_sends_spend_no_budget(base: str, tenant: Tenant) -> None:
    async with websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws:
        await ws.send(type="hello")
        await ws.until("ready")
        for _ in range(NEW_CONVERSATIONS.limit + 1):
            await ws.send(type="send", message="   ")
            assert (await ws.until("error"))["error"]["code"] == "empty_message"
        await ws.send(type="send", message="Hello", clientMsgID="m-0")
        assert (await ws.until("ack"))["seq"] == 1
        for i in range(VISITOR_MESSAGES.capacity + 1):
            await ws.send(type="send", message="x" * 5001, clientMsgID=f"long-{i}")
            assert (await ws.until("error"))["error"]["code"] == "message_too_long"
        for i in range(1, VISITOR_MESSAGES.capacity):
            await ws.send(type="send", message=f"m{i}", clientMsgID=f"m-{i}")
            assert (await ws.until("ack"))["clientMsgID"] == f"m-{i}"


async def test_refused_ratings_spend_no_message_budget(tenant: Tenant) -> None:
    convo = (await _post(tenant, "postmessage", message="Hello")).json()["convoID"]
    for _ in range(VISITOR_MESSAGES.capacity + 5):
        # Not resolved yet, then a score out of range: both refused before any charge.
        assert_error(await _post(tenant, "rate", convoID=convo, rating="5"), 409, "not_resolved")
        assert_error(await _post(tenant, "rate", convoID=convo, rating="9"), 400, "invalid_rating")
    assert (await _post(tenant, "postmessage", convoID=convo, message="still heard")).is_success
