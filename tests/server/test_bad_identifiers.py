"""Every identifier and integer field, on SQLite and on PostgreSQL: odd input is a 4xx.

Issue 21 items 6 and 7: NUL bytes in identifiers, and "²", "--1", Arabic-Indic digits or
numbers of thousands of digits in integers, gave 500 on PostgreSQL (and SQLite) and killed
the visitor socket. Each surface is tried with every bad value on both backends.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from starlette.applications import Starlette
from websockets.exceptions import ConnectionClosed

from tests.conftest import TEST_PASSWORD, Tenant, bearer
from tests.server.realtime_clients import serve, websocket
from tests.storage.conftest import postgres_url  # noqa: F401 (a fixture used by name)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

BACKENDS = ["sqlite", "postgres"]
BAD = "{bad}"  # replaced by each bad value in turn
CONVO = "{convo}"  # replaced by a conversation of the tenant
ACCOUNT = "{account}"
SESSION = "visitor-session-1"
# What passed str.isdigit() or int() before, or crashed int() (over 4,300 digits).
# (superscript two, Arabic-Indic twelve, a mix, and 64-bit overflows both ways).
BAD_INTEGERS = ["\u00b2", "--1", "\u0661\u0662", "1\u0662", "9" * 5000, "9" * 20, "-" + "9" * 20]
BAD_INTEGERS += [" 7", "7\n"]


@dataclass
class World:
    tenant: Tenant
    operator: dict[str, str]
    admin: dict[str, str]
    convo: str

    def fill(self, value: Any, bad: str) -> Any:
        if isinstance(value, str):
            return (
                value.replace(CONVO, self.convo)
                .replace(ACCOUNT, self.tenant.account_id)
                .replace(BAD, bad)
            )
        if isinstance(value, dict):
            return {k: self.fill(v, bad) for k, v in value.items()}
        if isinstance(value, list):
            return [self.fill(v, bad) for v in value]
        return value


async def _token(tenant: Tenant, name: str) -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{name}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return bearer(response.json()["token"])


@pytest.fixture
async def world(tenant: Tenant) -> World:
    convo = await tenant.visitor_says("hello", sessionID=SESSION)
    return World(tenant, await _token(tenant, "alex"), await _token(tenant, "ada"), convo)


# (name, method, path, who, where, fields): who is None (public), "key" (the App Command
# API: path is the command), "operator" or "admin"; where is "query", "json" or "form".
Case = tuple[str, str, str, str | None, str, dict[str, Any]]
PUBLIC = f"/{ACCOUNT}/liveoperator"
OPERATOR = "/api/v1/operator"
ADMIN = "/api/v1/admin"

INTEGER_CASES: list[Case] = [
    ("widget-config site", "GET", f"{PUBLIC}/widget-config", None, "query", {"site": BAD}),
    ("loadchat site", "GET", f"{PUBLIC}/loadchat", None, "query", {"site": BAD}),
    ("loadchat/convo site", "GET", f"{PUBLIC}/loadchat/{CONVO}", None, "query", {"site": BAD}),
    ("postmessage siteID", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "siteID": BAD}),
    ("chatpoll afterSeq", "POST", f"{PUBLIC}/chatpoll", None, "form",
     {"convoID": CONVO, "afterSeq": BAD}),
    ("chatpoll siteID", "GET", f"{PUBLIC}/chatpoll", None, "query",
     {"sessionID": SESSION, "siteID": BAD}),
    ("sendmessage operatorID", "POST", "sendmessage", "key", "json",
     {"convoID": CONVO, "message": "hi", "operatorID": BAD}),
    ("sendmessage canned", "POST", "sendmessage", "key", "json",
     {"convoID": CONVO, "operatorID": 2, "canned": BAD}),
    ("sendmessage siteID", "POST", "sendmessage", "key", "json", {"message": "hi", "siteID": BAD}),
    ("poll operatorID", "POST", "poll", "key", "json", {"convoID": CONVO, "operatorID": BAD}),
    ("settyping operatorID", "POST", "settyping", "key", "json",
     {"convoID": CONVO, "operatorID": BAD}),
    ("gethistory numMessages", "POST", "gethistory", "key", "json",
     {"convoID": CONVO, "numMessages": BAD}),
    ("message canned_id", "POST", f"{OPERATOR}/message", "operator", "json",
     {"conversation_id": CONVO, "canned_id": BAD}),
    ("transfer operator_id", "POST", f"{OPERATOR}/transfer/{CONVO}", "operator", "json",
     {"operator_id": BAD}),
    ("transfer team_id", "POST", f"{OPERATOR}/transfer/{CONVO}", "operator", "json",
     {"team_id": BAD}),
    ("proactive site_id", "POST", f"{OPERATOR}/proactive-message", "operator", "json",
     {"site_id": BAD, "session_id": SESSION, "content": "hi"}),
    ("inbox team_id", "GET", f"{OPERATOR}/inbox", "operator", "query", {"team_id": BAD}),
    ("inbox site_id", "GET", f"{OPERATOR}/inbox", "operator", "query", {"site_id": BAD}),
    ("inbox limit", "GET", f"{OPERATOR}/inbox", "operator", "query", {"limit": BAD}),
    ("active-chats site_id", "GET", f"{OPERATOR}/active-chats", "operator", "query",
     {"site_id": BAD}),
    ("online-visitors site_id", "GET", f"{OPERATOR}/online-visitors", "operator", "query",
     {"site_id": BAD}),
    ("conversation limit", "GET", f"{OPERATOR}/conversation/{CONVO}", "operator", "query",
     {"limit": BAD}),
    ("conversation before_seq", "GET", f"{OPERATOR}/conversation/{CONVO}", "operator", "query",
     {"before_seq": BAD}),
    ("status site_id", "GET", f"{OPERATOR}/status", "operator", "query", {"site_id": BAD}),
    ("set-status site_id", "POST", f"{OPERATOR}/set-status", "operator", "json",
     {"site_id": BAD, "online": True}),
    ("stream last_event_id", "GET", f"{OPERATOR}/stream", "operator", "query",
     {"last_event_id": BAD}),
    ("operator path id", "PATCH", f"{ADMIN}/operators/{BAD}", "admin", "json", {"name": "A"}),
    ("team path id", "DELETE", f"{ADMIN}/teams/{BAD}", "admin", "json", {}),
    ("canned path id", "PATCH", f"{ADMIN}/canned/{BAD}", "admin", "json", {"message": "m"}),
    ("site path id", "PATCH", f"{ADMIN}/sites/{BAD}", "admin", "json", {"name": "S"}),
    ("site team_id", "PATCH", f"{ADMIN}/sites/1", "admin", "json", {"team_id": BAD}),
    ("site create team_id", "POST", f"{ADMIN}/sites", "admin", "json",
     {"name": "S", "team_id": BAD}),
]  # fmt: skip


# NUL, other C0 controls, DEL and a C1 control (NEL), alone and inside an id.
BAD_IDENTIFIERS = ["\x00", "ab\x00cd", "\x01", "\x1b[31m", "ab\ncd", "\x7f", "\x85"]
# An inbox cursor as the server encodes one, around a conversation id with a NUL.
FORGED_CURSOR = base64.urlsafe_b64encode(b'[1.0, "ab\\u0000cd"]').decode().rstrip("=")

IDENTIFIER_CASES: list[Case] = [
    ("widget-config account", "GET", f"/{BAD}/liveoperator/widget-config", None, "query", {}),
    ("loadchat account", "GET", f"/{BAD}/liveoperator/loadchat", None, "query", {}),
    ("loadchat convo", "GET", f"{PUBLIC}/loadchat/{BAD}", None, "query", {}),
    ("postmessage account", "POST", f"/{BAD}/liveoperator/postmessage", None, "form",
     {"message": "hi"}),
    ("postmessage convoID", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "convoID": BAD}),
    ("postmessage clientMsgID", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "clientMsgID": BAD}),
    ("postmessage sessionID", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "sessionID": BAD}),
    ("chatpoll account", "POST", f"/{BAD}/liveoperator/chatpoll", None, "form",
     {"convoID": CONVO}),
    ("chatpoll convoID", "POST", f"{PUBLIC}/chatpoll", None, "form", {"convoID": BAD}),
    ("chatpoll sessionID", "GET", f"{PUBLIC}/chatpoll", None, "query", {"sessionID": BAD}),
    ("chattyping convoID", "POST", f"{PUBLIC}/chattyping", None, "form", {"convoID": BAD}),
    ("command accountID", "POST", "sendmessage", "envelope", "form", {"accountID": BAD}),
    ("command key", "POST", "sendmessage", "envelope", "form", {"key": BAD}),
    ("command app", "POST", "sendmessage", "envelope", "form", {"app": BAD}),
    ("command name", "POST", "sendmessage", "envelope", "form", {"command": BAD}),
    ("sendmessage convoID", "POST", "sendmessage", "key", "json",
     {"convoID": BAD, "message": "hi"}),
    ("sendmessage clientMsgID", "POST", "sendmessage", "key", "json",
     {"message": "hi", "clientMsgID": BAD}),
    ("sendmessage sessionID", "POST", "sendmessage", "key", "json",
     {"message": "hi", "sessionID": BAD}),
    ("sendmessage sourceApp", "POST", "sendmessage", "key", "json",
     {"message": "hi", "sourceApp": BAD}),
    ("sendmessage sender", "POST", "sendmessage", "key", "json", {"message": "hi", "sender": BAD}),
    ("poll convoID", "POST", "poll", "key", "json", {"convoID": BAD}),
    ("settyping convoID", "POST", "settyping", "key", "json", {"convoID": BAD}),
    ("gethistory convoID", "POST", "gethistory", "key", "json", {"convoID": BAD}),
    ("setstatus convoID", "POST", "setstatus", "key", "json", {"convoID": BAD, "status": "open"}),
    ("setstatus status", "POST", "setstatus", "key", "json", {"convoID": CONVO, "status": BAD}),
    ("login email", "POST", "/api/v1/auth/login", None, "json",
     {"email": f"alex{BAD}@x.test", "password": TEST_PASSWORD}),
    ("login account", "POST", "/api/v1/auth/login", None, "json",
     {"email": "alex@x.test", "password": TEST_PASSWORD, "account": BAD}),
    ("message conversation_id", "POST", f"{OPERATOR}/message", "operator", "json",
     {"conversation_id": BAD, "content": "hi"}),
    ("message client_msg_id", "POST", f"{OPERATOR}/message", "operator", "json",
     {"conversation_id": CONVO, "content": "hi", "client_msg_id": BAD}),
    ("accept path", "POST", f"{OPERATOR}/accept/{BAD}", "operator", "json", {}),
    ("close path", "POST", f"{OPERATOR}/close/{BAD}", "operator", "json", {}),
    ("conversation path", "GET", f"{OPERATOR}/conversation/{BAD}", "operator", "query", {}),
    ("conversation status", "POST", f"{OPERATOR}/conversation/{CONVO}/status", "operator",
     "json", {"status": BAD}),
    ("block type", "POST", f"{OPERATOR}/conversation/{CONVO}/block", "operator", "json",
     {"blocked": True, "block_type": BAD}),
    ("visitor email", "PATCH", f"{OPERATOR}/conversation/{CONVO}/visitor", "operator", "json",
     {"email": f"j{BAD}@x.test"}),
    ("typing conversation_id", "POST", f"{OPERATOR}/typing", "operator", "json",
     {"conversation_id": BAD}),
    ("note conversation_id", "POST", f"{OPERATOR}/note", "operator", "json",
     {"conversation_id": BAD, "content": "n"}),
    ("proactive session_id", "POST", f"{OPERATOR}/proactive-message", "operator", "json",
     {"site_id": 1, "session_id": BAD, "content": "hi"}),
    ("fcm-token add", "POST", f"{OPERATOR}/fcm-token", "operator", "json", {"token": BAD}),
    ("fcm-token remove", "DELETE", f"{OPERATOR}/fcm-token", "operator", "json", {"token": BAD}),
    ("inbox cursor", "GET", f"{OPERATOR}/inbox", "operator", "query", {"cursor": BAD}),
    ("inbox forged cursor", "GET", f"{OPERATOR}/inbox", "operator", "query",
     {"cursor": FORGED_CURSOR}),
    ("inbox owner", "GET", f"{OPERATOR}/inbox", "operator", "query", {"owner": BAD}),
    ("inbox status", "GET", f"{OPERATOR}/inbox", "operator", "query", {"status": BAD}),
    ("inbox channel", "GET", f"{OPERATOR}/inbox", "operator", "query", {"channel": BAD}),
    ("set-lang conversation_id", "POST", f"{OPERATOR}/translation/set-lang", "operator", "json",
     {"conversation_id": BAD, "lang": "fr"}),
    ("set-lang lang", "POST", f"{OPERATOR}/translation/set-lang", "operator", "json",
     {"conversation_id": CONVO, "lang": BAD}),
    ("stream last_event_id", "GET", f"{OPERATOR}/stream", "operator", "query",
     {"last_event_id": BAD}),
    ("operator create email", "POST", f"{ADMIN}/operators", "admin", "json",
     {"name": "Bo", "email": f"bo{BAD}@x.test", "password": "long-enough-pw"}),
    ("operator create role", "POST", f"{ADMIN}/operators", "admin", "json",
     {"name": "Bo", "email": "bo@x.test", "password": "long-enough-pw", "role": BAD}),
    ("team create name", "POST", f"{ADMIN}/teams", "admin", "json", {"name": f"T{BAD}x"}),
    ("canned create name", "POST", f"{ADMIN}/canned", "admin", "json",
     {"name": f"C{BAD}x", "message": "m"}),
    ("site update color", "PATCH", f"{ADMIN}/sites/1", "admin", "json", {"color": BAD}),
    ("contact path", "GET", f"{OPERATOR}/contacts/{BAD}", "operator", "query", {}),
    ("merge path", "POST", f"{OPERATOR}/contacts/{BAD}/merge", "operator", "json",
     {"from_id": 1}),
    ("merge from_id", "POST", f"{OPERATOR}/contacts/1/merge", "operator", "json",
     {"from_id": BAD}),
]  # fmt: skip

# Free text may hold line breaks and other controls, but never NUL (PostgreSQL refuses it).
NUL_VALUES = ["\x00", "ab\x00cd"]
TEXT_CASES: list[Case] = [
    ("inbox q", "GET", f"{OPERATOR}/inbox", "operator", "query", {"q": f"ab{BAD}"}),
    ("login password", "POST", "/api/v1/auth/login", None, "json",
     {"email": "alex@x.test", "password": BAD}),
    ("postmessage message", "POST", f"{PUBLIC}/postmessage", None, "form", {"message": BAD}),
    ("postmessage fname", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "fname": BAD}),
    ("note content", "POST", f"{OPERATOR}/note", "operator", "json",
     {"conversation_id": CONVO, "content": BAD}),
    ("visitor info", "PATCH", f"{OPERATOR}/conversation/{CONVO}/visitor", "operator", "json",
     {"info": BAD}),
    ("site greeting", "PATCH", f"{ADMIN}/sites/1", "admin", "json", {"greeting": BAD}),
    ("canned message", "POST", f"{ADMIN}/canned", "admin", "json", {"name": "C", "message": BAD}),
    ("message image_url", "POST", f"{OPERATOR}/message", "operator", "json",
     {"conversation_id": CONVO, "image_url": f"https://cdn.test/{BAD}.png"}),
    ("site color", "PATCH", f"{ADMIN}/sites/1", "admin", "json", {"color": f"#aabbcc{BAD}"}),
    ("contacts q", "GET", f"{OPERATOR}/contacts", "operator", "query", {"q": f"ab{BAD}"}),
    ("postmessage phone", "POST", f"{PUBLIC}/postmessage", None, "form",
     {"message": "hi", "phone": f"+1555{BAD}"}),
]  # fmt: skip


async def _send(world: World, case: Case, bad: str) -> httpx.Response:
    _, method, path, who, where, raw = case
    client, fields = world.tenant.client, world.fill(raw, bad)
    if who == "key":
        form = world.tenant.envelope(path, json=orjson.dumps(fields).decode())
        return await client.post("/", data=form)
    if who == "envelope":
        form = {**world.tenant.envelope(path, json='{"message": "hi"}'), **fields}
        return await client.post("/", data=form)
    headers = {None: {}, "operator": world.operator, "admin": world.admin}[who]
    url = world.fill(path, quote(bad, safe=""))
    if where == "query":
        return await client.request(method, url, params=fields, headers=headers)
    if where == "form":
        return await client.request(method, url, data=fields, headers=headers)
    return await client.request(method, url, json=fields, headers=headers)


async def _refused_everywhere(world: World, cases: list[Case], values: list[str]) -> None:
    """Each case with each value: a documented 4xx error, never a 5xx or a success."""
    wrong = []
    for case in cases:
        for bad in values:
            response = await _send(world, case, bad)
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else {}
            )
            if not (400 <= response.status_code < 500 and body.get("success") is False):
                wrong.append(f"{case[0]} {bad[:12]!r}: {response.status_code} {response.text[:80]}")
    assert not wrong, "\n".join(wrong)


async def test_control_characters_in_identifiers_are_refused_on_every_surface(
    world: World,
) -> None:
    await _refused_everywhere(world, IDENTIFIER_CASES, BAD_IDENTIFIERS)


async def test_nul_in_free_text_is_refused_on_every_surface(world: World) -> None:
    await _refused_everywhere(world, TEXT_CASES, NUL_VALUES)


async def test_exotic_and_oversize_integers_are_refused_on_every_surface(world: World) -> None:
    await _refused_everywhere(world, INTEGER_CASES, BAD_INTEGERS)


async def test_exotic_digits_in_decimal_fields_are_refused(world: World) -> None:
    cases: list[Case] = [
        ("chatpoll since", "POST", f"{PUBLIC}/chatpoll", None, "form",
         {"convoID": CONVO, "since": BAD}),
        ("poll since", "POST", "poll", "key", "json", {"convoID": CONVO, "since": BAD}),
    ]  # fmt: skip
    await _refused_everywhere(world, cases, ["\u0661", "1_0", "1e999", "\u00b2"])


async def test_exotic_and_oversize_last_event_id_header_is_refused(world: World) -> None:
    # Header bytes are read as Latin-1: b"\xb2" arrives as "²".
    for bad in [b"\xb2", "\u0661\u0662".encode(), b"9" * 5000, b"9" * 20]:
        headers = {**world.operator, "Last-Event-ID": bad}
        response = await world.tenant.client.get(f"{OPERATOR}/stream", headers=headers)
        assert response.status_code == 400, (bad[:12], response.text[:80])


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def test_exotic_integers_in_the_socket_hello_close_it_as_a_bad_frame(
    base: str, world: World
) -> None:
    url = f"ws://{base}/{world.tenant.account_id}/liveoperator/ws"
    for field in ("seq", "siteID"):
        for bad in BAD_INTEGERS:
            hello = {"convoID": world.convo} if field == "seq" else {"sessionID": SESSION}
            async with websocket(url) as ws:
                await ws.send(type="hello", **hello, **{field: bad})
                with pytest.raises(ConnectionClosed) as closed:
                    await ws.recv()
            assert closed.value.rcvd is not None
            assert closed.value.rcvd.code == 4000, (field, bad[:12])


async def test_nul_in_visitor_socket_fields_answers_an_error_frame_and_the_socket_lives(
    base: str, world: World
) -> None:
    url = f"ws://{base}/{world.tenant.account_id}/liveoperator/ws"
    async with websocket(url) as ws:
        await ws.send(type="hello", convoID=world.convo)
        await ws.until("ready")
        for bad in BAD_IDENTIFIERS:
            await ws.send(type="send", message="hi", clientMsgID=bad)
            error = await ws.until("error")
            assert error["error"]["code"] == "invalid_characters", bad
        await ws.send(type="send", message="still here", clientMsgID="fine-1")
        assert (await ws.until("ack"))["duplicate"] is False


async def test_nul_in_the_socket_hello_or_path_closes_it_as_a_bad_frame(
    base: str, world: World
) -> None:
    account = world.tenant.account_id
    for path, hello in [
        (f"/{account}/liveoperator/ws", {"convoID": "ab\x00cd"}),
        (f"/{account}/liveoperator/ws", {"sessionID": "session\x00x"}),
        ("/ab%00cd/liveoperator/ws", {}),
    ]:
        async with websocket(f"ws://{base}{path}") as ws:
            # A socket refused by its path may be closed before the hello is written.
            with contextlib.suppress(ConnectionClosed):
                await ws.send(type="hello", **hello)
            with pytest.raises(ConnectionClosed) as closed:
                await ws.until("never")
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000, path
