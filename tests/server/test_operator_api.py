"""The Aimylogic Operator API (issue 16, seed 004) against a bot platform on loopback: the bot
hands a user over, operators answer, and every answer, transfer and close reaches the
platform's webhook through the outbound worker, in order, however long the webhook fails."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.channel_delivery import ChannelBot
from server.crypto import new_key
from server.outbound import OutboundWorker
from server.services import Services
from server.settings import Settings
from tests.conftest import Tenant, assert_error, bearer
from tests.server.bot_platform import Platform, bot_platform
from tests.server.test_admin import admin_token, operator_token
from tests.storage.conftest import (
    BACKENDS,
    backend_settings,
    postgres_url,  # noqa: F401 (a fixture used by name)
)

ADMIN = "/api/v1/admin"
PANEL = "/api/v1/operator"
PUBLIC_URL = "https://chat.example.test"
AVATAR = "https://cdn.example.test/alex.png"
START = 1_800_000_000.0


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
    platform: Platform
    channel: dict[str, Any]
    worker: OutboundWorker
    clock: Clock
    billing: int
    sales: int
    operator: dict[str, str]

    async def deliver(self) -> None:
        """Runs the worker until nothing is queued, moving its clock past every backoff."""
        while True:
            claimed = await self.worker.run_once()
            queued = await self.services.store.queued_outbound()
            if not claimed and not queued.get("bot"):
                return
            if not claimed:
                self.clock.now += 3600

    async def panel(self, path: str, **body: Any) -> dict[str, Any]:
        response = await self.client.post(f"{PANEL}/{path}", headers=self.operator, json=body)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def conversation(self, user_id: str) -> dict[str, Any]:
        found = await self.services.store.bot_user_conversation(
            self.tenant.account_id, self.channel["id"], user_id
        )
        assert found is not None
        response = await self.client.get(f"{PANEL}/conversation/{found.id}", headers=self.operator)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


async def _team(client: httpx.AsyncClient, tenant: Tenant, name: str) -> int:
    response = await client.post(
        f"{ADMIN}/teams",
        headers={"X-Api-Key": tenant.api_key},
        json={"name": name, "member_ids": [tenant.operator_id]},
    )
    assert response.status_code == 201, response.text
    team_id: int = response.json()["team"]["id"]
    return team_id


@pytest.fixture
async def rig(client: httpx.AsyncClient, services: Services, tenant: Tenant) -> AsyncIterator[Rig]:
    admin = {"X-Api-Key": tenant.api_key}
    billing, sales = await _team(client, tenant, "Billing"), await _team(client, tenant, "Sales")
    patched = await client.patch(
        f"{ADMIN}/operators/{tenant.operator_id}",
        headers=admin,
        json={"name": "Alex Moreau", "avatar_url": AVATAR},
    )
    assert patched.status_code == 200, patched.text
    created = await client.post(
        f"{ADMIN}/channels",
        headers=admin,
        json={"kind": "bot", "name": "Aimylogic", "public_url": PUBLIC_URL + "/"},
    )
    assert created.status_code == 201, created.text
    channel = created.json()["channel"]
    assert channel["api_url"] == f"{PUBLIC_URL}/operator-api/{channel['key']}"
    clock = Clock()
    bots = ChannelBot(services.store, services.channels, timeout_s=5.0)
    worker = OutboundWorker(
        services.store, services.feed, {"bot": bots}, lease_s=30.0, clock=clock,
        jitter=lambda: 0.0, unbound=(),
    )  # fmt: skip
    token = await operator_token(client, tenant)
    with bot_platform(client, channel["api_url"], "platform-key-1") as platform:
        await platform.set_webhook()
        yield Rig(
            client, services, tenant, platform, channel, worker, clock, billing, sales,
            bearer(token),
        )  # fmt: skip
    await bots.aclose()


async def _hand_over(rig: Rig, user_id: str = "u-1") -> dict[str, Any]:
    await rig.platform.ok(
        "selectDestination",
        userId=user_id,
        destinationId=str(rig.billing),
        userName="Maria Lopez",
        attributes={"plan": "gold", "orders": 3},
        hiddenAttributes={"crm_token": "hidden-42"},
        customData={
            "history": [
                {"sender": "client", "text": "I was charged twice"},
                {"sender": "bot", "text": "Let me find a person who can help"},
            ],
            "locale": "es",
        },
    )
    return await rig.conversation(user_id)


def admin_key(rig: Rig) -> dict[str, str]:
    """Channel listings show keys: admins and the API key only (issue 14)."""
    return {"X-Api-Key": rig.tenant.api_key}


async def test_a_handed_over_user_is_answered_transferred_and_closed_through_the_webhook(
    rig: Rig,
) -> None:
    platform = rig.platform
    assert {d["name"]: d["hasOnline"] for d in await platform.destinations()} == {
        "Billing": False,
        "Sales": False,
    }
    operator = await rig.services.store.get_operator(rig.tenant.account_id, rig.tenant.operator_id)
    assert operator is not None
    await rig.services.availability.heartbeat(operator, [1])
    destinations = await platform.destinations()
    assert {"destinationId": str(rig.billing), "name": "Billing", "hasOnline": True} in (
        destinations
    )

    view = await _hand_over(rig)
    convo = view["conversation"]
    assert convo["team_id"] == rig.billing and convo["control"] == "queued"
    assert convo["contact_data"]["name"] == "Maria Lopez"
    assert convo["attributes"] == {"plan": "gold", "orders": "3"}
    assert "hidden-42" not in orjson.dumps(view).decode()
    assert [(m["sender"], m["content"]) for m in view["messages"]] == [
        ("visitor", "I was charged twice"),
        ("bot", "Let me find a person who can help"),
    ]
    # The conversation is in Billing's queue, as its operators list it.
    inbox = await rig.client.get(
        f"{PANEL}/inbox", headers=rig.operator, params={"team_id": rig.billing}
    )
    assert [c["id"] for c in inbox.json()["conversations"]] == [convo["id"]]

    await platform.ok("sendText", userId="u-1", text="Are you there?")
    await platform.ok("sendFile", userId="u-1", url="https://files.example.test/receipt.pdf",
                      fileName="receipt.pdf", size=2048)  # fmt: skip
    # The bot may not speak once it has handed the user over.
    refused = await rig.tenant.command(
        "sendmessage", convoID=convo["id"], sender="bot", message="Anything else?"
    )
    assert_error(refused, 409, "bot_stopped")

    await rig.panel("message", conversation_id=convo["id"], content="Hola Maria, let me check")
    await rig.panel(
        "message", conversation_id=convo["id"], content="Your refund",
        image_url="https://files.example.test/refund%20note.png",
    )  # fmt: skip
    await rig.panel(f"transfer/{convo['id']}", team_id=rig.sales)
    await rig.panel(f"close/{convo['id']}")
    await rig.deliver()

    view = await rig.conversation("u-1")
    ids = {m["seq"]: m["id"] for m in view["messages"]}
    assert view["conversation"]["control"] == "closed"
    assert [m["content"] for m in view["messages"][2:4]] == [
        "Are you there?",
        "receipt.pdf (2048 bytes)",
    ]
    employee = {
        "employeeId": str(rig.tenant.operator_id),
        "firstName": "Alex",
        "lastName": "Moreau",
        "avatarUrl": AVATAR,
    }
    assert platform.inbox.events == [
        {"id": ids[5], "userId": "u-1", "type": "TextMessage", "text": "Hola Maria, let me check",
         "employee": employee},
        {"id": ids[6], "userId": "u-1", "type": "FileMessage",
         "url": "https://files.example.test/refund%20note.png", "name": "refund note.png",
         "size": 0, "comment": "Your refund", "employee": employee},
        {"id": ids[7], "userId": "u-1", "type": "SelectDestination",
         "destination": {"destinationId": str(rig.sales), "name": "Sales", "hasOnline": True}},
        {"id": ids[8], "userId": "u-1", "type": "Closed", "employee": employee},
    ]  # fmt: skip
    health = (await rig.client.get(f"{ADMIN}/channels", headers=admin_key(rig))).json()
    line = health["channels"][0]["health"]
    assert line["last_inbound"] is not None and line["last_outbound"] is not None
    assert line["last_error"] is None


async def test_a_failing_webhook_delays_events_but_loses_none_and_keeps_their_order(
    rig: Rig,
) -> None:
    convo = (await _hand_over(rig))["conversation"]
    rig.platform.inbox.failing_with = 503
    for n in range(1, 4):
        await rig.panel("message", conversation_id=convo["id"], content=f"answer {n}")
    for _ in range(3):  # three attempts at the first answer, each refused
        assert await rig.worker.run_once() == 1
        assert await rig.worker.run_once() == 0  # backing off; the later ones wait behind it
        rig.clock.now += 3600
    assert rig.platform.inbox.refused == 3 and rig.platform.inbox.events == []
    channels = (await rig.client.get(f"{ADMIN}/channels", headers=admin_key(rig))).json()
    assert "answered 503" in channels["channels"][0]["health"]["last_error"]

    rig.platform.inbox.failing_with = None
    await rig.deliver()
    texts = [e["text"] for e in rig.platform.inbox.of_type("TextMessage")]
    assert texts == ["answer 1", "answer 2", "answer 3"]


async def test_until_the_platform_sets_its_webhook_events_wait(
    client: httpx.AsyncClient, rig: Rig
) -> None:
    convo = (await _hand_over(rig))["conversation"]
    await rig.services.channels.set_bot_webhook(
        await rig.services.channels.get(rig.tenant.account_id, rig.channel["id"]),
        rig.platform.webhook.replace("operatorapi/", "nowhere/"),
    )
    await rig.panel("message", conversation_id=convo["id"], content="still there?")
    assert await rig.worker.run_once() == 1
    assert rig.platform.inbox.events == []
    await rig.platform.set_webhook()
    await rig.deliver()
    assert [e["text"] for e in rig.platform.inbox.of_type("TextMessage")] == ["still there?"]


async def test_control_passes_to_the_human_who_speaks_and_is_announced(rig: Rig) -> None:
    convo = (await _hand_over(rig))["conversation"]
    await rig.panel("message", conversation_id=convo["id"], content="I have it")
    events = await rig.services.store.list_events(rig.tenant.account_id, after_seq=0, limit=100)
    changes = [orjson.loads(e.data or "{}") for e in events if "control" in e.kind]
    assert [(c["previous"], c["control"]) for c in changes] == [
        ("bot", "queued"),
        ("queued", "human"),
    ]
    assert changes[-1]["operator_id"] == rig.tenant.operator_id
    # The user is a contact proven by the channel: the same one on every hand-over.
    stored = await rig.services.store.bot_user_conversation(
        rig.tenant.account_id, rig.channel["id"], "u-1"
    )
    assert stored is not None and stored.contact_id is not None
    contact = await rig.services.store.get_contact(rig.tenant.account_id, stored.contact_id)
    assert contact is not None
    assert [(i.identity.kind, i.identity.value, i.verified) for i in contact.identities] == [
        ("bot", f"{rig.channel['id']}:u-1", True)
    ]
    # A human keeps it when the platform hands the same user over again.
    await rig.platform.ok("selectDestination", userId="u-1", destinationId=str(rig.sales))
    again = (await rig.conversation("u-1"))["conversation"]
    assert again["control"] == "human" and again["team_id"] == rig.sales


async def test_handing_over_a_conversation_the_user_had_to_an_auto_assigning_team_gives_it_out(
    rig: Rig,
) -> None:
    patched = await rig.client.patch(
        f"{ADMIN}/teams/{rig.billing}", headers=admin_key(rig), json={"auto_assign": True}
    )
    assert patched.status_code == 200, patched.text
    await rig.panel("heartbeat", site_ids=[1])  # Alex, Billing's member, has the inbox open
    await rig.platform.ok("sendText", userId="u-9", text="Hello?")
    assert (await rig.conversation("u-9"))["conversation"]["operator_id"] is None
    await rig.platform.ok("selectDestination", userId="u-9", destinationId=str(rig.billing))
    handed = (await rig.conversation("u-9"))["conversation"]
    assert (handed["team_id"], handed["operator_id"]) == (rig.billing, rig.tenant.operator_id)


async def test_the_customer_closing_resolves_it_and_a_new_message_reopens_it_queued(
    rig: Rig,
) -> None:
    await _hand_over(rig)
    await rig.platform.ok("closeChat", userId="u-1", text="The user closed the dialog")
    view = await rig.conversation("u-1")
    assert view["conversation"]["status"] == "resolved"
    assert view["conversation"]["control"] == "closed"
    assert view["messages"][-1]["sender"] == "system"
    assert view["messages"][-1]["content"] == "The user closed the dialog"
    await rig.platform.ok("closeChat", userId="u-1", text="again")  # nothing more to close
    await rig.platform.ok("closeChat", userId="never-seen", text="bye")
    await rig.platform.ok("sendText", userId="u-1", text="one more thing")
    reopened = (await rig.conversation("u-1"))["conversation"]
    assert (reopened["status"], reopened["control"]) == ("open", "queued")
    await rig.deliver()
    assert rig.platform.inbox.events == []  # the customer's own doings are not echoed


async def test_a_rotated_key_stops_the_old_api_url(rig: Rig) -> None:
    admin = bearer(await admin_token(rig.client, rig.tenant))
    response = await rig.client.post(
        f"{ADMIN}/channels/{rig.channel['id']}/rotate-key", headers=admin
    )
    assert response.status_code == 200, response.text
    fresh = response.json()["channel"]
    assert fresh["key"] != rig.channel["key"]
    assert fresh["api_url"] == f"{PUBLIC_URL}/operator-api/{fresh['key']}"
    old = await rig.platform.call("sendText", {"userId": "u-1", "text": "hi"})
    assert_error(old, 404, "channel_not_found")
    moved = Platform(rig.client, fresh["api_url"], rig.platform.webhook, rig.platform.inbox)
    await moved.ok("sendText", userId="u-1", text="hi")


@pytest.mark.parametrize(
    ("method", "body", "code"),
    [
        ("sendText", {"text": "hi"}, "missing_field"),
        ("sendText", {"userId": "u-1"}, "missing_field"),
        ("sendText", {"userId": ["u-1"], "text": "hi"}, "invalid_field"),
        ("sendText", {"userId": "u\x00-1", "text": "hi"}, "invalid_characters"),
        ("sendText", {"userId": "u-1", "text": "a\x00b"}, "invalid_characters"),
        ("sendText", {"userId": "u" * 129, "text": "hi"}, "invalid_field"),
        ("sendFile", {"userId": "u-1", "url": "ftp://x/y"}, "invalid_image_url"),
        ("sendFile", {"userId": "u-1", "url": "https://x/y", "size": -1}, "invalid_field"),
        ("sendFile", {"userId": "u-1", "url": "https://x/y", "size": 10**30}, "invalid_field"),
        ("selectDestination", {"userId": "u-1"}, "missing_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "\u0661"}, "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "9" * 40}, "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": [1]}, "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "999"}, "unknown_destination"),
        ("selectDestination", {"userId": "u-1", "destinationId": "1", "attributes": [1]},
         "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "1", "attributes": "{no"},
         "invalid_json"),
        ("selectDestination", {"userId": "u-1", "destinationId": "1",
                               "attributes": {"a": {"nested": 1}}}, "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "1",
                               "customData": {"history": [{"sender": "x", "text": "y"}]}},
         "invalid_field"),
        ("selectDestination", {"userId": "u-1", "destinationId": "1",
                               "customData": {"blob": "x" * 20_000}}, "invalid_field"),
        ("setWebhook", {"url": "javascript:alert(1)"}, "invalid_field"),
        ("setWebhook", {}, "missing_field"),
    ],
)  # fmt: skip
async def test_malformed_bodies_get_a_clear_400(
    rig: Rig, method: str, body: dict[str, Any], code: str
) -> None:
    if body.get("destinationId") == "1":
        body = {**body, "destinationId": str(rig.billing)}
    response = await rig.platform.call(method, body)
    assert_error(response, 400, code)
    assert await rig.services.store.bot_user_conversation(
        rig.tenant.account_id, rig.channel["id"], "u-1"
    ) is None  # fmt: skip


async def test_bodies_that_are_not_objects_and_unknown_keys_are_refused(rig: Rig) -> None:
    path = f"/operator-api/{rig.channel['key']}/sendText"
    for raw in (b"[1, 2]", b"{not json", b'"text"'):
        response = await rig.client.post(
            path, content=raw, headers={"Content-Type": "application/json"}
        )
        assert_error(response, 400, "invalid_json")
    for key in ("no-such-key", "x" * 500):
        response = await rig.client.post(f"/operator-api/{key}/sendText", json={"userId": "u"})
        assert_error(response, 404, "channel_not_found")
    sms = await rig.client.post(
        f"{ADMIN}/channels",
        headers={"X-Api-Key": rig.tenant.api_key},
        json={"kind": "sms", "name": "Line", "account_sid": "AC" + "0" * 32,
              "auth_token": "t" * 32, "from": "+15550100100", "public_url": PUBLIC_URL},
    )  # fmt: skip
    response = await rig.client.get(f"/operator-api/{sms.json()['channel']['key']}/getDestinations")
    assert_error(response, 404, "channel_not_found")
