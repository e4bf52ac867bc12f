"""Issue 21 item 10: userInfo.email took "a@x.com, b@evil.example", and replies went to both.

Every place that accepts an email takes one syntactically valid address, by one rule.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from starlette.applications import Starlette

from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.server.realtime_clients import serve, websocket

NOT_ONE_ADDRESS = [
    "a@x.com, b@evil.example",
    "a@x.com; b@evil.example",
    "a@x.com b@evil.example",
    "Jane <a@x.com>",
    "<a@x.com>",
    "a@b@evil.example",
    "a..b@x.com",
    "a@x",
    "a@x.com.",
]


@pytest.fixture
async def base(app: Starlette) -> AsyncIterator[str]:
    async with serve(app) as address:
        yield address


async def _token(tenant: Tenant, name: str) -> dict[str, str]:
    response = await tenant.client.post(
        "/api/v1/auth/login",
        json={"email": f"{name}@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    return bearer(response.json()["token"])


@pytest.mark.parametrize("email", NOT_ONE_ADDRESS)
async def test_an_address_list_as_userinfo_email_is_refused_everywhere(
    tenant: Tenant, email: str
) -> None:
    api = await tenant.command("sendmessage", message="hi", userInfo={"email": email})
    assert_error(api, 400, "invalid_user_info")
    window = await tenant.client.post(
        f"/{tenant.account_id}/liveoperator/postmessage", data={"message": "hi", "email": email}
    )
    assert_error(window, 400, "invalid_user_info")
    convo = await tenant.visitor_says("hello")
    patched = await tenant.client.patch(
        f"/api/v1/operator/conversation/{convo}/visitor",
        json={"email": email},
        headers=await _token(tenant, "alex"),
    )
    assert_error(patched, 400, "invalid_user_info")
    operator = await tenant.client.post(
        "/api/v1/admin/operators",
        json={"name": "Bo", "email": email, "password": "bo-password-1"},
        headers=await _token(tenant, "ada"),
    )
    assert_error(operator, 400, "invalid_field")
    history = await tenant.ok("gethistory", convoID=convo)
    assert history["userInfo"]["email"] == ""


async def test_an_address_list_on_the_visitor_socket_is_an_error_frame(
    base: str, tenant: Tenant
) -> None:
    async with websocket(f"ws://{base}/{tenant.account_id}/liveoperator/ws") as ws:
        await ws.send(type="hello")
        await ws.until("ready")
        await ws.send(type="send", message="hi", email="a@x.com, b@evil.example")
        assert (await ws.until("error"))["error"]["code"] == "invalid_user_info"


@pytest.mark.parametrize(
    "email", ["j@x.io", "jane.doe+orders@mail.example.co.uk", "m\u00fcller@beispiel.de"]
)
async def test_one_address_is_still_accepted(tenant: Tenant, email: str) -> None:
    convo = await tenant.visitor_says("hi", userInfo={"email": email})
    history = await tenant.ok("gethistory", convoID=convo)
    assert history["userInfo"]["email"] == email
