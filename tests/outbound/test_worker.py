"""The outbound worker over a real store and real local providers: what gets delivered, how
failures are retried or given up, and what the operators are told."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from prometheus_client import REGISTRY

from realtime.broker import create_broker
from realtime.hub import Hub
from realtime.outbox import Item, Outbox
from server import claim_loop
from server.adapters.email import SmtpEmail
from server.adapters.sms import TwilioSms
from server.events import EventFeed, account_channel
from server.outbound import BACKOFF_MAX_S, OutboundWorker, backoff_s
from storage.base import Store
from storage.models import Conversation, SourceApp, UserInfo
from tests.outbound.conftest import (
    CUSTOMER,
    NOW,
    append_reply,
    new_account,
    new_conversation,
)
from tests.outbound.servers import SMS_FROM, SMS_SID, SMS_TOKEN, SmsServer, SmtpServer

LEASE_S = 30.0
MAX_ATTEMPTS = 3
BACKOFF_BASE_S = 10.0
WAIT_S = 5.0


class Clock:
    """The worker's idea of now: the tests move it past leases and backoffs."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    store: Store
    worker: OutboundWorker
    clock: Clock
    smtp: SmtpServer
    sms: SmsServer
    account_id: str
    announced: Outbox

    async def conversation(
        self, source_app: SourceApp = "emailbroadcast", contact: UserInfo = CUSTOMER
    ) -> Conversation:
        return await new_conversation(self.store, self.account_id, source_app, contact=contact)

    async def delivery(self, convo: Conversation, seq: int = 1) -> str | None:
        messages = await self.store.list_messages(self.account_id, convo.id)
        return next(m.delivery for m in messages if m.seq == seq)

    async def announcements(self, count: int) -> list[dict[str, Any]]:
        items: list[Item] = []
        while len(items) < count:
            items.extend(await asyncio.wait_for(self.announced.next_batch(), WAIT_S))
        assert all((i.seq, i.kind) == (None, "delivery") for i in items)
        return [orjson.loads(i.data) for i in items]


async def _nothing(after: int, upto: int | None, limit: int) -> list[Item]:
    return []


@pytest.fixture
async def rig(store: Store, smtp: SmtpServer, sms: SmsServer) -> AsyncIterator[Rig]:
    hub = Hub(create_broker("memory://"))
    await hub.start()
    account_id = await new_account(store, "Acme")
    announced = Outbox(0, _nothing)
    await hub.attach(account_channel(account_id), announced)
    clock = Clock()
    adapters = {
        "email": SmtpEmail(f"smtp://127.0.0.1:{smtp.port}", "help@acme.test", timeout_s=WAIT_S),
        "sms": TwilioSms(
            account_sid=SMS_SID, auth_token=SMS_TOKEN, sender=SMS_FROM, timeout_s=WAIT_S,
            base_url=sms.base,
        ),
    }  # fmt: skip
    worker = OutboundWorker(
        store, EventFeed(hub, store), adapters, lease_s=LEASE_S, worker_id="test-worker",
        max_attempts=MAX_ATTEMPTS, backoff_base_s=BACKOFF_BASE_S, clock=clock,
        jitter=lambda: 1.0,
    )  # fmt: skip
    try:
        yield Rig(store, worker, clock, smtp, sms, account_id, announced)
    finally:
        for adapter in adapters.values():
            await adapter.aclose()
        await hub.close()


async def test_replies_leave_through_the_channel_the_customer_used(rig: Rig) -> None:
    email = await rig.conversation("emailbroadcast")
    sms = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, email, "Thanks for your email")
    await append_reply(rig.store, sms, "Thanks for your text")
    assert await rig.worker.run_once() == 2
    (mail,) = rig.smtp.mailbox.messages()
    assert mail.get_content().strip() == "Thanks for your email"
    assert rig.sms.twilio.bodies() == ["Thanks for your text"]
    assert await rig.delivery(email) == await rig.delivery(sms) == "sent"
    announced = await rig.announcements(2)
    assert sorted(announced, key=lambda a: a["conversation_id"] == sms.id) == [
        {"conversation_id": email.id, "seq": 1, "delivery": "sent", "error": None},
        {"conversation_id": sms.id, "seq": 1, "delivery": "sent", "error": None},
    ]
    assert await rig.worker.run_once() == 0


