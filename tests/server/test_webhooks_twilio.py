"""Inbound SMS webhooks (issue 14), signed by the `twilio` package's own RequestValidator and
forged in the ways research note A lists: each forgery is 403 and writes nothing."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Mapping
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY
from starlette.datastructures import MultiDict
from twilio.request_validator import RequestValidator

from server.api.webhooks_twilio import EMPTY_TWIML
from server.services import Services
from storage.base import InboxQuery
from storage.models import Conversation
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.outbound.servers import SMS_SID, SMS_TOKEN, SmsServer, sms_server
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import operator_token

PUBLIC = "https://chat.example.test"
CUSTOMER = "+15557654321"
OPERATOR = "/api/v1/operator"
DELIVERED_WITHIN_S = 10.0


@pytest.fixture
def provider() -> Iterator[SmsServer]:
    with sms_server() as server:
        yield server


def inbound(n: int, body: str, **extra: str) -> dict[str, str]:
    sid = f"SM{n:032x}"
    return {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": SMS_SID, "From": CUSTOMER,
        "To": "+15550100100", "Body": body, "NumMedia": "0", "ApiVersion": "2010-04-01",
        **extra,
    }  # fmt: skip


class Line:
    """An SMS channel of the tenant, and a provider that posts to its webhook."""

    def __init__(
        self, client: httpx.AsyncClient, services: Services, tenant: Tenant, channel: dict[str, Any]
    ) -> None:
        self.client = client
        self.services = services
        self.tenant = tenant
        self.channel = channel
        self.url: str = channel["webhooks"]["sms"]
        self.path = self.url.removeprefix(PUBLIC)

    async def post(
        self,
        params: dict[str, str],
        *,
        signed_url: str | None = None,
        signed_params: Mapping[str, Any] | None = None,
        token: str = SMS_TOKEN,
        signature: str | None = None,
        path: str | None = None,
    ) -> httpx.Response:
        signer = RequestValidator(token)
        signed = signer.compute_signature(signed_url or self.url, signed_params or params)
        headers = {"X-Twilio-Signature": signed if signature is None else signature}
        return await self.client.post(path or self.path, data=params, headers=headers)

    async def conversations(self) -> list[Conversation]:
        query = InboxQuery(viewer=0, every_team=True)
        return await self.services.store.list_conversations(self.tenant.account_id, query)

    async def texts(self, convo: Conversation) -> list[str]:
        messages = await self.services.store.list_messages(self.tenant.account_id, convo.id)
        return [m.text for m in messages]


async def _line(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, api_url: str | None = None
) -> Line:
    body = {
        "kind": "sms", "name": "Texts", "account_sid": SMS_SID, "auth_token": SMS_TOKEN,
        "from": "+15550100100", "public_url": PUBLIC, **({"api_url": api_url} if api_url else {}),
    }  # fmt: skip
    response = await client.post(
        "/api/v1/admin/channels", json=body, headers={"X-Api-Key": tenant.api_key}
    )
    assert response.status_code == 201, response.text
    return Line(client, services, tenant, response.json()["channel"])


@pytest.fixture
async def line(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> Line:
    return await _line(client, services, tenant)


def assert_twiml(response: httpx.Response) -> None:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/xml")
    assert response.content == EMPTY_TWIML


async def test_a_signed_sms_opens_a_conversation_and_the_next_one_continues_it(
    line: Line, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert_twiml(await line.post(inbound(1, "Is my order shipped?")))
    (convo,) = await line.conversations()
    assert (convo.source_app, convo.channel_id) == ("smsbroadcast", line.channel["id"])
    assert convo.user_info.phone == CUSTOMER
    token = bearer(await operator_token(client, tenant))
    shown = (await client.get(f"{OPERATOR}/conversation/{convo.id}", headers=token)).json()
    assert shown["conversation"]["channel"] == "sms"
    assert shown["conversation"]["channel_id"] == line.channel["id"]

    assert_twiml(await line.post(inbound(2, "Order 1234")))
    (same,) = await line.conversations()
    assert same.id == convo.id
    assert await line.texts(same) == ["Is my order shipped?", "Order 1234"]
    channels = await client.get("/api/v1/admin/channels", headers={"X-Api-Key": tenant.api_key})
    assert channels.json()["channels"][0]["health"]["last_inbound"] is not None


async def test_a_resolved_thread_is_reopened_by_the_customers_next_sms(
    line: Line, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    assert_twiml(await line.post(inbound(1, "Hello")))
    (convo,) = await line.conversations()
    token = bearer(await operator_token(client, tenant))
    closed = await client.post(f"{OPERATOR}/close/{convo.id}", headers=token)
    assert closed.status_code == 200, closed.text
    assert_twiml(await line.post(inbound(2, "One more thing")))
    (again,) = await line.conversations()
    assert (again.id, again.status) == (convo.id, "open")


async def test_a_channel_set_to_new_starts_a_conversation_after_resolution(
    line: Line, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    patched = await client.patch(
        f"/api/v1/admin/channels/{line.channel['id']}",
        json={"after_resolved": "new"},
        headers={"X-Api-Key": tenant.api_key},
    )
    assert patched.status_code == 200, patched.text
    assert_twiml(await line.post(inbound(1, "My first question")))
    assert_twiml(await line.post(inbound(2, "and a detail")))
    (first,) = await line.conversations()
    token = bearer(await operator_token(client, tenant))
    closed = await client.post(f"{OPERATOR}/close/{first.id}", headers=token)
    assert closed.status_code == 200, closed.text
    assert_twiml(await line.post(inbound(3, "A new question")))
    # A retry of the message that opened it lands in the same new conversation.
    assert_twiml(await line.post(inbound(3, "A new question")))
    by_id = {c.id: c for c in await line.conversations()}
    assert len(by_id) == 2
    second = next(c for c in by_id.values() if c.id != first.id)
    assert (by_id[first.id].status, second.status) == ("resolved", "open")
    assert await line.texts(by_id[first.id]) == ["My first question", "and a detail"]
    assert await line.texts(second) == ["A new question"]
    assert (second.channel_id, second.user_info.phone) == (line.channel["id"], CUSTOMER)


async def test_a_retried_webhook_makes_no_second_message(line: Line) -> None:
    first = inbound(1, "Only once")
    replies = await asyncio.gather(*(line.post(first) for _ in range(3)))
    for reply in replies:
        assert_twiml(reply)
    assert_twiml(await line.post(first))
    (convo,) = await line.conversations()
    assert await line.texts(convo) == ["Only once"]


async def test_another_number_gets_its_own_conversation(line: Line) -> None:
    assert_twiml(await line.post(inbound(1, "Me")))
    assert_twiml(await line.post(inbound(2, "Someone else", From="+15550009999")))
    phones = sorted(c.user_info.phone for c in await line.conversations())
    assert phones == ["+15550009999", CUSTOMER]


async def test_the_signature_covers_the_configured_url_with_or_without_the_default_port(
    line: Line,
) -> None:
    with_port = line.url.replace(PUBLIC, "https://chat.example.test:443")
    assert_twiml(await line.post(inbound(1, "Port"), signed_url=with_port))
    assert len(await line.conversations()) == 1


@pytest.mark.parametrize(
    "forgery",
    [
        "no signature",
        "empty signature",
        "wrong token",
        "the request's own URL",
        "http instead of https",
        "another channel's path",
        "a changed body",
        "an added parameter",
        "a dropped parameter",
        "a query string added",
        "signed as JSON",
    ],
)
async def test_a_forged_webhook_is_403_and_writes_nothing(
    line: Line, services: Services, forgery: str
) -> None:
    params = inbound(1, "Refund me now")
    url = line.url
    response: httpx.Response
    if forgery == "no signature":
        response = await line.client.post(line.path, data=params)
    elif forgery == "empty signature":
        response = await line.post(params, signature="")
    elif forgery == "wrong token":
        response = await line.post(params, token="not-the-token")
    elif forgery == "the request's own URL":
        # What a server trusting its own Host header would check.
        response = await line.post(params, signed_url=f"http://liveop.test{line.path}")
    elif forgery == "http instead of https":
        response = await line.post(params, signed_url=url.replace("https://", "http://"))
    elif forgery == "another channel's path":
        response = await line.post(params, signed_url=url.replace(line.channel["key"], "x" * 32))
    elif forgery == "a changed body":
        response = await line.post({**params, "Body": "Refund me $900"}, signed_params=params)
    elif forgery == "an added parameter":
        response = await line.post(
            {**params, "MediaUrl0": "https://evil.test/x"}, signed_params=params
        )
    elif forgery == "a dropped parameter":
        trimmed = {k: v for k, v in params.items() if k != "ApiVersion"}
        response = await line.post(trimmed, signed_params=params)
    elif forgery == "a query string added":
        response = await line.post(params, path=f"{line.path}?department=7")
    else:
        raw = b'{"Body": "Refund me"}'
        signed = f"{url}?bodySHA256={hashlib.sha256(b'{}').hexdigest()}"
        signature = RequestValidator(SMS_TOKEN).compute_signature(signed, {})
        response = await line.client.post(
            f"{line.path}?bodySHA256={hashlib.sha256(b'{}').hexdigest()}",
            content=raw,
            headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
        )
    assert_error(response, 403, "invalid_signature")
    assert await line.conversations() == []
    (channel,) = await services.store.list_channels(line.tenant.account_id)
    assert channel.last_inbound is None


async def test_a_signed_json_body_is_checked_by_its_hash_and_refused_as_not_a_form(
    line: Line,
) -> None:
    raw = b'{"Body": "hi"}'
    query = f"bodySHA256={hashlib.sha256(raw).hexdigest()}"
    signature = RequestValidator(SMS_TOKEN).compute_signature(f"{line.url}?{query}", {})
    response = await line.client.post(
        f"{line.path}?{query}",
        content=raw,
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/json"},
    )
    assert_error(response, 415, "unsupported_media_type")
    assert await line.conversations() == []


async def test_an_unknown_or_deleted_channel_is_404(
    line: Line, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    unknown = line.path.replace(line.channel["key"], "k" * 32)
    signed = line.url.replace(line.channel["key"], "k" * 32)
    assert_error(
        await line.post(inbound(1, "?"), path=unknown, signed_url=signed), 404, "channel_not_found"
    )
    deleted = await client.delete(
        f"/api/v1/admin/channels/{line.channel['id']}", headers={"X-Api-Key": tenant.api_key}
    )
    assert deleted.status_code == 200
    assert_error(await line.post(inbound(1, "?")), 404, "channel_not_found")
    assert await line.conversations() == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"From": "not-a-number"}, 400, "invalid_field"),
        ({"From": "12345"}, 400, "invalid_field"),
        ({"From": ""}, 400, "missing_field"),
        ({"MessageSid": ""}, 400, "missing_field"),
        ({"MessageSid": "SM123"}, 400, "invalid_field"),
        ({"Body": "x" * 5001}, 400, "message_too_long"),
        ({"Body": ""}, 400, "empty_message"),
        ({"NumMedia": "two"}, 400, "invalid_field"),
        # Beyond the 4,300 digits int() reads and the 64 bits any field holds: not a 500.
        ({"NumMedia": "9" * 4301}, 400, "invalid_field"),
        ({"NumMedia": "\u0661"}, 400, "invalid_field"),
        ({"AccountSid": "AC" + "9" * 32}, 403, "wrong_account"),
        ({"Body": "hello\u0000world"}, 400, "invalid_characters"),
        # Exotic digits are not a phone number, however int() would read them.
        ({"From": "+\u0661\u0665\u0665\u0665\u0660\u0661\u0660\u0660"}, 400, "invalid_field"),
        ({"From": "+\uff11\uff15\uff15\uff15\uff10\uff11\uff10\uff10"}, 400, "invalid_field"),
        ({"NumMedia": "1e3"}, 400, "invalid_field"),
        # A list where one value belongs: signed as Twilio would sign it, and still refused.
        ({"Body": ["one", "two"]}, 400, "invalid_field"),
        ({"From": [CUSTOMER, "+15550009999"]}, 400, "invalid_field"),
        ({"MessageSid": [f"SM{1:032x}", f"SM{2:032x}"]}, 400, "invalid_field"),
    ],
)
async def test_bad_fields_are_refused_and_nothing_is_written(
    line: Line, change: dict[str, Any], status: int, code: str
) -> None:
    params = {**inbound(1, "hello"), **change}
    # Signed as Twilio signs a repeated name: each of its values, sorted (a MultiDict is
    # what RequestValidator reads them from).
    pairs = [(k, x) for k, v in params.items() for x in (v if isinstance(v, list) else [v])]
    assert_error(await line.post(params, signed_params=MultiDict(pairs)), status, code)
    assert await line.conversations() == []


async def test_a_picture_without_text_is_announced_to_the_operator(line: Line) -> None:
    # A host that is not the provider's: refused as it comes in, so nothing is fetched here
    # (tests/server/test_sms_media.py fetches pictures from a local provider).
    params = inbound(
        1, "", NumMedia="1", MediaContentType0="image/jpeg",
        MediaUrl0="https://media.example.test/2010-04-01/Messages/x/Media/y",
    )  # fmt: skip
    assert_twiml(await line.post(params))
    (convo,) = await line.conversations()
    assert await line.texts(convo) == ["[The customer sent 1 picture(s) or file(s).]"]


async def test_the_operators_reply_leaves_through_the_channel_the_customer_texted(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> None:
    line = await _line(client, services, tenant, api_url=provider.base)
    assert_twiml(await line.post(inbound(1, "When do you open?")))
    (convo,) = await line.conversations()
    token = bearer(await operator_token(client, tenant))
    reply = await client.post(
        f"{OPERATOR}/message",
        json={"conversation_id": convo.id, "content": "At nine."},
        headers=token,
    )
    assert reply.status_code == 200, reply.text
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while not provider.twilio.received:
        assert asyncio.get_running_loop().time() < deadline, "the reply never left"
        await asyncio.sleep(0.05)
    (sent,) = provider.twilio.received
    assert (sent.account_sid, sent.form["From"], sent.form["To"], sent.form["Body"]) == (
        SMS_SID, "+15550100100", CUSTOMER, "At nine.",
    )  # fmt: skip


# status callbacks


def status(sid: str, state: str, **extra: str) -> dict[str, str]:
    return {
        "MessageSid": sid, "SmsSid": sid, "AccountSid": SMS_SID, "MessageStatus": state,
        "SmsStatus": state, "To": CUSTOMER, "From": "+15550100100", "ApiVersion": "2010-04-01",
        **extra,
    }  # fmt: skip


async def _replied(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> tuple[Line, Conversation, str]:
    """A customer's SMS answered by an operator, the reply accepted by the provider: the
    line, the conversation, and the provider's id for the reply."""
    line = await _line(client, services, tenant, api_url=provider.base)
    assert_twiml(await line.post(inbound(1, "Is it in stock?")))
    (convo,) = await line.conversations()
    token = bearer(await operator_token(client, tenant))
    body = {"conversation_id": convo.id, "content": "Yes."}
    assert (await client.post(f"{OPERATOR}/message", json=body, headers=token)).is_success
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while await _delivery(services, convo) != "sent":
        assert asyncio.get_running_loop().time() < deadline, "the reply never left"
        await asyncio.sleep(0.05)
    return line, convo, f"SM{1:032x}"  # the local provider's first message id


