"""SMS opt-out (issue 14): STOP and its kin, or the provider's OptOutType, turn replies from
that channel off for that phone; START turns them back on. The inbox hears of it live, the
outbound worker refuses, and the provider's own refusal (21610) records it too."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from server.services import Services
from server.sms_opt_outs import opt_out_change
from storage.models import Conversation
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.outbound.servers import SmsServer, sms_server
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import operator_token
from tests.server.test_webhooks_twilio import (
    CUSTOMER,
    DELIVERED_WITHIN_S,
    OPERATOR,
    _line,
    assert_twiml,
    inbound,
)


@pytest.fixture
def provider() -> Any:
    with sms_server() as server:
        yield server


@pytest.mark.parametrize(
    ("body", "opt_out_type", "change"),
    [
        ("STOP", None, True),
        ("  stop\n", None, True),
        ("Stop All", None, True),
        ("STOP  ALL", None, True),
        ("stopall", None, True),
        ("Unsubscribe", None, True),
        ("cancel", None, True),
        ("END", None, True),
        ("quit", None, True),
        ("OPTOUT", None, True),
        ("revoke", None, True),
        ("start", None, False),
        ("Yes", None, False),
        ("UNSTOP", None, False),
        ("Arrêt", "STOP", True),
        ("Reprendre", "start", False),
        ("stop by at noon", None, None),
        ("STOP!", None, None),
        ("yes please", None, None),
        ("HELP", None, None),
        ("HELP", "HELP", None),
    ],
)
def test_only_a_whole_keyword_or_the_providers_opt_out_type_changes_anything(
    body: str, opt_out_type: str | None, change: bool | None
) -> None:
    assert opt_out_change(body, opt_out_type) is change


async def _shown(client: httpx.AsyncClient, tenant: Tenant, convo: Conversation) -> Any:
    token = bearer(await operator_token(client, tenant))
    answer = await client.get(f"{OPERATOR}/conversation/{convo.id}", headers=token)
    assert answer.status_code == 200, answer.text
    return answer.json()["conversation"]


async def _contact(client: httpx.AsyncClient, tenant: Tenant, convo: Conversation) -> Any:
    """The conversation's contact as the operator view shows it, then as contacts/{id} does."""
    token = bearer(await operator_token(client, tenant))
    answer = await client.get(f"{OPERATOR}/conversation/{convo.id}", headers=token)
    contact = answer.json()["contact"]
    full = await client.get(f"{OPERATOR}/contacts/{contact['id']}", headers=token)
    assert full.status_code == 200, full.text
    assert full.json()["contact"]["sms_opt_outs"] == contact["sms_opt_outs"]
    return contact