async def test_a_transient_failure_is_retried_after_a_backoff(rig: Rig) -> None:
    convo = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, convo, "Are you there?")
    rig.sms.twilio.scripted.append((503, {"code": 20503, "message": "Service Unavailable"}))
    assert await rig.worker.run_once() == 1
    assert await rig.delivery(convo) == "queued"
    assert rig.sms.twilio.bodies() == []
    rig.clock.now += BACKOFF_BASE_S - 0.1
    assert await rig.worker.run_once() == 0  # still backing off
    rig.clock.now += 0.1
    assert await rig.worker.run_once() == 1
    assert rig.sms.twilio.bodies() == ["Are you there?"]
    assert await rig.delivery(convo) == "sent"
    assert await rig.announcements(1) == [
        {"conversation_id": convo.id, "seq": 1, "delivery": "sent", "error": None}
    ]


async def test_a_permanent_failure_fails_at_once_with_the_providers_reason(rig: Rig) -> None:
    convo = await rig.conversation("emailbroadcast")
    await append_reply(rig.store, convo, "Hello")
    rig.smtp.mailbox.refuse_rcpt = "550 5.1.1 no such user"
    assert await rig.worker.run_once() == 1
    assert await rig.delivery(convo) == "failed"
    (announced,) = await rig.announcements(1)
    assert announced["delivery"] == "failed"
    assert announced["error"] == "recipient refused: 550 5.1.1 no such user"
    rig.clock.now += BACKOFF_MAX_S
    assert await rig.worker.run_once() == 0


async def test_transient_failures_give_up_after_the_last_attempt(rig: Rig) -> None:
    convo = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, convo, "Hello")
    rig.sms.twilio.scripted.extend([(429, {"code": 20429, "message": "Too Many Requests"})] * 3)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        assert await rig.worker.run_once() == 1, attempt
        rig.clock.now += BACKOFF_BASE_S * 2 ** (attempt - 1)
    assert await rig.delivery(convo) == "failed"
    (announced,) = await rig.announcements(1)
    assert announced["error"] == (
        f"SMS provider: 20429: Too Many Requests (gave up after {MAX_ATTEMPTS} attempts)"
    )
    assert rig.sms.twilio.scripted == []


async def test_a_conversation_without_a_destination_fails_with_the_reason(rig: Rig) -> None:
    convo = await rig.conversation("smsbroadcast", contact=UserInfo(email="vera@customer.test"))
    await append_reply(rig.store, convo, "Hello")
    await rig.worker.run_once()
    assert await rig.delivery(convo) == "failed"
    (announced,) = await rig.announcements(1)
    assert announced["error"] == "the conversation has no phone number"


async def test_a_message_that_keeps_killing_its_workers_is_given_up(rig: Rig) -> None:
    convo = await rig.conversation("emailbroadcast")
    await append_reply(rig.store, convo, "Hello")
    for _ in range(MAX_ATTEMPTS):  # claimed, then the process dies each time
        assert await rig.store.claim_outbound(
            "doomed", channels=("email",), now=rig.clock.now, lease_s=LEASE_S, limit=1
        )
        rig.clock.now += LEASE_S
    assert await rig.worker.run_once() == 1
    assert rig.smtp.mailbox.messages() == []
    assert await rig.delivery(convo) == "failed"
    (announced,) = await rig.announcements(1)
    assert announced["error"] == f"gave up after {MAX_ATTEMPTS} attempts"


async def test_a_silent_provider_is_cut_off_within_the_lease_and_retried(rig: Rig) -> None:
    convo = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, convo, "Hello")
    rig.sms.twilio.delay_s = 1.0
    sms = TwilioSms(
        account_sid=SMS_SID, auth_token=SMS_TOKEN, sender=SMS_FROM, timeout_s=WAIT_S,
        base_url=rig.sms.base,
    )  # fmt: skip
    # A lease of 0.6 s allows each delivery 0.2 s, whatever the adapter's own timeout.
    hurried = OutboundWorker(
        rig.store, EventFeed(Hub(create_broker("memory://")), rig.store), {"sms": sms},
        lease_s=0.6, clock=rig.clock, backoff_base_s=BACKOFF_BASE_S, jitter=lambda: 1.0,
    )  # fmt: skip
    try:
        assert await hurried.run_once() == 1
    finally:
        await sms.aclose()
    assert await rig.delivery(convo) == "queued"
    rig.sms.twilio.delay_s = 0.0
    rig.clock.now += BACKOFF_BASE_S
    assert await rig.worker.run_once() == 1
    assert await rig.delivery(convo) == "sent"