async def _delivery(services: Services, convo: Conversation, seq: int = 2) -> str | None:
    messages = await services.store.list_messages(convo.account_id, convo.id)
    return next(m.delivery for m in messages if m.seq == seq)


async def test_status_callbacks_mark_the_reply_delivered_and_the_operators_hear_it(
    app: Any, client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> None:
    line, convo, sid = await _replied(client, services, tenant, provider)
    status_path = line.path.removesuffix("/sms") + "/status"
    status_url = line.url.removesuffix("/sms") + "/status"
    async with serve(app) as base:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            sent = status(sid, "sent")
            assert_twiml(await line.post(sent, path=status_path, signed_url=status_url))
            delivered = status(sid, "delivered")
            assert_twiml(await line.post(delivered, path=status_path, signed_url=status_url))
            event = await stream.until("delivery", DELIVERED_WITHIN_S)
    assert event.data == {
        "conversation_id": convo.id, "seq": 2, "delivery": "delivered", "error": None,
    }  # fmt: skip
    assert await _delivery(services, convo) == "delivered"
    token = bearer(await operator_token(client, tenant))
    shown = (await client.get(f"{OPERATOR}/conversation/{convo.id}", headers=token)).json()
    assert [m["delivery"] for m in shown["messages"]] == [None, "delivered"]
    # Late or repeated callbacks never move it back.
    for late in ("sent", "queued", "undelivered", "delivered"):
        params = status(sid, late, ErrorCode="30003")
        assert_twiml(await line.post(params, path=status_path, signed_url=status_url))
    assert await _delivery(services, convo) == "delivered"


async def test_an_undelivered_reply_keeps_the_providers_error_code(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> None:
    line, convo, sid = await _replied(client, services, tenant, provider)
    status_path = line.path.removesuffix("/sms") + "/status"
    status_url = line.url.removesuffix("/sms") + "/status"
    params = status(sid, "undelivered", ErrorCode="30003", ErrorMessage="Unreachable handset")
    assert_twiml(await line.post(params, path=status_path, signed_url=status_url))
    assert await _delivery(services, convo) == "undelivered"
    rows = [row async for table, row in services.store.export_rows() if table == "outbound"]
    assert [r["last_error"] for r in rows] == ["30003: Unreachable handset"]


@pytest.mark.parametrize(
    ("params", "status_code", "code"),
    [
        (status(f"SM{9:032x}", "delivered"), 404, "message_not_found"),
        (status(f"SM{1:032x}", "exploded"), 400, "invalid_field"),
        (status(f"SM{1:032x}", ""), 400, "missing_field"),
        (status("", "delivered"), 400, "missing_field"),
    ],
)
async def test_bad_status_callbacks_are_refused_and_change_nothing(
    client: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    provider: SmsServer,
    params: dict[str, str],
    status_code: int,
    code: str,
) -> None:
    line, convo, _ = await _replied(client, services, tenant, provider)
    status_path = line.path.removesuffix("/sms") + "/status"
    status_url = line.url.removesuffix("/sms") + "/status"
    response = await line.post(params, path=status_path, signed_url=status_url)
    assert_error(response, status_code, code)
    forged = await line.post(
        status(f"SM{1:032x}", "failed"), path=status_path, signed_url=status_url, token="x"
    )
    assert_error(forged, 403, "invalid_signature")
    assert await _delivery(services, convo) == "sent"


def _webhooks(kind: str, result: str) -> float:
    labels = {"provider": "twilio", "kind": kind, "result": result}
    return REGISTRY.get_sample_value("liveop_inbound_webhooks_total", labels) or 0.0


async def test_webhooks_are_counted_by_result(line: Line) -> None:
    before = {r: _webhooks("sms", r) for r in ("ok", "duplicate", "bad_signature", "error")}
    assert_twiml(await line.post(inbound(1, "Counted")))
    assert_twiml(await line.post(inbound(1, "Counted")))
    assert_error(
        await line.post(inbound(2, "Forged"), token="not-the-token"), 403, "invalid_signature"
    )
    assert_error(await line.post(inbound(3, "")), 400, "empty_message")
    after = {r: _webhooks("sms", r) for r in before}
    assert {r: after[r] - before[r] for r in before} == {
        "ok": 1,
        "duplicate": 1,
        "bad_signature": 1,
        "error": 1,
    }