async def test_stop_turns_replies_off_and_start_back_on_live(
    app: Any, client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    line = await _line(client, services, tenant)
    assert_twiml(await line.post(inbound(1, "Hello")))
    (convo,) = await line.conversations()
    assert (await _shown(client, tenant, convo))["sms_opted_out"] is False
    async with serve(app) as base:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            assert_twiml(await line.post(inbound(2, " Stop ")))
            stopped = await stream.until("sms_opt_out", DELIVERED_WITHIN_S)
            assert_twiml(await line.post(inbound(3, "start")))
            started = await stream.until("sms_opt_out", DELIVERED_WITHIN_S)
    assert stopped.data["opted_out"] is True
    assert (stopped.data["channel_id"], stopped.data["phone"]) == (line.channel["id"], CUSTOMER)
    assert started.data == {
        "channel_id": line.channel["id"], "phone": CUSTOMER, "opted_out": False, "since": None,
    }  # fmt: skip
    # The customer's words stay in the conversation: the operator sees why replies stopped.
    assert await line.texts(convo) == ["Hello", " Stop ", "start"]
    assert (await _shown(client, tenant, convo))["sms_opted_out"] is False


async def test_the_providers_opt_out_type_counts_whatever_the_words(
    client: httpx.AsyncClient, services: Services, tenant: Tenant
) -> None:
    line = await _line(client, services, tenant)
    assert_twiml(await line.post(inbound(1, "Arrêt", OptOutType="STOP")))
    (convo,) = await line.conversations()
    assert (await _shown(client, tenant, convo))["sms_opted_out"] is True
    opt_outs = await services.store.sms_opt_outs(tenant.account_id, [CUSTOMER])
    assert [(c, p) for c, p, _ in opt_outs] == [(line.channel["id"], CUSTOMER)]
    # Another channel of the account is not affected.
    other = await _line(client, services, tenant)
    assert_twiml(await other.post(inbound(2, "Hi there")))
    theirs = [c for c in await other.conversations() if c.channel_id == other.channel["id"]]
    assert (await _shown(client, tenant, theirs[0]))["sms_opted_out"] is False
    # One phone is one contact: its flags name the channel it opted out of, wherever it wrote.
    contact = await _contact(client, tenant, theirs[0])
    assert contact["id"] == (await _contact(client, tenant, convo))["id"]
    assert [(o["channel_id"], o["phone"]) for o in contact["sms_opt_outs"]] == [
        (line.channel["id"], CUSTOMER)
    ]
    assert_twiml(await line.post(inbound(3, "Reprendre", OptOutType="START")))
    assert (await _shown(client, tenant, convo))["sms_opted_out"] is False
    assert (await _contact(client, tenant, convo))["sms_opt_outs"] == []


async def _reply(client: httpx.AsyncClient, tenant: Tenant, convo: Conversation, text: str) -> None:
    token = bearer(await operator_token(client, tenant))
    body = {"conversation_id": convo.id, "content": text}
    answer = await client.post(f"{OPERATOR}/message", json=body, headers=token)
    assert answer.status_code == 200, answer.text


async def _final(services: Services, convo: Conversation, seq: int) -> str:
    """The reply's delivery once the worker is done with it."""
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while True:
        messages = await services.store.list_messages(convo.account_id, convo.id)
        delivery = next(m.delivery for m in messages if m.seq == seq)
        if delivery != "queued":
            return str(delivery)
        assert asyncio.get_running_loop().time() < deadline, "the worker never finished"
        await asyncio.sleep(0.05)


async def _last_error(services: Services) -> list[str | None]:
    return [
        row["last_error"]
        async for table, row in services.store.export_rows()
        if table == "outbound"
    ]


async def test_a_reply_to_a_phone_that_opted_out_is_refused_before_anything_is_written(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> None:
    line = await _line(client, services, tenant, api_url=provider.base)
    assert_twiml(await line.post(inbound(1, "STOP")))
    (convo,) = await line.conversations()
    token = bearer(await operator_token(client, tenant))
    body = {"conversation_id": convo.id, "content": "Sorry to see you go"}
    refused = await client.post(f"{OPERATOR}/message", json=body, headers=token)
    assert_error(refused, 409, "sms_opted_out")
    # The App Command API, which integrations reply through, refuses the same way.
    answer = await tenant.command(
        "sendmessage", convoID=convo.id, operatorID=tenant.operator_id, message="Hello?"
    )
    assert_error(answer, 409, "sms_opted_out")
    assert len(await services.store.list_messages(tenant.account_id, convo.id)) == 1
    assert await _last_error(services) == []
    # Once they text START, the next reply goes out.
    assert_twiml(await line.post(inbound(2, "START")))
    await _reply(client, tenant, convo, "Welcome back")
    assert await _final(services, convo, 3) == "sent"
    assert provider.twilio.bodies() == ["Welcome back"]


async def test_a_send_the_provider_refuses_as_unsubscribed_fails_for_good_and_opts_out(
    app: Any,
    client: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    provider: SmsServer,
) -> None:
    line = await _line(client, services, tenant, api_url=provider.base)
    assert_twiml(await line.post(inbound(1, "Hi")))
    (convo,) = await line.conversations()
    # The customer texted STOP to the provider, which never told us (no Advanced Opt-Out).
    provider.twilio.unsubscribed.add(CUSTOMER)
    async with serve(app) as base:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            await _reply(client, tenant, convo, "Hello?")
            event = await stream.until("sms_opt_out", DELIVERED_WITHIN_S)
            failed = await stream.until("delivery", DELIVERED_WITHIN_S)
    assert (event.data["channel_id"], event.data["opted_out"]) == (line.channel["id"], True)
    assert failed.data["delivery"] == "failed"
    assert "21610" in failed.data["error"]
    assert await _final(services, convo, 2) == "failed"
    assert (await _shown(client, tenant, convo))["sms_opted_out"] is True
    # Permanent: one attempt, no retry queued.
    rows = [r async for t, r in services.store.export_rows() if t == "outbound"]
    assert [(r["state"], r["attempts"]) for r in rows] == [("failed", 1)]


async def test_another_account_never_learns_of_an_opt_out(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, other_tenant: Tenant
) -> None:
    line = await _line(client, services, tenant)
    assert_twiml(await line.post(inbound(1, "STOP")))
    assert await services.store.sms_opt_outs(other_tenant.account_id, [CUSTOMER]) == []
    (convo,) = await line.conversations()
    token = bearer(await operator_token(client, other_tenant))
    answer = await client.get(f"{OPERATOR}/conversation/{convo.id}", headers=token)
    assert_error(answer, 404, "conversation_not_found")
