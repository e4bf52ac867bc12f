"""Rate limits on the public surfaces: 429 with Retry-After over HTTP, an error frame on the
visitor socket, limits shared through Redis by every process, none on the API-key surfaces.

The rules' intervals are seconds to minutes, far longer than the handful of local requests
each test sends to spend a budget, so no test depends on how fast the machine is."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from realtime.ratelimit import Rule
from server.api.auth import LOGIN_PER_EMAIL, LOGIN_PER_IP
from server.api.chat_window import NEW_CONVERSATIONS, VISITOR_MESSAGES, VISITOR_TYPING
from server.app import create_app
from server.services import Services
from server.settings import SettingsError, load_settings
from tests.conftest import TEST_PASSWORD, Tenant, assert_error
from tests.redis_server import RedisServer
from tests.server.realtime_clients import serve, websocket

LOGIN = "/api/v1/auth/login"
VISITOR_IP = "203.0.113.7"
OTHER_IP = "198.51.100.20"


def _client(app: ASGIApp, ip: str = VISITOR_IP) -> httpx.AsyncClient:
    """A client whose requests come from ``ip``, as the server sees the peer's address."""
    transport = httpx.ASGITransport(app=app, client=(ip, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://liveop.test")


@pytest.fixture
async def visitor(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with _client(app) as client:
        yield client


async def _post(
    client: httpx.AsyncClient, tenant: Tenant, mode: str, **fields: Any
) -> httpx.Response:
    return await client.post(f"/{tenant.account_id}/liveoperator/{mode}", data=fields)


def _assert_limited(response: httpx.Response, rule: Rule) -> None:
    """The documented 429: the error shape, and Retry-After in whole seconds (at least 1, at
    most one interval of the rule) agreeing with the body's retry_after."""
    assert_error(response, 429, "rate_limited")
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= math.ceil(rule.interval_s)
    assert response.json()["error"]["retry_after"] == retry_after


async def _new_conversation(client: httpx.AsyncClient, tenant: Tenant) -> str:
    response = await _post(client, tenant, "postmessage", message="Hello")
    assert response.status_code == 200, response.json()
    convo: str = response.json()["convoID"]
    return convo


# ------------------------------------------------------------------------------------------
# Chat window


async def test_a_conversation_flooded_through_postmessage_gets_429(
    visitor: httpx.AsyncClient, tenant: Tenant
) -> None:
    convo = await _new_conversation(visitor, tenant)
    for i in range(VISITOR_MESSAGES.capacity):
        sent = await _post(visitor, tenant, "postmessage", convoID=convo, message=f"m{i}")
        assert sent.status_code == 200, (i, sent.json())
    flood = await _post(visitor, tenant, "postmessage", convoID=convo, message="one more")
    _assert_limited(flood, VISITOR_MESSAGES)
    history = await tenant.ok("gethistory", convoID=convo)
    assert "one more" not in [m["message"] for m in history["messages"]]
    # The budget is the conversation's: the same visitor's other conversation is unaffected.
    other = await _new_conversation(visitor, tenant)
    assert (await _post(visitor, tenant, "postmessage", convoID=other, message="hi")).is_success


async def test_new_conversations_are_limited_per_address_and_account(
    app: Starlette, visitor: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    convos = [await _new_conversation(visitor, tenant) for _ in range(NEW_CONVERSATIONS.limit)]
    refused = await _post(visitor, tenant, "postmessage", message="and another")
    _assert_limited(refused, NEW_CONVERSATIONS)
    # Conversations already open carry on; other accounts and other addresses are untouched.
    assert (await _post(visitor, tenant, "postmessage", convoID=convos[0], message="hi")).is_success
    await _new_conversation(visitor, other_tenant)
    async with _client(app, OTHER_IP) as neighbour:
        await _new_conversation(neighbour, tenant)


async def test_a_forwarded_for_header_counts_only_from_a_trusted_proxy(
    app: Starlette, visitor: httpx.AsyncClient, tenant: Tenant
) -> None:
    for _ in range(NEW_CONVERSATIONS.limit):
        await _new_conversation(visitor, tenant)

    async def post_forwarded(client: httpx.AsyncClient, forwarded_for: str) -> httpx.Response:
        return await client.post(
            f"/{tenant.account_id}/liveoperator/postmessage",
            data={"message": "hi"},
            headers={"X-Forwarded-For": forwarded_for},
        )

    # The app itself never reads the header: a visitor cannot claim another address.
    _assert_limited(await post_forwarded(visitor, OTHER_IP), NEW_CONVERSATIONS)
    # uvicorn, as `liveop serve` runs it, takes the header from trusted peers only
    # (FORWARDED_ALLOW_IPS, loopback by default): here the peer is a proxy on loopback.
    async with serve(app) as base, httpx.AsyncClient(base_url=f"http://{base}") as proxy:
        _assert_limited(await post_forwarded(proxy, VISITOR_IP), NEW_CONVERSATIONS)
        assert (await post_forwarded(proxy, OTHER_IP)).status_code == 200


async def test_chattyping_is_limited_per_conversation(
    visitor: httpx.AsyncClient, tenant: Tenant
) -> None:
    convo = await _new_conversation(visitor, tenant)
    for _ in range(VISITOR_TYPING.capacity):
        assert (await _post(visitor, tenant, "chattyping", convoID=convo)).is_success
    _assert_limited(await _post(visitor, tenant, "chattyping", convoID=convo), VISITOR_TYPING)
    assert (await _post(visitor, tenant, "postmessage", convoID=convo, message="hi")).is_success


async def test_the_app_command_api_is_not_limited(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Hello")
    for i in range(max(VISITOR_MESSAGES.capacity, VISITOR_TYPING.capacity) + 5):
        await tenant.ok("sendmessage", convoID=convo, message=f"m{i}")
        await tenant.ok("settyping", convoID=convo)
    for _ in range(NEW_CONVERSATIONS.limit + 5):
        await tenant.visitor_says("new")


# ------------------------------------------------------------------------------------------
# Login


async def _login(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post(LOGIN, json={"email": email, "password": password})


async def test_login_attempts_are_limited_per_email_from_any_address(
    app: Starlette, visitor: httpx.AsyncClient, tenant: Tenant
) -> None:
    email = f"alex@{tenant.account_id}.test"
    for _ in range(LOGIN_PER_EMAIL.limit):
        assert_error(await _login(visitor, email, "guess"), 401, "invalid_credentials")
    async with _client(app, OTHER_IP) as elsewhere:
        # Even the right password, in another case, from another address, waits.
        _assert_limited(await _login(elsewhere, email.upper(), TEST_PASSWORD), LOGIN_PER_EMAIL)
    admin = await _login(visitor, f"ada@{tenant.account_id}.test", TEST_PASSWORD)
    assert admin.status_code == 200, admin.json()


async def test_login_attempts_are_limited_per_address(
    app: Starlette, visitor: httpx.AsyncClient, tenant: Tenant
) -> None:
    for i in range(LOGIN_PER_IP.limit):
        assert_error(
            await _login(visitor, f"nobody{i}@x.test", "guess"), 401, "invalid_credentials"
        )
    email = f"alex@{tenant.account_id}.test"
    _assert_limited(await _login(visitor, email, TEST_PASSWORD), LOGIN_PER_IP)
    async with _client(app, OTHER_IP) as elsewhere:
        assert (await _login(elsewhere, email, TEST_PASSWORD)).status_code == 200


async def test_bad_login_input_is_still_400_not_a_spent_attempt(
    visitor: httpx.AsyncClient,
) -> None:
    for _ in range(LOGIN_PER_IP.limit + 1):
        assert_error(await visitor.post(LOGIN, json={"email": "a@x.test"}), 400, "missing_field")
    assert_error(await _login(visitor, "a@x.test", "guess"), 401, "invalid_credentials")


# ------------------------------------------------------------------------------------------
# Visitor WebSocket


async def test_a_flooding_socket_gets_error_frames_and_stays_open(
    app: Starlette, tenant: Tenant
) -> None:
    async with (
        serve(app) as base,
        websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws,
    ):
        await ws.send(type="hello")
        await ws.until("ready")
        await ws.send(type="send", message="Hello", clientMsgID="m-0")
        convo = (await ws.until("ack"))["convoID"]
        for i in range(1, VISITOR_MESSAGES.capacity + 1):
            await ws.send(type="send", message=f"m{i}", clientMsgID=f"m-{i}")
            assert (await ws.until("ack"))["clientMsgID"] == f"m-{i}"
        await ws.send(type="send", message="flood", clientMsgID="m-flood")
        error = await ws.until("error")
        assert error["clientMsgID"] == "m-flood"
        assert error["error"]["code"] == "rate_limited" and error["error"]["message"]
        assert 1 <= error["error"]["retry_after"] <= math.ceil(VISITOR_MESSAGES.interval_s)

        for _ in range(VISITOR_TYPING.capacity):
            await ws.send(type="typing")
        await ws.send(type="typing")
        assert (await ws.until("error"))["error"]["code"] == "rate_limited"

        await ws.send(type="ping")
        assert (await ws.until("pong"))["type"] == "pong", "the socket stays open"
    history = await tenant.ok("gethistory", convoID=convo)
    assert "flood" not in [m["message"] for m in history["messages"]]


async def test_a_socket_opening_conversations_spends_the_address_budget(
    app: Starlette, tenant: Tenant
) -> None:
    async with serve(app) as base:
        url = f"ws://{base}/{tenant.account_id}/liveoperator/ws"
        for i in range(NEW_CONVERSATIONS.limit + 1):
            async with websocket(url) as ws:
                await ws.send(type="hello")
                await ws.until("ready")
                await ws.send(type="send", message="Hello", clientMsgID=f"c-{i}")
                answer = await ws.recv()
                while answer["type"] not in ("ack", "error"):
                    answer = await ws.recv()
        assert answer["type"] == "error" and answer["error"]["code"] == "rate_limited"


# ------------------------------------------------------------------------------------------
# Configuration and processes


@asynccontextmanager
async def _running(environ: dict[str, str]) -> AsyncIterator[Starlette]:
    application = create_app(load_settings(environ))
    async with application.router.lifespan_context(application):
        yield application


async def test_limits_can_be_turned_off_for_load_tests(tmp_path: Path) -> None:
    environ = {"LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_RATE_LIMITS": "0"}
    async with _running(environ) as app, _client(app) as visitor:
        services = app.state.services
        assert isinstance(services, Services)
        account, _ = await services.directory.create_account("Bench")
        url = f"/{account.id}/liveoperator/postmessage"
        convo = (await visitor.post(url, data={"message": "hi"})).json()["convoID"]
        for i in range(VISITOR_MESSAGES.capacity + 5):
            sent = await visitor.post(url, data={"convoID": convo, "message": f"m{i}"})
            assert sent.status_code == 200, sent.json()


def test_the_switch_is_a_flag() -> None:
    with pytest.raises(SettingsError, match="LIVEOP_RATE_LIMITS"):
        load_settings({"LIVEOP_SECRET_KEY": "k" * 32, "LIVEOP_RATE_LIMITS": "maybe"})


async def test_processes_on_one_redis_share_every_limit(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    """Two apps, each with its own store, as two processes would be: a budget spent on one is
    spent on the other."""

    def environ(name: str) -> dict[str, str]:
        return {"LIVEOP_DATA_DIR": str(tmp_path / name), "LIVEOP_BROKER_URL": redis_server.url}

    async with (
        _running(environ("a")) as first,
        _running(environ("b")) as second,
        _client(first) as on_first,
        _client(second) as on_second,
    ):
        for _ in range(LOGIN_PER_EMAIL.limit):
            assert (await _login(on_first, "jo@x.test", "guess")).status_code == 401
        _assert_limited(await _login(on_second, "jo@x.test", "guess"), LOGIN_PER_EMAIL)
    # Namespaced, and forgotten by Redis once the budget is whole again.
    ttl_ms = await redis_server.client().pttl("liveop:rl:login-email:jo@x.test")
    assert 0 < ttl_ms <= LOGIN_PER_EMAIL.per_s * 1000
