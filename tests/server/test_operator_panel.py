"""Seed 001's operator panel, messaging, lifecycle and translation: ``/api/v1/operator/*``
driven with an operator's JWT and checked on every surface the visitor and operators read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.services import Services
from server.settings import load_settings
from tests.adapters.providers import FakeLibreTranslate, running
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer, make_tenant
from tests.server.realtime_clients import Socket, SSEClient, serve, sse, websocket

ROOT = "/api/v1/operator"
MAX_MESSAGE_CHARS = 5000
IMAGE = "https://cdn.example.test/photo.png"
SESSION = "sess_0123456789"


@dataclass
class Panel:
    """One logged-in operator driving the panel over HTTP."""

    client: httpx.AsyncClient
    token: str
    operator_id: int

    @property
    def headers(self) -> dict[str, str]:
        return bearer(self.token)

    async def post(self, path: str, **body: Any) -> httpx.Response:
        return await self.client.post(f"{ROOT}/{path}", json=body, headers=self.headers)

    async def ok(self, path: str, **body: Any) -> dict[str, Any]:
        return _succeeded(await self.post(path, **body))

    async def view(self, convo_id: str, **params: Any) -> dict[str, Any]:
        """GET conversation/{id}: details and messages (this marks them read)."""
        response = await self.client.get(
            f"{ROOT}/conversation/{convo_id}", params=params, headers=self.headers
        )
        return _succeeded(response)


def _succeeded(response: httpx.Response) -> dict[str, Any]:
    body: dict[str, Any] = response.json()
    assert response.status_code == 200, body
    assert body["success"] is True
    return body


async def login(tenant: Tenant, who: str, operator_id: int) -> Panel:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{who}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return Panel(tenant.client, _succeeded(response)["token"], operator_id)


@pytest.fixture
async def alex(tenant: Tenant) -> Panel:
    """The plain operator."""
    return await login(tenant, "alex", tenant.operator_id)


@pytest.fixture
async def ada(tenant: Tenant) -> Panel:
    """The admin."""
    return await login(tenant, "ada", tenant.admin_id)


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def chat(tenant: Tenant, text: str = "Hello", **fields: Any) -> str:
    """A conversation the visitor opened from the chat window."""
    return await tenant.visitor_says(text, sourceApp="liveoperator", **fields)


def window(tenant: Tenant, path: str) -> str:
    return f"/{tenant.account_id}/liveoperator/{path}"


async def chatpoll(tenant: Tenant, **params: Any) -> dict[str, Any]:
    return _succeeded(await tenant.client.get(window(tenant, "chatpoll"), params=params))


async def postmessage(tenant: Tenant, convo_id: str, text: str) -> httpx.Response:
    return await tenant.client.post(
        window(tenant, "postmessage"), data={"convoID": convo_id, "message": text}
    )


async def stored(services: Services, tenant: Tenant, convo_id: str) -> Any:
    found = await services.store.get_conversation(tenant.account_id, convo_id)
    assert found is not None
    return found


def visitor_socket(base: str, tenant: Tenant) -> str:
    return f"ws://{base}/{tenant.account_id}/liveoperator/ws"


async def follow(ws: Socket, convo_id: str, seq: int) -> None:
    await ws.send(type="hello", convoID=convo_id, seq=seq)
    assert (await ws.until("ready"))["convoID"] == convo_id


async def frames_until_message(ws: Socket) -> list[dict[str, Any]]:
    """Every frame up to and including the next message:new."""
    frames = [await ws.recv()]
    while frames[-1]["type"] != "message:new":
        frames.append(await ws.recv())
    return frames


# messaging


async def test_operator_message_reaches_the_visitor_and_claims_the_conversation(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    sent = (await alex.ok("message", conversation_id=convo, content="Hi, this is Alex."))["message"]
    assert (sent["seq"], sent["sender"], sent["operator_id"]) == (2, "operator", alex.operator_id)
    assert (sent["content"], sent["operator_name"], sent["private"]) == (
        "Hi, this is Alex.",
        "Alex",
        False,
    )
    conversation = (await alex.view(convo))["conversation"]
    assert (conversation["status"], conversation["mode"], conversation["operator_id"]) == (
        "active",
        "operator",
        alex.operator_id,
    )
    assert conversation["preview"] == "Hi, this is Alex."
    polled = await chatpoll(tenant, convoID=convo)
    assert [(m["message"], m["operatorName"]) for m in polled["messages"]] == [
        ("Hello", None),
        ("Hi, this is Alex.", "Alex"),
    ]


@pytest.mark.parametrize("content", ["", "Look at this"])
async def test_operator_message_may_carry_an_image(
    tenant: Tenant, alex: Panel, content: str
) -> None:
    convo = await chat(tenant)
    sent = await alex.ok("message", conversation_id=convo, content=content, image_url=IMAGE)
    assert (sent["message"]["content"], sent["message"]["image_url"]) == (content, IMAGE)
    assert (await alex.view(convo))["conversation"]["preview"] == (content or "[image]")
    last = (await chatpoll(tenant, convoID=convo))["messages"][-1]
    assert (last["message"], last["imageURL"]) == (content, IMAGE)


async def test_canned_response_expands_its_macros(tenant: Tenant, alex: Panel, ada: Panel) -> None:
    created = await tenant.client.post(
        "/api/v1/admin/canned",
        json={"name": "greet", "message": "Hello {fname}, {operator} here. {unknown}"},
        headers=ada.headers,
    )
    assert created.status_code == 201, created.json()
    convo = await chat(tenant, userInfo={"fname": "Jane"})
    sent = await alex.ok("message", conversation_id=convo, canned_id=created.json()["canned"]["id"])
    assert sent["message"]["content"] == "Hello Jane, Alex here. {unknown}"


async def test_a_resent_message_is_stored_once(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    first = await alex.ok("message", conversation_id=convo, content="Hi", client_msg_id="op-1")
    again = await alex.ok("message", conversation_id=convo, content="Hi", client_msg_id="op-1")
    assert again["message"]["id"] == first["message"]["id"]
    assert (await alex.view(convo))["conversation"]["last_seq"] == 2


async def test_unknown_canned_response_is_404(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    response = await alex.post("message", conversation_id=convo, canned_id=99)
    assert_error(response, 404, "canned_not_found")


@pytest.mark.parametrize(
    ("change", "code"),
    [
        pytest.param({"conversation_id": None}, "missing_field", id="no-conversation"),
        pytest.param({"conversation_id": ["x"]}, "invalid_field", id="conversation-list"),
        pytest.param({"conversation_id": "x" * 65}, "invalid_field", id="conversation-long"),
        pytest.param({"content": None}, "empty_message", id="no-content"),
        pytest.param({"content": "   "}, "empty_message", id="blank-content"),
        pytest.param({"content": "x" * (MAX_MESSAGE_CHARS + 1)}, "message_too_long", id="long"),
        pytest.param({"content": "a\x00b"}, "invalid_characters", id="nul"),
        pytest.param({"content": ["hi"]}, "invalid_field", id="content-list"),
        pytest.param({"content": {"text": "hi"}}, "invalid_field", id="content-object"),
        pytest.param({"image_url": "javascript:alert(1)"}, "invalid_image_url", id="javascript"),
        pytest.param({"image_url": "data:image/png;base64,AAAA"}, "invalid_image_url", id="data"),
        pytest.param({"image_url": "ftp://x.test/a.png"}, "invalid_image_url", id="ftp"),
        pytest.param({"image_url": IMAGE + "\n"}, "invalid_image_url", id="url-newline"),
        pytest.param(
            {"image_url": "https://x.test/" + "a" * 2048}, "invalid_image_url", id="long-url"
        ),
        pytest.param({"image_url": True}, "invalid_field", id="image-bool"),
        pytest.param({"canned_id": "first"}, "invalid_field", id="canned-text"),
        pytest.param({"canned_id": 0}, "invalid_field", id="canned-zero"),
        pytest.param({"client_msg_id": "x" * 129}, "invalid_field", id="long-client-msg-id"),
    ],
)
async def test_bad_operator_messages_are_refused_and_store_nothing(
    tenant: Tenant, alex: Panel, change: dict[str, Any], code: str
) -> None:
    convo = await chat(tenant)
    body = {"conversation_id": convo, "content": "hi", **change}
    assert_error(await alex.post("message", **body), 400, code)
    assert (await alex.view(convo))["conversation"]["last_seq"] == 1


async def test_message_to_a_conversation_not_in_the_account_is_404(
    tenant: Tenant, other_tenant: Tenant, alex: Panel
) -> None:
    theirs = await chat(other_tenant)
    for convo in ("no-such-conversation", theirs):
        response = await alex.post("message", conversation_id=convo, content="hi")
        assert_error(response, 404, "conversation_not_found")
    assert (await other_tenant.ok("gethistory", convoID=theirs))["conversation"]["lastSeq"] == 1


# accept and close


async def test_accept_takes_over_from_the_bot(tenant: Tenant, alex: Panel) -> None:
    convo = await tenant.visitor_says("Hello")
    await tenant.ok("sendmessage", convoID=convo, sender="bot", message="I am the bot")
    conversation = (await alex.ok(f"accept/{convo}"))["conversation"]
    assert (conversation["mode"], conversation["status"], conversation["operator_id"]) == (
        "operator",
        "active",
        alex.operator_id,
    )
    bot = await tenant.command("sendmessage", convoID=convo, sender="bot", message="Still here")
    assert_error(bot, 409, "bot_stopped")


async def test_accept_keeps_an_existing_owner(tenant: Tenant, alex: Panel, ada: Panel) -> None:
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Mine")
    conversation = (await ada.ok(f"accept/{convo}"))["conversation"]
    assert conversation["operator_id"] == alex.operator_id


async def test_accept_reopens_a_resolved_conversation(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    await alex.ok(f"close/{convo}")
    conversation = (await alex.ok(f"accept/{convo}"))["conversation"]
    assert (conversation["status"], conversation["resolved_at"]) == ("active", None)


async def test_close_resolves_until_the_visitor_writes_again(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Anything else?")
    closed = (await alex.ok(f"close/{convo}"))["conversation"]
    assert closed["status"] == "resolved" and closed["resolved_at"] >= closed["created"]
    again = (await alex.ok(f"close/{convo}"))["conversation"]
    assert again["resolved_at"] == closed["resolved_at"]
    assert (await postmessage(tenant, convo, "One more thing")).status_code == 200
    reopened = (await alex.view(convo))["conversation"]
    assert (reopened["status"], reopened["resolved_at"]) == ("open", None)
    assert reopened["operator_id"] == alex.operator_id
    assert (await chatpoll(tenant, convoID=convo))["status"] == "open"


@pytest.mark.parametrize("action", ["accept", "close", "transfer"])
async def test_lifecycle_of_a_missing_conversation_is_404(
    tenant: Tenant, alex: Panel, action: str
) -> None:
    for convo in ("no-such-conversation", "x" * 65):
        response = await alex.post(f"{action}/{convo}", operator_id=tenant.admin_id)
        assert_error(response, 404, "conversation_not_found")


# transfer


async def test_transfer_to_another_operator(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Let me find Ada")
    moved = (await alex.ok(f"transfer/{convo}", operator_id=tenant.admin_id))["conversation"]
    assert moved["operator_id"] == tenant.admin_id


async def test_transfer_to_a_team_queues_it_for_the_first_member_to_reply(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    created = await tenant.client.post(
        "/api/v1/admin/teams",
        json={"name": "Sales", "member_ids": [alex.operator_id, ada.operator_id]},
        headers=ada.headers,
    )
    team_id = created.json()["team"]["id"]
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Sales will take this")
    queued = (await alex.ok(f"transfer/{convo}", team_id=team_id))["conversation"]
    assert (queued["operator_id"], queued["team_id"]) == (None, team_id)
    assert queued["status"] == "open"  # pending in the team's queue
    await ada.ok("message", conversation_id=convo, content="Sales here")
    await alex.ok("message", conversation_id=convo, content="Over to you")
    claimed = (await alex.view(convo))["conversation"]
    assert (claimed["operator_id"], claimed["status"]) == (ada.operator_id, "active")


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({}, 400, "invalid_field", id="neither"),
        pytest.param({"operator_id": 1, "team_id": 1}, 400, "invalid_field", id="both"),
        pytest.param({"operator_id": "ada"}, 400, "invalid_field", id="operator-text"),
        pytest.param({"operator_id": 0}, 400, "invalid_field", id="operator-zero"),
        pytest.param({"operator_id": 999}, 404, "operator_not_found", id="unknown-operator"),
        pytest.param({"team_id": 999}, 404, "team_not_found", id="unknown-team"),
    ],
)
async def test_bad_transfers_are_refused(
    tenant: Tenant, alex: Panel, body: dict[str, Any], status: int, code: str
) -> None:
    convo = await chat(tenant)
    await alex.ok("message", conversation_id=convo, content="Mine")
    assert_error(await alex.post(f"transfer/{convo}", **body), status, code)
    assert (await alex.view(convo))["conversation"]["operator_id"] == alex.operator_id


async def test_transfer_to_another_accounts_operator_is_404(
    tenant: Tenant, other_tenant: Tenant, alex: Panel, services: Services
) -> None:
    outsider = await services.store.create_operator(
        other_tenant.account_id, "Olga", "olga@globex.test", "unused-hash", False
    )
    convo = await chat(tenant)
    response = await alex.post(f"transfer/{convo}", operator_id=outsider.id)
    assert_error(response, 404, "operator_not_found")


async def test_only_the_owner_or_an_admin_may_transfer(
    tenant: Tenant, alex: Panel, ada: Panel
) -> None:
    convo = await chat(tenant)
    await ada.ok("message", conversation_id=convo, content="Ada here")
    taken = await alex.post(f"transfer/{convo}", operator_id=alex.operator_id)
    assert_error(taken, 403, "not_owner")
    assert (await alex.view(convo))["conversation"]["operator_id"] == ada.operator_id
    mine = await chat(tenant, "Another visitor")
    await alex.ok("message", conversation_id=mine, content="Alex here")
    moved = (await ada.ok(f"transfer/{mine}", operator_id=ada.operator_id))["conversation"]
    assert moved["operator_id"] == ada.operator_id


# typing


async def test_operator_typing_shows_in_the_visitors_poll(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    assert (await chatpoll(tenant, convoID=convo))["typing"] is False
    assert await alex.ok("typing", conversation_id=convo) == {"success": True}
    assert (await chatpoll(tenant, convoID=convo))["typing"] is True


async def test_operator_typing_reaches_the_visitors_socket(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 1)
        await alex.ok("typing", conversation_id=convo)
        typing = await ws.until("typing")
        assert typing["data"]["conversation_id"] == convo and typing["data"]["side"] == "operator"


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "missing_field"),
        ({"conversation_id": 5.5}, 400, "invalid_field"),
        ({"conversation_id": "no-such-conversation"}, 404, "conversation_not_found"),
    ],
)
async def test_bad_typing_is_refused(
    alex: Panel, body: dict[str, Any], status: int, code: str
) -> None:
    assert_error(await alex.post("typing", **body), status, code)


# notes


async def test_note_is_shown_to_operators_with_its_author(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    note = (await alex.ok("note", conversation_id=convo, content="VIP customer"))["message"]
    assert (note["content"], note["private"], note["operator_name"], note["operator_id"]) == (
        "VIP customer",
        True,
        "Alex",
        alex.operator_id,
    )
    shown = (await alex.view(convo))["messages"]
    assert [(m["content"], m["private"]) for m in shown] == [
        ("Hello", False),
        ("VIP customer", True),
    ]


async def test_note_never_reaches_the_visitor_on_any_surface(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    async with websocket(visitor_socket(base, tenant)) as live:
        await follow(live, convo, 1)
        await alex.ok("note", conversation_id=convo, content="VIP customer")
        await alex.ok("message", conversation_id=convo, content="How can I help?")
        frames = await frames_until_message(live)
    assert "VIP" not in str(frames)
    assert frames[-1]["data"]["message"] == "How can I help?"
    # First, while the operator's reply is still unread by the visitor: poll returns only that.
    unread = (await tenant.ok("poll", convoID=convo))["messages"]
    assert [m["message"] for m in unread] == ["How can I help?"]
    async with websocket(visitor_socket(base, tenant)) as resumed:
        await follow(resumed, convo, 0)
        replayed = [await resumed.until("message:new"), await resumed.until("message:new")]
    assert [f["data"]["message"] for f in replayed] == ["Hello", "How can I help?"]
    seen = ["Hello", "How can I help?"]
    for polled in (
        await chatpoll(tenant, convoID=convo),
        await chatpoll(tenant, convoID=convo, afterSeq=0),
        await tenant.ok("gethistory", convoID=convo),
    ):
        assert [m["message"] for m in polled["messages"]] == seen
    page = await tenant.client.get(window(tenant, f"loadchat/{convo}"))
    assert page.status_code == 200 and "VIP" not in page.text


async def test_note_in_an_sms_conversation_is_not_queued_for_delivery(
    tenant: Tenant, alex: Panel, services: Services
) -> None:
    convo = await tenant.visitor_says(
        "Hi", sourceApp="smsbroadcast", userInfo={"phone": "+15551234567"}
    )
    note = (await alex.ok("note", conversation_id=convo, content="Calls often"))["message"]
    assert note["delivery"] is None
    reply = (await alex.ok("message", conversation_id=convo, content="Hello!"))["message"]
    assert reply["delivery"] == "queued"
    jobs = await services.store.claim_outbound(
        "test-worker", channels=["sms"], now=reply["created"] + 1, lease_s=30, limit=10
    )
    assert [(j.convo_id, j.text) for j in jobs] == [(convo, "Hello!")]


async def test_note_changes_nothing_the_visitor_or_the_queue_sees(
    tenant: Tenant, alex: Panel, services: Services
) -> None:
    convo = await tenant.visitor_says("Hello")
    before = await stored(services, tenant, convo)
    await alex.ok("note", conversation_id=convo, content="Probably a bot test")
    after = await stored(services, tenant, convo)
    assert (after.status, after.operator_id, after.mode, after.unread, after.preview) == (
        before.status,
        before.operator_id,
        before.mode,
        before.unread,
        before.preview,
    )
    assert (after.status, after.mode, after.unread) == ("open", "bot", 1)
    await tenant.ok("sendmessage", convoID=convo, sender="bot", message="The bot still answers")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        pytest.param({"conversation_id": None}, 400, "missing_field", id="no-conversation"),
        pytest.param({"content": None}, 400, "missing_field", id="no-content"),
        pytest.param({"content": "  "}, 400, "empty_message", id="blank"),
        pytest.param(
            {"content": "x" * (MAX_MESSAGE_CHARS + 1)}, 400, "message_too_long", id="long"
        ),
        pytest.param({"content": ["VIP"]}, 400, "invalid_field", id="content-list"),
        pytest.param(
            {"conversation_id": "no-such-conversation"}, 404, "conversation_not_found", id="unknown"
        ),
    ],
)
async def test_bad_notes_are_refused(
    tenant: Tenant, alex: Panel, change: dict[str, Any], status: int, code: str
) -> None:
    convo = await chat(tenant)
    body = {"conversation_id": convo, "content": "VIP", **change}
    assert_error(await alex.post("note", **body), status, code)
    assert (await alex.view(convo))["conversation"]["last_seq"] == 1


# proactive messages


async def test_proactive_message_hands_the_visitors_socket_a_conversation(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    async with websocket(visitor_socket(base, tenant)) as ws:
        await ws.send(type="hello", sessionID=SESSION, siteID=1)
        assert (await ws.until("ready"))["convoID"] is None
        sent = await alex.ok(
            "proactive-message", site_id=1, session_id=SESSION, content="Need help?"
        )
        opened = await ws.until("conversation")
    conversation = sent["conversation"]
    assert opened["data"]["convoID"] == conversation["id"]
    assert (conversation["session_id"], conversation["channel"], conversation["operator_id"]) == (
        SESSION,
        "chat",
        alex.operator_id,
    )
    polled = await chatpoll(tenant, sessionID=SESSION, siteID=1)
    assert polled["convoID"] == conversation["id"]
    assert [m["message"] for m in polled["messages"]] == ["Need help?"]


async def test_proactive_message_reaches_a_visitor_polling_by_session(
    tenant: Tenant, alex: Panel
) -> None:
    assert (await chatpoll(tenant, sessionID=SESSION, siteID=1))["convoID"] is None
    first = await alex.ok("proactive-message", site_id=1, session_id=SESSION, content="Hi!")
    second = await alex.ok("proactive-message", site_id=1, session_id=SESSION, content="Still?")
    assert first["conversation"]["id"] == second["conversation"]["id"]
    polled = await chatpoll(tenant, sessionID=SESSION, siteID=1)
    assert [m["message"] for m in polled["messages"]] == ["Hi!", "Still?"]


async def test_proactive_message_joins_the_sessions_open_conversation(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    async with websocket(visitor_socket(base, tenant)) as ws:
        await ws.send(type="hello", sessionID=SESSION, siteID=1)
        await ws.until("ready")
        await ws.send(type="send", message="Hi", clientMsgID="v-1")
        convo = (await ws.until("ack"))["convoID"]
        sent = await alex.ok("proactive-message", site_id=1, session_id=SESSION, content="Yes?")
        reply = await ws.until("message:new")
        while reply["data"]["message"] != "Yes?":
            reply = await ws.until("message:new")
    assert (sent["conversation"]["id"], sent["message"]["seq"]) == (convo, 2)
    assert reply["seq"] == 2


async def test_proactive_message_reaches_a_returning_visitor_in_their_resolved_conversation(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    async with websocket(visitor_socket(base, tenant)) as ws:
        await ws.send(type="hello", sessionID=SESSION, siteID=1)
        await ws.until("ready")
        await ws.send(type="send", message="Thanks, all sorted", clientMsgID="v-1")
        convo = (await ws.until("ack"))["convoID"]
    await alex.ok(f"close/{convo}")
    # The visitor comes back: the window resumes the conversation it remembers.
    async with websocket(visitor_socket(base, tenant)) as ws:
        await ws.send(type="hello", convoID=convo, seq=1, sessionID=SESSION, siteID=1)
        await ws.until("ready")
        sent = await alex.ok("proactive-message", site_id=1, session_id=SESSION, content="Back?")
        reply = await ws.until("message:new")
    assert sent["conversation"]["id"] == convo and reply["data"]["message"] == "Back?"


async def test_proactive_message_to_an_offline_visitor_is_409(tenant: Tenant, alex: Panel) -> None:
    await chatpoll(tenant, sessionID=SESSION, siteID=1)
    response = await alex.post(
        "proactive-message", site_id=1, session_id="sess_somebody_else", content="Hi"
    )
    assert_error(response, 409, "visitor_offline")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        pytest.param({"session_id": None}, 400, "missing_field", id="no-session"),
        pytest.param({"session_id": "bad id!"}, 400, "invalid_session_id", id="bad-session"),
        pytest.param({"session_id": "short"}, 400, "invalid_session_id", id="short-session"),
        pytest.param(
            {"session_id": SESSION + "\n"}, 400, "invalid_session_id", id="session-newline"
        ),
        pytest.param({"session_id": "s" * 129}, 400, "invalid_field", id="long-session"),
        pytest.param({"site_id": None}, 400, "missing_field", id="no-site"),
        pytest.param({"site_id": 0}, 400, "invalid_field", id="site-zero"),
        pytest.param({"site_id": 999}, 404, "site_not_found", id="unknown-site"),
        pytest.param({"content": None}, 400, "missing_field", id="no-content"),
        pytest.param({"content": "   "}, 400, "empty_message", id="blank"),
    ],
)
async def test_bad_proactive_messages_are_refused(
    tenant: Tenant, alex: Panel, change: dict[str, Any], status: int, code: str
) -> None:
    await chatpoll(tenant, sessionID=SESSION, siteID=1)
    body = {"site_id": 1, "session_id": SESSION, "content": "Hi", **change}
    assert_error(await alex.post("proactive-message", **body), status, code)
    assert (await chatpoll(tenant, sessionID=SESSION, siteID=1))["convoID"] is None


# the conversation view


async def test_conversation_shows_details_and_every_message(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant, userInfo={"fname": "Jane", "email": "jane@example.test"})
    await alex.ok("message", conversation_id=convo, content="Hi Jane")
    await alex.ok("note", conversation_id=convo, content="Returning customer")
    body = await alex.view(convo)
    conversation = body["conversation"]
    assert (conversation["id"], conversation["channel"], conversation["last_seq"]) == (
        convo,
        "chat",
        3,
    )
    assert conversation["contact_data"]["email"] == "jane@example.test"
    assert [(m["seq"], m["sender"], m["private"]) for m in body["messages"]] == [
        (1, "visitor", False),
        (2, "operator", False),
        (3, "operator", True),
    ]


async def test_viewing_a_conversation_clears_its_unread_count(
    tenant: Tenant, alex: Panel, services: Services
) -> None:
    convo = await chat(tenant, "one")
    await tenant.visitor_says("two", convoID=convo)
    assert (await stored(services, tenant, convo)).unread == 2
    assert (await alex.view(convo))["conversation"]["unread"] == 0
    assert (await stored(services, tenant, convo)).unread == 0


async def test_before_seq_pages_back_through_the_messages(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant, "1")
    for text in ("2", "3", "4", "5"):
        await tenant.visitor_says(text, convoID=convo)
    pages = [
        await alex.view(convo, limit=2),
        await alex.view(convo, limit=2, before_seq=4),
        await alex.view(convo, limit=2, before_seq=2),
    ]
    assert [[m["seq"] for m in p["messages"]] for p in pages] == [[4, 5], [2, 3], [1]]


@pytest.mark.parametrize(
    "params", [{"limit": 0}, {"limit": 201}, {"limit": "all"}, {"before_seq": 0}]
)
async def test_bad_conversation_paging_is_refused(
    tenant: Tenant, alex: Panel, params: dict[str, Any]
) -> None:
    convo = await chat(tenant)
    response = await alex.client.get(
        f"{ROOT}/conversation/{convo}", params=params, headers=alex.headers
    )
    assert_error(response, 400, "invalid_field")


async def test_missing_conversation_is_404(alex: Panel) -> None:
    response = await alex.client.get(f"{ROOT}/conversation/nope", headers=alex.headers)
    assert_error(response, 404, "conversation_not_found")


# the visitor's details


async def test_visitor_name_is_split_into_first_and_last(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant, userInfo={"fname": "J"})
    body = await alex.ok(
        f"conversation/{convo}/visitor",
        name="  Jane van Dyke ",
        email="jane@example.test",
        phone="+1 (555) 010-0000",
        info="Prefers email.\nVIP.",
    )
    assert body["conversation"]["contact_data"] == {
        "name": "Jane van Dyke",
        "fname": "Jane",
        "lname": "van Dyke",
        "email": "jane@example.test",
        "phone": "+1 (555) 010-0000",
        "info": "Prefers email.\nVIP.",
    }


async def test_visitor_fields_not_given_are_kept(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant, userInfo={"fname": "Jane", "email": "old@example.test"})
    patched = await alex.client.patch(
        f"{ROOT}/conversation/{convo}/visitor",
        json={"email": "new@example.test"},
        headers=alex.headers,
    )
    contact = _succeeded(patched)["conversation"]["contact_data"]
    assert (contact["fname"], contact["email"]) == ("Jane", "new@example.test")


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({"email": "not-an-address"}, "invalid_user_info", id="email"),
        pytest.param({"phone": "call me maybe"}, "invalid_user_info", id="phone"),
        pytest.param({"info": "x" * 2001}, "invalid_user_info", id="long-info"),
        pytest.param({"name": "J" * 101}, "invalid_user_info", id="long-name"),
        pytest.param({"name": "Jane\x1b[31m"}, "invalid_user_info", id="control-name"),
        pytest.param({"email": ["a@b.test"]}, "invalid_field", id="email-list"),
    ],
)
async def test_bad_visitor_details_are_refused(
    tenant: Tenant, alex: Panel, body: dict[str, Any], code: str
) -> None:
    convo = await chat(tenant, userInfo={"fname": "Jane"})
    assert_error(await alex.post(f"conversation/{convo}/visitor", **body), 400, code)
    contact = (await alex.view(convo))["conversation"]["contact_data"]
    assert (contact["fname"], contact["email"], contact["phone"]) == ("Jane", "", "")


# blocks


async def test_blocking_both_refuses_the_visitor_everywhere(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    body = await alex.ok(f"conversation/{convo}/block", blocked=True, block_type="both")
    assert (body["conversation"]["blocked"], body["conversation"]["block_type"]) == (True, "both")
    assert_error(await postmessage(tenant, convo, "Let me in"), 403, "visitor_blocked")
    refused = await tenant.command("sendmessage", convoID=convo, message="Let me in")
    assert_error(refused, 403, "visitor_blocked")
    async with websocket(visitor_socket(base, tenant)) as ws:
        await follow(ws, convo, 1)
        await ws.send(type="send", message="Let me in", clientMsgID="b-1")
        error = await ws.until("error")
    assert (error["error"]["code"], error["clientMsgID"]) == ("visitor_blocked", "b-1")
    assert (await alex.view(convo))["conversation"]["last_seq"] == 1


async def test_blocking_the_ai_stops_the_bot_but_not_the_visitor(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await tenant.visitor_says("Hello")
    await alex.ok(f"conversation/{convo}/block", blocked=True, block_type="ai")
    bot = await tenant.command("sendmessage", convoID=convo, sender="bot", message="Beep")
    assert_error(bot, 409, "bot_blocked")
    await tenant.visitor_says("Still here", convoID=convo)


async def test_blocking_for_operators_hides_it_from_the_inbox(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)

    async def listed(path: str, key: str) -> list[str]:
        found = await alex.client.get(f"{ROOT}/{path}", headers=alex.headers)
        return [c["id"] for c in _succeeded(found)[key]]

    await alex.ok(f"conversation/{convo}/block", blocked=True, block_type="operator")
    assert await listed("inbox", "conversations") == []
    assert await listed("active-chats", "chats") == []
    assert await listed("blocked", "visitors") == [convo]
    assert (await postmessage(tenant, convo, "Hello?")).status_code == 200
    unblocked = await alex.ok(f"conversation/{convo}/block", blocked=False)
    assert (unblocked["conversation"]["blocked"], unblocked["conversation"]["block_type"]) == (
        False,
        None,
    )
    assert await listed("inbox", "conversations") == [convo]
    assert await listed("active-chats", "chats") == [convo]
    assert await listed("blocked", "visitors") == []


async def test_unblocking_lets_the_visitor_write_again(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    await alex.ok(f"conversation/{convo}/block", blocked=True)
    assert (await alex.view(convo))["conversation"]["block_type"] == "both"
    await alex.ok(f"conversation/{convo}/block", blocked=False)
    assert (await postmessage(tenant, convo, "Sorry")).status_code == 200


@pytest.mark.parametrize(
    ("body", "code"),
    [
        pytest.param({}, "missing_field", id="no-blocked"),
        pytest.param({"block_type": "both"}, "missing_field", id="only-type"),
        pytest.param({"blocked": "maybe"}, "invalid_field", id="blocked-text"),
        pytest.param({"blocked": True, "block_type": "all"}, "invalid_block_type", id="type"),
        pytest.param({"blocked": True, "block_type": ["ai"]}, "invalid_field", id="type-list"),
    ],
)
async def test_bad_blocks_are_refused(
    tenant: Tenant, alex: Panel, body: dict[str, Any], code: str
) -> None:
    convo = await chat(tenant)
    assert_error(await alex.post(f"conversation/{convo}/block", **body), 400, code)
    assert (await alex.view(convo))["conversation"]["blocked"] is False


# translation


async def test_translation_needs_a_configured_translator(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    refused = await alex.post("translation/toggle", conversation_id=convo, enabled=True)
    assert_error(refused, 409, "translation_unavailable")
    off = await alex.ok("translation/toggle", conversation_id=convo, enabled=False)
    assert off["conversation"]["translation"] == {"enabled": False, "visitor_lang": ""}


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"enabled": False}, 400, "missing_field", id="no-conversation"),
        pytest.param({"conversation_id": "CONVO"}, 400, "missing_field", id="no-enabled"),
        pytest.param(
            {"conversation_id": "CONVO", "enabled": "perhaps"}, 400, "invalid_field", id="text"
        ),
        pytest.param(
            {"conversation_id": "nope", "enabled": False}, 404, "conversation_not_found", id="404"
        ),
    ],
)
async def test_bad_translation_toggles_are_refused(
    tenant: Tenant, alex: Panel, body: dict[str, Any], status: int, code: str
) -> None:
    convo = await chat(tenant)
    given = {k: convo if v == "CONVO" else v for k, v in body.items()}
    assert_error(await alex.post("translation/toggle", **given), status, code)


async def test_visitor_language_is_stored_in_its_canonical_spelling(
    tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    body = await alex.ok("translation/set-lang", conversation_id=convo, lang="PT_br")
    assert body["conversation"]["translation"]["visitor_lang"] == "pt-BR"


@pytest.mark.parametrize(
    ("lang", "code"),
    [
        pytest.param("english!", "invalid_language", id="not-a-code"),
        pytest.param("e", "invalid_language", id="too-short"),
        pytest.param(None, "missing_field", id="missing"),
        pytest.param("x" * 36, "invalid_field", id="too-long"),
        pytest.param(["de"], "invalid_field", id="list"),
    ],
)
async def test_bad_visitor_languages_are_refused(
    tenant: Tenant, alex: Panel, lang: Any, code: str
) -> None:
    convo = await chat(tenant)
    response = await alex.post("translation/set-lang", conversation_id=convo, lang=lang)
    assert_error(response, 400, code)
    assert (await alex.view(convo))["conversation"]["translation"]["visitor_lang"] == ""


@pytest.fixture
async def libre() -> AsyncIterator[FakeLibreTranslate]:
    fake = FakeLibreTranslate()
    async with running(fake):
        yield fake


@pytest.fixture
async def translating(tmp_path: Path, libre: FakeLibreTranslate) -> AsyncIterator[Tenant]:
    """A tenant on an app whose translator is the local LibreTranslate."""
    settings = load_settings(
        {"LIVEOP_DATA_DIR": str(tmp_path / "translating"), "LIVEOP_TRANSLATE_URL": libre.url}
    )
    application = create_app(settings)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://liveop.test"
        ) as client,
    ):
        yield await make_tenant(client, application.state.services)


async def translated_chat(tenant: Tenant, text: str, lang: str | None = "de") -> tuple[str, Panel]:
    """A chat window conversation translating live, and Alex to answer it."""
    alex = await login(tenant, "alex", tenant.operator_id)
    convo = await chat(tenant, "first")
    toggled = await alex.ok("translation/toggle", conversation_id=convo, enabled=True)
    assert toggled["conversation"]["translation"]["enabled"] is True
    if lang is not None:
        await alex.ok("translation/set-lang", conversation_id=convo, lang=lang)
    await tenant.visitor_says(text, convoID=convo)
    return convo, alex


async def test_visitor_messages_are_translated_for_the_operators(translating: Tenant) -> None:
    convo, alex = await translated_chat(translating, "hallo welt")
    last = (await alex.view(convo))["messages"][-1]
    assert (last["content"], last["translation"], last["translation_lang"]) == (
        "hallo welt",
        "hello world",
        "en",
    )
    own = (await chatpoll(translating, convoID=convo))["messages"][-1]
    assert (own["message"], own["originalMessage"]) == ("hallo welt", None)


async def test_visitor_language_is_detected_when_not_set(translating: Tenant) -> None:
    convo, alex = await translated_chat(translating, "merci monde", lang=None)
    assert (await alex.view(convo))["messages"][-1]["translation"] == "thanks world"


async def test_visitor_messages_are_translated_into_the_owners_language(
    translating: Tenant,
) -> None:
    ada = await login(translating, "ada", translating.admin_id)
    patched = await translating.client.patch(
        f"/api/v1/admin/operators/{translating.operator_id}",
        json={"lang": "fr"},
        headers=ada.headers,
    )
    assert patched.status_code == 200, patched.json()
    convo, alex = await translated_chat(translating, "hallo")
    await alex.ok("message", conversation_id=convo, content="bonjour")
    await translating.visitor_says("danke", convoID=convo)
    last = (await alex.view(convo))["messages"][-1]
    assert (last["translation"], last["translation_lang"]) == ("merci", "fr")


async def test_operator_replies_reach_the_visitor_in_their_language(translating: Tenant) -> None:
    convo, alex = await translated_chat(translating, "hallo")
    sent = (await alex.ok("message", conversation_id=convo, content="thanks"))["message"]
    assert (sent["content"], sent["translation"], sent["translation_lang"]) == (
        "thanks",
        "danke",
        "de",
    )
    seen = (await chatpoll(translating, convoID=convo))["messages"][-1]
    assert (seen["message"], seen["originalMessage"]) == ("danke", "thanks")
    history = (await translating.ok("gethistory", convoID=convo))["messages"][-1]
    assert history["message"] == "danke"
    shown = (await alex.view(convo))["messages"][-1]
    assert (shown["content"], shown["translation"]) == ("thanks", "danke")


async def test_notes_are_never_translated(translating: Tenant, libre: FakeLibreTranslate) -> None:
    convo, alex = await translated_chat(translating, "hallo")
    asked = len(libre.received)
    note = (await alex.ok("note", conversation_id=convo, content="thanks"))["message"]
    assert note["translation"] is None and len(libre.received) == asked


async def test_translator_down_keeps_messages_untranslated(
    translating: Tenant, libre: FakeLibreTranslate
) -> None:
    libre.crash = True
    convo, alex = await translated_chat(translating, "hallo welt")
    sent = (await alex.ok("message", conversation_id=convo, content="thanks"))["message"]
    assert sent["translation"] is None
    assert [(m["content"], m["translation"]) for m in (await alex.view(convo))["messages"]] == [
        ("first", None),
        ("hallo welt", None),
        ("thanks", None),
    ]
    assert (await chatpoll(translating, convoID=convo))["messages"][-1]["message"] == "thanks"
    assert libre.received  # it was asked, and failed


# credentials

ENDPOINTS = [
    ("POST", "message"),
    ("POST", "accept/c1"),
    ("POST", "close/c1"),
    ("POST", "transfer/c1"),
    ("POST", "typing"),
    ("POST", "note"),
    ("POST", "proactive-message"),
    ("GET", "conversation/c1"),
    ("POST", "conversation/c1/visitor"),
    ("PATCH", "conversation/c1/visitor"),
    ("POST", "conversation/c1/block"),
    ("POST", "translation/toggle"),
    ("POST", "translation/set-lang"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
async def test_every_endpoint_needs_an_operators_token(
    tenant: Tenant, method: str, path: str
) -> None:
    url = f"{ROOT}/{path}"
    missing = await tenant.client.request(method, url)
    assert_error(missing, 401, "missing_credentials")
    forged = await tenant.client.request(method, url, headers=bearer("not.a.jwt"))
    assert_error(forged, 401, "invalid_token")
    for key in ({"X-Api-Key": tenant.api_key}, bearer(tenant.api_key)):
        assert_error(
            await tenant.client.request(method, url, headers=key), 400, "operator_required"
        )


# events


async def next_event(stream: SSEClient, kind: str) -> dict[str, Any]:
    """The next event, which must be of ``kind``: nothing else is announced in between."""
    event = await stream.next()
    assert event.event == kind, event
    data: dict[str, Any] = event.data
    return data


async def test_every_change_is_announced_on_the_stream(
    base: str, tenant: Tenant, alex: Panel
) -> None:
    convo = await chat(tenant)
    async with sse(base, alex.token) as stream:
        await alex.ok(f"accept/{convo}")
        assert (await next_event(stream, "conversation:updated"))["mode"] == "operator"
        assert (await next_event(stream, "conversation:control_changed"))["control"] == "human"
        await alex.ok("message", conversation_id=convo, content="Hi")
        assert (await next_event(stream, "message:new"))["message"]["content"] == "Hi"
        await alex.ok("note", conversation_id=convo, content="VIP")
        note = (await next_event(stream, "message:new"))["message"]
        assert (note["private"], note["operator_name"]) == (True, "Alex")
        await alex.ok("typing", conversation_id=convo)
        assert (await next_event(stream, "typing"))["side"] == "operator"
        await alex.view(convo)
        assert (await next_event(stream, "conversation:updated"))["unread"] == 0
        await alex.ok(f"conversation/{convo}/visitor", name="Jane Doe")
        updated = await next_event(stream, "conversation:updated")
        assert updated["contact_data"]["name"] == "Jane Doe"
        await alex.ok("translation/set-lang", conversation_id=convo, lang="de")
        updated = await next_event(stream, "conversation:updated")
        assert updated["translation"]["visitor_lang"] == "de"
        await alex.ok(f"conversation/{convo}/block", blocked=True, block_type="ai")
        assert (await next_event(stream, "conversation:updated"))["block_type"] == "ai"
        await alex.ok(f"transfer/{convo}", operator_id=tenant.admin_id)
        assert (await next_event(stream, "conversation:updated"))["operator_id"] == tenant.admin_id
        await alex.ok(f"close/{convo}")
        assert (await next_event(stream, "conversation:updated"))["status"] == "resolved"
        assert (await next_event(stream, "conversation:control_changed"))["control"] == "closed"
        await chatpoll(tenant, sessionID=SESSION, siteID=1)
        await alex.ok("proactive-message", site_id=1, session_id=SESSION, content="Need help?")
        opened = await next_event(stream, "conversation:new")
        assert opened["session_id"] == SESSION
        proactive = await next_event(stream, "message:new")
        assert proactive["conversation_id"] == opened["id"]


async def test_a_note_reaches_the_tenant_socket(base: str, tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    async with websocket(f"ws://{base}/api/ws/tenant") as ws:
        await ws.send(type="auth", token=alex.token)
        await ws.until("auth_ok")
        await alex.ok("note", conversation_id=convo, content="VIP")
        frame = await ws.until("message:new")
    assert frame["data"]["message"]["private"] is True
    assert frame["data"]["message"]["content"] == "VIP"


async def test_canned_replies_are_translated_too(translating: Tenant) -> None:
    ada = await login(translating, "ada", translating.admin_id)
    created = await translating.client.post(
        "/api/v1/admin/canned",
        json={"name": "thx", "message": "thanks {fname}"},
        headers=ada.headers,
    )
    convo, alex = await translated_chat(translating, "hallo")
    await alex.ok(f"conversation/{convo}/visitor", name="Jane")
    sent = await alex.ok("message", conversation_id=convo, canned_id=created.json()["canned"]["id"])
    assert (sent["message"]["content"], sent["message"]["translation"]) == (
        "thanks Jane",
        "danke Jane",
    )


async def test_an_operator_sets_any_status_of_the_lifecycle(tenant: Tenant, alex: Panel) -> None:
    convo = await chat(tenant)
    for status in ("waiting", "active", "resolved", "open"):
        found = (await alex.ok(f"conversation/{convo}/status", status=status))["conversation"]
        assert found["status"] == status
        assert (found["resolved_at"] is not None) == (status == "resolved")
    assert_error(
        await alex.post(f"conversation/{convo}/status", status="done"), 400, "invalid_status"
    )
    assert_error(await alex.post(f"conversation/{convo}/status"), 400, "missing_field")
    assert_error(
        await alex.post("conversation/nope/status", status="open"), 404, "conversation_not_found"
    )
