"""Signed outgoing webhooks (issue 16) against a receiver on loopback that checks every
signature with its own HMAC code: what an account's endpoints hear, in order, however long
they fail, the delivery log, replays, and disabling after repeated failure."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from server.crypto import new_key
from server.services import Services
from server.settings import Settings
from server.webhook_delivery import WebhookWorker
from tests.conftest import Tenant, assert_error, bearer
from tests.server.test_admin import operator_token
from tests.server.webhook_receiver import Receiver, webhook_receiver
from tests.storage.conftest import (
    BACKENDS,
    backend_settings,
    postgres_url,  # noqa: F401 (a fixture used by name)
)

ADMIN = "/api/v1/admin"
PANEL = "/api/v1/operator"
START = 1_800_000_000.0
EVERY_EVENT = [
    "conversation.created",
    "conversation.updated",
    "conversation.status_changed",
    "message.created",
    "conversation.control_changed",
]
MAX_ATTEMPTS = 3


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    # The test runs the worker itself, with a clock it moves past each backoff.
    return backend_settings(
        request, tmp_path, LIVEOP_ENCRYPTION_KEYS=new_key(), LIVEOP_OUTBOUND_WORKER="0"
    )


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now


@dataclass
class Rig:
    client: httpx.AsyncClient
    services: Services
    tenant: Tenant
    receiver: Receiver
    worker: WebhookWorker
    clock: Clock
    webhook: dict[str, Any]
    operator: dict[str, str]

    @property
    def admin(self) -> dict[str, str]:
        return {"X-Api-Key": self.tenant.api_key}

    async def deliver(self) -> None:
        """Runs the worker until it claims nothing even past every backoff."""
        idle = 0
        while idle < 2:
            if await self.worker.run_once():
                idle = 0
            else:
                idle += 1
                self.clock.now += 3600

    async def panel(self, path: str, **body: Any) -> None:
        response = await self.client.post(f"{PANEL}/{path}", headers=self.operator, json=body)
        assert response.status_code == 200, response.text

    async def log(self) -> list[dict[str, Any]]:
        response = await self.client.get(
            f"{ADMIN}/webhooks/{self.webhook['id']}/deliveries", headers=self.admin
        )
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["deliveries"]
        return found

    async def hook(self) -> dict[str, Any]:
        response = await self.client.get(f"{ADMIN}/webhooks", headers=self.admin)
        assert response.status_code == 200, response.text
        [found] = response.json()["webhooks"]
        assert isinstance(found, dict)
        return found


async def create_webhook(
    client: httpx.AsyncClient, tenant: Tenant, url: str, events: list[str]
) -> dict[str, Any]:
    response = await client.post(
        f"{ADMIN}/webhooks",
        headers={"X-Api-Key": tenant.api_key},
        json={"url": url, "events": events},
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    assert body["success"] is True
    webhook: dict[str, Any] = body["webhook"]
    return webhook


@pytest.fixture
async def rig(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> AsyncIterator[Rig]:
    clock = Clock()
    worker = WebhookWorker(
        services.store, services.webhooks, lease_s=30.0, clock=clock, jitter=lambda: 0.0,
        max_attempts=MAX_ATTEMPTS,
    )  # fmt: skip
    token = await operator_token(client, tenant)
    with webhook_receiver(clock) as receiver:
        webhook = await create_webhook(client, tenant, receiver.url, EVERY_EVENT)
        receiver.secret = webhook["secret"]
        yield Rig(client, services, tenant, receiver, worker, clock, webhook, bearer(token))
    await worker.stop()


async def test_an_operator_speaking_reaches_the_receiver_signed_and_in_order(rig: Rig) -> None:
    assert rig.webhook["secret"].startswith("whsec_") and rig.webhook["events"] == EVERY_EVENT
    convo = await rig.tenant.visitor_says("Hello, is anyone there?")
    await rig.panel("message", conversation_id=convo, content="Hi, I am Alex")
    await rig.panel("note", conversation_id=convo, content="private: VIP customer")
    await rig.deliver()

    assert rig.receiver.bad_signatures == 0
    with rig.receiver.lock:
        deliveries = list(rig.receiver.deliveries)
    assert deliveries[0]["event"] == "conversation.created"
    assert all(set(d) == {"id", "event", "created", "account_id", "data"} for d in deliveries)
    assert {d["account_id"] for d in deliveries} == {rig.tenant.account_id}
    assert len({d["id"] for d in deliveries}) == len(deliveries)
    messages = [
        d["data"]["message"]["content"] for d in deliveries if d["event"] == "message.created"
    ]
    # The private note is no message.created.
    assert messages == ["Hello, is anyone there?", "Hi, I am Alex"]
    control = [d["data"] for d in deliveries if d["event"] == "conversation.control_changed"]
    assert control[-1]["control"] == "human"
    assert control[-1]["operator_id"] == rig.tenant.operator_id
    # The operator's message and the control change both come after the visitor's message.
    events = [d["event"] for d in deliveries]
    visitor_message = events.index("message.created")
    assert events.index("conversation.control_changed", visitor_message) > visitor_message
    assert "conversation.status_changed" in events

    # The log shows each delivery with the receiver's status code.
    log = await rig.log()
    assert len(log) == len(deliveries)
    assert [d["id"] for d in reversed(log)] == [d["id"] for d in deliveries]
    assert all(d["state"] == "sent" and d["attempts"][0]["status_code"] == 200 for d in log)


async def test_a_failing_receiver_delays_but_loses_nothing_and_keeps_order(rig: Rig) -> None:
    convo = await rig.tenant.visitor_says("first")
    rig.receiver.failing_with = 503
    for n in range(2, 5):
        await rig.tenant.visitor_says(f"message {n}", convoID=convo)
    for _ in range(MAX_ATTEMPTS - 1):  # refused, each time, and the later ones wait behind it
        assert await rig.worker.run_once() == 1
        assert await rig.worker.run_once() == 0
        rig.clock.now += 3600
    assert rig.receiver.refused == MAX_ATTEMPTS - 1 and rig.receiver.deliveries == []
    rig.receiver.failing_with = None
    await rig.deliver()

    with rig.receiver.lock:
        texts = [
            d["data"]["message"]["content"]
            for d in rig.receiver.deliveries
            if d["event"] == "message.created"
        ]
    assert texts == ["first", "message 2", "message 3", "message 4"]
    first = (await rig.log())[-1]
    assert first["event"] == "conversation.created" and first["state"] == "sent"
    assert [a["status_code"] for a in first["attempts"]] == [200, 503, 503]
    assert "answered 503" in first["attempts"][1]["error"]
    assert (await rig.hook())["enabled"] is True


async def test_repeated_failure_disables_the_webhook_until_re_enabled_and_replayed(
    rig: Rig,
) -> None:
    await rig.tenant.visitor_says("Hello")
    rig.receiver.failing_with = 500
    await rig.deliver()
    assert rig.receiver.refused == MAX_ATTEMPTS
    hook = await rig.hook()
    assert hook["enabled"] is False
    assert f"failed {MAX_ATTEMPTS} times" in hook["disabled_reason"]
    failed = (await rig.log())[-1]
    assert failed["state"] == "failed" and len(failed["attempts"]) == MAX_ATTEMPTS

    # Disabled: nothing is attempted, and nothing new is queued for it.
    rig.receiver.failing_with = None
    await rig.tenant.visitor_says("Anyone?")
    await rig.deliver()
    assert rig.receiver.deliveries == []

    patched = await rig.client.patch(
        f"{ADMIN}/webhooks/{rig.webhook['id']}", headers=rig.admin, json={"enabled": True}
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["webhook"]["disabled_reason"] is None
    assert "secret" not in patched.json()["webhook"]
    replayed = await rig.client.post(
        f"{ADMIN}/webhooks/{rig.webhook['id']}/deliveries/{failed['id']}/replay",
        headers=rig.admin,
    )
    assert replayed.status_code == 200, replayed.text
    await rig.deliver()
    # The replay comes first, with the same id (a receiver that saw it already can tell);
    # what waited queued behind it follows; what happened while disabled was never queued.
    delivered = rig.receiver.deliveries
    assert delivered[0]["id"] == failed["id"]
    assert delivered[0]["event"] == "conversation.created"
    texts = [d["data"]["message"]["content"] for d in delivered if d["event"] == "message.created"]
    assert texts == ["Hello"]
    assert (await rig.log())[-1]["state"] == "sent"


async def test_accounts_never_see_each_others_webhooks_or_deliveries(
    rig: Rig, other_tenant: Tenant
) -> None:
    await other_tenant.visitor_says("Globex visitor")
    await rig.deliver()
    assert rig.receiver.deliveries == []
    other = {"X-Api-Key": other_tenant.api_key}
    hook = rig.webhook["id"]
    listed = await rig.client.get(f"{ADMIN}/webhooks", headers=other)
    assert listed.json()["webhooks"] == []
    for response in (
        await rig.client.get(f"{ADMIN}/webhooks/{hook}/deliveries", headers=other),
        await rig.client.patch(f"{ADMIN}/webhooks/{hook}", headers=other, json={"enabled": False}),
        await rig.client.delete(f"{ADMIN}/webhooks/{hook}", headers=other),
    ):
        assert_error(response, 404, "webhook_not_found")
    await rig.tenant.visitor_says("Acme visitor")
    await rig.deliver()
    [delivery] = (await rig.log())[:1]
    replay = await rig.client.post(
        f"{ADMIN}/webhooks/{hook}/deliveries/{delivery['id']}/replay", headers=other
    )
    assert_error(replay, 404, "delivery_not_found")
    # An operator who is no admin reads none of it either.
    assert (await rig.client.get(f"{ADMIN}/webhooks", headers=rig.operator)).status_code == 403


async def test_the_secret_is_sealed_at_rest_and_shown_only_once(rig: Rig) -> None:
    [stored] = await rig.services.store.list_webhooks(rig.tenant.account_id)
    assert rig.webhook["secret"] not in stored.secret
    assert rig.services.webhooks.secret(stored.secret) == rig.webhook["secret"]
    assert "secret" not in await rig.hook()
    deleted = await rig.client.delete(f"{ADMIN}/webhooks/{rig.webhook['id']}", headers=rig.admin)
    assert deleted.status_code == 200
    assert await rig.services.store.list_webhooks(rig.tenant.account_id) == []


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"url": "ftp://example.test/hook", "events": ["message.created"]}, "invalid_field"),
        ({"url": "https://user:pw@example.test/h", "events": ["message.created"]}, "invalid_field"),
        ({"url": "https://example.test/\x00", "events": ["message.created"]}, "invalid_field"),
        (
            {"url": "https://example.test/" + "a" * 600, "events": ["message.created"]},
            "invalid_field",
        ),
        ({"url": ["https://example.test/h"], "events": ["message.created"]}, "invalid_field"),
        ({"url": "https://example.test/h", "events": ["message.deleted"]}, "invalid_field"),
        ({"url": "https://example.test/h", "events": []}, "invalid_field"),
        ({"url": "https://example.test/h", "events": "message.created"}, "invalid_field"),
        ({"url": "https://example.test/h", "events": [["message.created"]]}, "invalid_field"),
        ({"url": "https://example.test/h", "events": ["x"] * 1000}, "invalid_field"),
        ({"events": ["message.created"]}, "missing_field"),
    ],
)
async def test_bad_input_is_a_clear_4xx(rig: Rig, body: dict[str, Any], code: str) -> None:
    response = await rig.client.post(f"{ADMIN}/webhooks", headers=rig.admin, json=body)
    assert_error(response, 400, code)
    assert len(await rig.services.store.list_webhooks(rig.tenant.account_id)) == 1


@pytest.mark.parametrize(
    "path",
    [
        "/webhooks/99999999999999999999999/deliveries",
        "/webhooks/\u0661/deliveries",
        "/webhooks/1/deliveries/whd_x%00y/replay",
        "/webhooks/1/deliveries/" + "d" * 100 + "/replay",
    ],
)
async def test_bad_ids_are_a_clear_4xx(rig: Rig, path: str) -> None:
    method = "POST" if path.endswith("replay") else "GET"
    response = await rig.client.request(method, ADMIN + path, headers=rig.admin)
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["success"] is False
