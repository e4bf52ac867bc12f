"""Issue 21 item 1: a reused clientMsgID handed over someone else's conversation.

Idempotency never grants access: a repeated clientMsgID is answered as a retry only within
what the caller already holds (the conversation it names, its own widget session, or with
the account key a conversation its integration opened); anything else is a 409 that names
no conversation and no message.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from tests.conftest import Tenant, assert_error
from tests.server.realtime_clients import serve, websocket

VICTIM_SESSION = "victim-session-0001"
ATTACKER_SESSION = "attacker-session-01"


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _postmessage(tenant: Tenant, **fields: Any) -> httpx.Response:
    return await tenant.client.post(f"/{tenant.account_id}/liveoperator/postmessage", data=fields)


def _assert_reveals_nothing(response: httpx.Response, *secrets: str) -> None:
    assert_error(response, 409, "client_msg_id_reused")
    for secret in secrets:
        assert secret not in response.text


async def test_reused_client_msg_id_on_postmessage_does_not_hand_over_an_integrations_conversation(
    tenant: Tenant,
) -> None:
    mine = await tenant.ok("sendmessage", message="order 42 is late", clientMsgID="c1")
    stolen = await _postmessage(tenant, message="what did they say?", clientMsgID="c1")
    _assert_reveals_nothing(stolen, mine["convoID"], "order 42")
    history = await tenant.ok("gethistory", convoID=mine["convoID"])
    assert [m["message"] for m in history["messages"]] == ["order 42 is late"]


async def test_reused_client_msg_id_on_postmessage_does_not_hand_over_another_visitors_conversation(
    tenant: Tenant,
) -> None:
    victim = await _postmessage(
        tenant, message="my card number", clientMsgID="k-1", sessionID=VICTIM_SESSION
    )
    assert victim.status_code == 200
    stolen = await _postmessage(tenant, message="hi", clientMsgID="k-1", sessionID=ATTACKER_SESSION)
    _assert_reveals_nothing(stolen, victim.json()["convoID"], "card number")
    without_session = await _postmessage(tenant, message="hi", clientMsgID="k-1")
    _assert_reveals_nothing(without_session, victim.json()["convoID"])


async def test_reused_client_msg_id_on_the_visitor_socket_does_not_hand_over_a_conversation(
    base: str, tenant: Tenant
) -> None:
    mine = await tenant.ok("sendmessage", message="private", clientMsgID="c1")
    async with websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws:
        await ws.send(type="hello", sessionID=ATTACKER_SESSION, siteID=1)
        await ws.until("ready")
        await ws.send(type="send", message="hi", clientMsgID="c1")
        error = await ws.until("error")
        assert error["error"]["code"] == "client_msg_id_reused"
        assert mine["convoID"] not in str(error)
        # The socket lives on and follows nothing: a fresh key opens the visitor's own.
        await ws.send(type="send", message="hi", clientMsgID="c2")
        ack = await ws.until("ack")
        assert ack["convoID"] != mine["convoID"] and ack["seq"] == 1


async def test_a_key_planted_by_a_visitor_does_not_capture_the_integrations_next_conversation(
    tenant: Tenant,
) -> None:
    planted = await _postmessage(
        tenant, message="bait", clientMsgID="sms-1001", sessionID=ATTACKER_SESSION
    )
    assert planted.status_code == 200
    captured = await tenant.command("sendmessage", message="customer text", clientMsgID="sms-1001")
    _assert_reveals_nothing(captured, planted.json()["convoID"])


async def test_a_visitors_retry_is_still_recognised_within_its_own_session(
    base: str, tenant: Tenant
) -> None:
    first = await _postmessage(tenant, message="Hi", clientMsgID="w-1", sessionID=VICTIM_SESSION)
    again = await _postmessage(tenant, message="Hi", clientMsgID="w-1", sessionID=VICTIM_SESSION)
    assert again.json()["convoID"] == first.json()["convoID"] and again.json()["duplicate"]
    # A socket whose ack was lost retries its first send, before it knows the conversation.
    async with websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws:
        await ws.send(type="hello", sessionID=VICTIM_SESSION, siteID=1)
        await ws.until("ready")
        await ws.send(type="send", message="Hi", clientMsgID="w-1")
        ack = await ws.until("ack")
    assert (ack["convoID"], ack["duplicate"], ack["seq"]) == (first.json()["convoID"], True, 1)


async def test_an_integrations_retry_is_still_recognised_with_its_key(tenant: Tenant) -> None:
    first = await tenant.ok("sendmessage", message="hi", clientMsgID="api-1")
    again = await tenant.ok("sendmessage", message="hi", clientMsgID="api-1")
    assert again["duplicate"] is True and again["convoID"] == first["convoID"]
    named = await tenant.ok(
        "sendmessage", convoID=first["convoID"], message="hi", clientMsgID="api-1"
    )
    assert named["duplicate"] is True
