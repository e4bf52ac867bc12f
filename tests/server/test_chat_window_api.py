"""The chat-window mode URLs: public, account in the path, convoID as the capability."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from server.services import Services
from tests.conftest import Tenant


def _url(tenant: Tenant, mode: str) -> str:
    return f"/{tenant.account_id}/liveoperator/{mode}"


async def _post(tenant: Tenant, mode: str, **fields: Any) -> httpx.Response:
    return await tenant.client.post(_url(tenant, mode), data=fields)


async def test_postmessage_creates_a_live_chat_conversation(tenant: Tenant) -> None:
    response = await _post(tenant, "postmessage", message="Hi!", fname="Jane", email="j@x.io")
    body = response.json()
    assert response.status_code == 200 and body["success"] is True
    history = await tenant.ok("gethistory", convoID=body["convoID"])
    assert history["conversation"]["sourceApp"] == "liveoperator"
    assert history["userInfo"]["fname"] == "Jane" and history["userInfo"]["email"] == "j@x.io"
    assert body["message"]["sender"] == "visitor"


async def test_visitor_and_operator_converse_through_chatpoll(tenant: Tenant) -> None:
    first = (await _post(tenant, "postmessage", message="Hello")).json()
    convo = first["convoID"]
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi")
    await tenant.ok("settyping", convoID=convo, operatorID=tenant.operator_id)
    polled = (await _post(tenant, "chatpoll", convoID=convo, afterSeq=1)).json()
    assert [m["message"] for m in polled["messages"]] == ["Hi"]
    assert polled["typing"] is True and polled["status"] == "active"
    assert polled["messages"][0]["operatorName"] == "Alex"
    assert (await _post(tenant, "chatpoll", convoID=convo, afterSeq=2)).json()["messages"] == []


async def test_chatpoll_since_zero_loads_the_whole_recent_history(tenant: Tenant) -> None:
    convo = (await _post(tenant, "postmessage", message="one")).json()["convoID"]
    await _post(tenant, "postmessage", message="two", convoID=convo)
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="three")
    polled = (await _post(tenant, "chatpoll", convoID=convo, since=0)).json()
    assert [m["message"] for m in polled["messages"]] == ["one", "two", "three"]
    since = polled["messages"][1]["created"]
    later = (
        await tenant.client.get(_url(tenant, "chatpoll"), params={"convoID": convo, "since": since})
    ).json()
    assert [m["message"] for m in later["messages"]] == ["three"]


async def test_chatpoll_marks_operator_messages_read_by_the_visitor(tenant: Tenant) -> None:
    convo = (await _post(tenant, "postmessage", message="Hello")).json()["convoID"]
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi")
    await _post(tenant, "chatpoll", convoID=convo, since=0)
    assert (await tenant.ok("poll", convoID=convo))["messages"] == []


async def test_chattyping_reaches_the_operator(tenant: Tenant) -> None:
    convo = (await _post(tenant, "postmessage", message="Hello")).json()["convoID"]
    assert (await _post(tenant, "chattyping", convoID=convo)).json() == {"success": True}
    assert (await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id))["typing"]


async def test_clientmsgid_makes_a_resent_visitor_message_count_once(tenant: Tenant) -> None:
    # Without a convoID a retry is recognised within the window's session (issue 21 item 1).
    sent = {"message": "Hi", "clientMsgID": "u-1", "sessionID": "window-session-1"}
    first = (await _post(tenant, "postmessage", **sent)).json()
    again = (await _post(tenant, "postmessage", **sent)).json()
    assert again["convoID"] == first["convoID"] and again["duplicate"] is True
    history = await tenant.ok("gethistory", convoID=first["convoID"])
    assert len(history["messages"]) == 1


async def test_loadchat_serves_the_window(tenant: Tenant) -> None:
    response = await tenant.client.get(_url(tenant, "loadchat"))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert tenant.account_id in response.text
    assert response.headers["referrer-policy"] == "no-referrer"
    assert "frame-ancestors *" in response.headers["content-security-policy"]
    convo = (await _post(tenant, "postmessage", message="Hi")).json()["convoID"]
    resumed = await tenant.client.get(_url(tenant, f"loadchat/{convo}"))
    assert resumed.status_code == 200 and convo in resumed.text


async def test_account_name_is_escaped_in_the_window(
    client: httpx.AsyncClient, services: Services
) -> None:
    account, _ = await services.directory.create_account('<script>alert("x")</script>')
    page = (await client.get(f"/{account.id}/liveoperator/loadchat")).text
    assert "<script>alert" not in page and "&lt;script&gt;" in page


@pytest.mark.parametrize(
    ("mode", "fields", "status", "code"),
    [
        ("postmessage", {"message": "hi", "operatorID": "1"}, 400, "operator_not_allowed"),
        ("postmessage", {"message": "hi", "sender": "bot"}, 400, "operator_not_allowed"),
        ("postmessage", {"message": "hi", "canned": "1"}, 400, "operator_not_allowed"),
        ("postmessage", {}, 400, "missing_field"),
        ("postmessage", {"message": "  "}, 400, "empty_message"),
        ("postmessage", {"message": "x" * 5001}, 400, "message_too_long"),
        ("postmessage", {"message": "hi", "email": "nope"}, 400, "invalid_user_info"),
        ("postmessage", {"message": "hi", "convoID": "nope"}, 404, "conversation_not_found"),
        ("chatpoll", {}, 400, "missing_field"),
        ("chatpoll", {"convoID": "nope"}, 404, "conversation_not_found"),
        ("chatpoll", {"convoID": "{convo}", "afterSeq": "-1"}, 400, "invalid_field"),
        ("chatpoll", {"convoID": "{convo}", "since": "soon"}, 400, "invalid_field"),
        ("chatpoll", {"convoID": "{convo}", "operatorID": "1"}, 400, "operator_not_allowed"),
        ("chattyping", {}, 400, "missing_field"),
        ("chattyping", {"convoID": "{foreign}"}, 404, "conversation_not_found"),
    ],
)
async def test_bad_chat_window_input(
    tenant: Tenant,
    other_tenant: Tenant,
    services: Services,
    mode: str,
    fields: dict[str, str],
    status: int,
    code: str,
) -> None:
    mine = (await _post(tenant, "postmessage", message="mine")).json()["convoID"]
    theirs = (await _post(other_tenant, "postmessage", message="theirs")).json()["convoID"]
    filled = {k: v.replace("{convo}", mine).replace("{foreign}", theirs) for k, v in fields.items()}
    before = await tenant.event_seq(services)
    response = await _post(tenant, mode, **filled)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert await tenant.event_seq(services) == before


async def test_unknown_account(client: httpx.AsyncClient) -> None:
    for response in (
        await client.get("/nope/liveoperator/loadchat"),
        await client.post("/nope/liveoperator/postmessage", data={"message": "hi"}),
    ):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "account_not_found"


async def test_another_accounts_conversation_does_not_load(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    theirs = (await _post(other_tenant, "postmessage", message="secret")).json()["convoID"]
    response = await tenant.client.get(_url(tenant, f"loadchat/{theirs}"))
    assert response.status_code == 404
    assert "secret" not in response.text


async def test_widget_config_is_the_sites_public_look_readable_from_any_origin(
    tenant: Tenant,
) -> None:
    headers = {"X-Api-Key": tenant.api_key}
    created = await tenant.client.post(
        "/api/v1/admin/sites",
        headers=headers,
        json={"name": "Shop", "color": "#FF8800", "position": "left", "greeting": "Hej!"},
    )
    assert created.status_code == 201, created.json()
    site_id = created.json()["site"]["id"]
    response = await tenant.client.get(_url(tenant, "widget-config"), params={"site": site_id})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json()["site"] == {
        "id": site_id, "name": "Shop", "color": "#ff8800", "position": "left", "greeting": "Hej!",
    }  # fmt: skip
    default = (await tenant.client.get(_url(tenant, "widget-config"))).json()["site"]
    assert default["id"] == 1 and default["position"] == "right"


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"site": "99"}, 404, "site_not_found"),
        ({"site": "0"}, 400, "invalid_field"),
        ({"site": "x"}, 400, "invalid_field"),
    ],
)
async def test_widget_config_refuses_unknown_and_malformed_sites(
    tenant: Tenant, params: dict[str, str], status: int, code: str
) -> None:
    response = await tenant.client.get(_url(tenant, "widget-config"), params=params)
    assert response.status_code == status and response.json()["error"]["code"] == code


async def test_widget_config_of_another_accounts_site_is_not_found(
    tenant: Tenant, other_tenant: Tenant
) -> None:
    await other_tenant.client.post(
        "/api/v1/admin/sites", headers={"X-Api-Key": other_tenant.api_key}, json={"name": "B"}
    )
    response = await tenant.client.get(_url(tenant, "widget-config"), params={"site": 2})
    assert response.status_code == 404


@pytest.mark.parametrize(
    ("account", "query", "status", "code"),
    [
        (None, "site=99", 404, "site_not_found"),
        (None, "site=0", 400, "invalid_field"),
        (None, "site=%ff", 400, "invalid_encoding"),
        ("no-such-account", "", 404, "site_not_found"),
        ("x" * 200, "", 400, "invalid_field"),
    ],
)
async def test_widget_config_errors_are_readable_from_any_origin(
    tenant: Tenant, account: str | None, query: str, status: int, code: str
) -> None:
    """widget.js reads these from the customer's page: without the header the browser would
    log a CORS error there instead of handing the widget the answer."""
    path = f"/{account or tenant.account_id}/liveoperator/widget-config"
    response = await tenant.client.get(f"{path}?{query}")
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == "*"
    body = response.json()
    assert body["success"] is False and body["error"]["code"] == code
    # An error is no site setting to keep: only a successful answer may be cached.
    assert "cache-control" not in response.headers


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/assets/chat.js", 200),
        ("/assets/chat.css", 200),
        ("/assets/app/index.html", 404),  # the inbox, served only under /app/ with its CSP
        ("/assets/__init__.py", 404),
        ("/assets/chat.html", 404),  # the template, served only filled in by loadchat
        ("/assets/../server/app.py", 404),
    ],
)
async def test_assets_serve_only_the_chat_windows_files(
    tenant: Tenant, path: str, status: int
) -> None:
    assert (await tenant.client.get(path)).status_code == status