async def test_the_running_worker_delivers_and_stops_cleanly(rig: Rig) -> None:
    convos = [await rig.conversation("emailbroadcast") for _ in range(3)]
    # Two replies each: the second of a conversation goes out only after the first.
    for convo in convos:
        await append_reply(rig.store, convo, f"{convo.id} first")
        await append_reply(rig.store, convo, f"{convo.id} second")
    rig.worker.start()
    try:
        await rig.announcements(6)
    finally:
        await rig.worker.stop()
    texts = [m.get_content().strip() for m in rig.smtp.mailbox.messages()]
    for convo in convos:
        assert texts.index(f"{convo.id} second") > texts.index(f"{convo.id} first")
    assert len(texts) == 6


def test_backoff_doubles_up_to_a_cap_with_up_to_half_of_it_dropped() -> None:
    assert [backoff_s(n, base_s=15, jitter=1.0) for n in (1, 2, 3)] == [15.0, 30.0, 60.0]
    assert [backoff_s(n, base_s=15, jitter=0.0) for n in (1, 2, 3)] == [7.5, 15.0, 30.0]
    assert backoff_s(40, base_s=15, jitter=1.0) == BACKOFF_MAX_S
    assert backoff_s(40, base_s=15, jitter=0.0) == BACKOFF_MAX_S / 2


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_stopping_worker_releases_its_claims_for_another_at_once(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The provider answers after the stop's grace (shortened here), so the delivery is cut off.
    monkeypatch.setattr(claim_loop, "STOP_GRACE_S", 0.2)
    rig.sms.twilio.delay_s = 2.0
    convo = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, convo, "Back in a moment")
    released = _sample("liveop_outbound_attempts_total", channel="sms", result="released")
    rig.worker.start()
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while _sample("liveop_outbound_in_flight", channel="sms") < 1:
        assert asyncio.get_running_loop().time() < deadline, "never claimed"
        await asyncio.sleep(0.01)
    await rig.worker.stop()
    assert _sample("liveop_outbound_in_flight", channel="sms") == 0
    assert _sample("liveop_outbound_attempts_total", channel="sms", result="released") == (
        released + 1
    )
    assert await rig.delivery(convo) == "queued"
    rig.sms.twilio.delay_s = 0.0
    # Same instant: no lease had to pass for another worker to take it over.
    sms = TwilioSms(
        account_sid=SMS_SID, auth_token=SMS_TOKEN, sender=SMS_FROM, timeout_s=WAIT_S,
        base_url=rig.sms.base,
    )  # fmt: skip
    other = OutboundWorker(
        rig.store, EventFeed(Hub(create_broker("memory://")), rig.store), {"sms": sms},
        lease_s=LEASE_S, worker_id="other-worker", clock=rig.clock,
    )  # fmt: skip
    try:
        assert await other.run_once() == 1
    finally:
        await sms.aclose()
    assert await rig.delivery(convo) == "sent"


async def test_the_queue_depth_counts_what_waits_backoffs_included(rig: Rig) -> None:
    convo = await rig.conversation("smsbroadcast")
    await append_reply(rig.store, convo, "Are you there?")
    rig.sms.twilio.scripted.append((503, {"code": 20503, "message": "Service Unavailable"}))
    assert await rig.worker.run_once() == 1
    assert _sample("liveop_outbound_queued", channel="sms") == 1
    rig.clock.now += BACKOFF_BASE_S
    assert await rig.worker.run_once() == 1  # still queued while backing off, then sent
    assert await rig.worker.run_once() == 0
    assert _sample("liveop_outbound_queued", channel="sms") == 0
    assert _sample("liveop_outbound_queued", channel="email") == 0
