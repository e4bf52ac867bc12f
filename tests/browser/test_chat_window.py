"""The visitor chat window in a real Chromium, against a real server, with an operator
answering through the App Command API.

These tests drive the polling transport (chatpoll, postmessage, chattyping): each page is
opened without ``window.WebSocket``, which is also how the window falls back in browsers or
networks without WebSockets. The WebSocket transport is tested in test_chat_window_socket.py.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs

import httpx
import pytest

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "docs" / "screenshots" / "chat-window.png"

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]], what: str, limit_s: float = 10.0, interval: float = 0.2
) -> T:
    """Calls ``probe`` until it returns something truthy; fails after ``limit_s`` seconds."""
    deadline = time.monotonic() + limit_s
    while True:
        result = await probe()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {limit_s:.0f} s waiting for {what}", pytrace=False)
        await asyncio.sleep(interval)


def form_of(request: Any) -> dict[str, str]:
    """The form-encoded body of a request, one value per field."""
    assert "application/x-www-form-urlencoded" in request.headers.get("content-type", "")
    return {k: v[0] for k, v in parse_qs(request.post_data or "", keep_blank_values=True).items()}


def is_endpoint(name: str) -> Callable[[Any], bool]:
    return lambda r: r.url.split("?")[0].endswith(f"/liveoperator/{name}")


async def stored_convo(page: Any, server: LiveServer) -> str:
    key = f"liveop:{server.account_id}:convo"
    handle = await page.wait_for_function("(k) => localStorage.getItem(k)", arg=key)
    return str(await handle.json_value())


async def test_visitor_chats_with_operator(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    await operator_api.online()
    window = await open_window(websocket=False, viewport={"width": 420, "height": 720})
    page = window.page
    op_id = operator_api.operator_id
    await page.goto(live_server.chat_url)

    await expect(page).to_have_title(re.compile(live_server.account_name))
    await expect(page.locator("#title")).to_have_text(live_server.account_name)
    await expect(page.locator("#messages")).to_have_attribute("aria-live", "polite")
    await expect(page.locator("#typing")).to_be_hidden()
    await expect(page.locator("#banner")).to_be_hidden()
    await expect(page.locator("#send")).to_be_disabled()  # nothing to send yet
    await expect(page.locator("body")).to_have_attribute("data-transport", "polling")

    # Optional visitor details, in a collapsible area.
    await page.locator("#details summary").click()
    await page.get_by_label("Your name", exact=True).fill("Dana")
    await page.get_by_label("Email", exact=True).fill("dana@example.com")

    # The first message creates the conversation.
    composer = page.get_by_label("Message", exact=True)
    await composer.fill("Hi, I need help")
    async with page.expect_response(is_endpoint("postmessage")) as posted:
        await page.locator("#send").click()
    response = await posted.value
    assert response.status == 200
    sent = await response.json()
    assert sent["success"] is True
    convo_id = sent["convoID"]
    fields = form_of(response.request)
    assert fields["message"] == "Hi, I need help"
    assert "convoID" not in fields  # the server creates the conversation
    assert fields["fname"] == "Dana"
    assert fields["email"] == "dana@example.com"
    assert re.fullmatch(r"[0-9a-f-]{36}", fields["clientMsgID"])
    assert sent["message"]["clientMsgID"] == fields["clientMsgID"]

    visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
    await expect(visitor_msgs).to_have_count(1)
    await expect(visitor_msgs).to_contain_text("Hi, I need help")
    await expect(visitor_msgs).to_have_attribute("data-seq", str(sent["message"]["seq"]))
    await expect(composer).to_have_value("")
    assert await stored_convo(page, live_server) == convo_id

    # The operator's poll returns the visitor's message.
    polled = await operator_api.command("poll", convoID=convo_id, operatorID=op_id)
    texts = [m["message"] for m in polled["messages"] if m["sender"] == "visitor"]
    assert texts == ["Hi, I need help"]

    # The visitor types: the window reports it and the operator's poll sees it.
    async with page.expect_request(is_endpoint("chattyping")) as typing_request:
        await composer.press_sequentially("Is anyone there?", delay=15)
    assert form_of(await typing_request.value)["convoID"] == convo_id

    async def visitor_typing() -> bool:
        answer = await operator_api.command("poll", convoID=convo_id, operatorID=op_id)
        return answer["typing"] is True

    await eventually(visitor_typing, "the operator's poll to report the visitor typing")

    # The operator types: the visitor sees the indicator.
    await operator_api.command("settyping", convoID=convo_id, operatorID=op_id)
    typing = page.locator("#typing")
    await expect(typing).to_be_visible()
    await expect(typing).to_contain_text("is typing")
    await expect(typing).to_have_attribute("aria-live", "polite")

    # The operator answers: the visitor sees it with the operator's name.
    reply = await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=op_id, message="Hello! I'm Alex"
    )
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
    await expect(operator_msgs).to_have_count(1)
    await expect(operator_msgs).to_contain_text("Hello! I'm Alex")
    await expect(operator_msgs.locator(".msg__name")).to_have_text(live_server.operator_name)
    await expect(operator_msgs).to_have_attribute("data-seq", str(reply["message"]["seq"]))
    await expect(page.locator("#subtitle")).to_contain_text(live_server.operator_name)
    # The indicator expires on the server (5 s) once the operator stops typing.
    await expect(typing).to_be_hidden()

    # The draft typed earlier goes out with the conversation id.
    async with page.expect_response(is_endpoint("postmessage")) as second:
        await composer.press("Enter")
    second_response = await second.value
    assert second_response.status == 200
    assert form_of(second_response.request)["convoID"] == convo_id
    await expect(visitor_msgs).to_have_count(2)
    await expect(visitor_msgs.nth(1)).to_contain_text("Is anyone there?")

    # The server's record of the conversation.
    history = await operator_api.command("gethistory", convoID=convo_id)
    conversation = history["conversation"]
    assert conversation["convoID"] == convo_id
    assert conversation["sourceApp"] == "liveoperator"
    assert conversation["status"] == "active"
    assert conversation["operatorID"] == op_id
    assert history["userInfo"]["fname"] == "Dana"
    assert history["userInfo"]["email"] == "dana@example.com"
    by_seq = sorted(history["messages"], key=lambda m: m["seq"])
    assert [(m["sender"], m["message"]) for m in by_seq] == [
        ("visitor", "Hi, I need help"),
        ("operator", "Hello! I'm Alex"),
        ("visitor", "Is anyone there?"),
    ]
    expected_seqs = [str(m["seq"]) for m in by_seq]

    # Reload: the window resumes the stored conversation and shows its history once, in
    # order, also after the polls that follow the history load.
    all_msgs = page.locator("#messages .msg")
    await page.reload()
    await expect(all_msgs).to_have_count(3)
    async with page.expect_response(
        lambda r: is_endpoint("chatpoll")(r) and "afterSeq" in form_of(r.request)
    ) as follow_up:
        pass
    assert (await follow_up.value).status == 200
    await expect(all_msgs).to_have_count(3)
    seqs = await all_msgs.evaluate_all("els => els.map(e => e.dataset.seq)")
    assert seqs == expected_seqs
    await expect(page.locator("#welcome")).to_be_hidden()
    await expect(operator_msgs.locator(".msg__name")).to_have_text(live_server.operator_name)

    # The same conversation opened by its URL in a fresh browser (no stored state).
    other = await open_window(websocket=False)
    await other.page.goto(f"{live_server.chat_url}/{convo_id}")
    other_msgs = other.page.locator("#messages .msg")
    await expect(other_msgs).to_have_count(3)
    assert await other_msgs.evaluate_all("els => els.map(e => e.dataset.seq)") == expected_seqs

    assert window.errors == []
    assert other.errors == []


async def test_mobile_window_is_keyboard_usable(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    width = 375
    window = await open_window(
        websocket=False,
        viewport={"width": width, "height": 667},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    page = window.page
    await page.goto(live_server.chat_url)
    await expect(page.locator("#title")).to_have_text(live_server.account_name)

    # Keyboard only: Tab reaches the composer.
    composer = page.locator("#composer")
    for _ in range(15):
        await page.keyboard.press("Tab")
        if await composer.evaluate("el => el === document.activeElement"):
            break
    await expect(composer).to_be_focused()
    # The focus is visible: the composer box draws a ring around the focused textarea.
    ring = await page.locator("#composer-form").evaluate("el => getComputedStyle(el).boxShadow")
    assert ring != "none"

    # Shift+Enter is a newline; Enter sends.
    await page.keyboard.type("Do you ship to Canada?")
    await page.keyboard.press("Shift+Enter")
    await page.keyboard.type("And to Mexico?")
    await expect(composer).to_have_value("Do you ship to Canada?\nAnd to Mexico?")
    await page.keyboard.press("Enter")
    visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
    await expect(visitor_msgs).to_have_count(1)
    await expect(visitor_msgs.locator(".msg__bubble")).to_have_text(
        "Do you ship to Canada?\nAnd to Mexico?"
    )
    await expect(visitor_msgs).to_have_attribute("data-seq", re.compile(r"^\d+$"))
    await expect(composer).to_have_value("")
    await expect(composer).to_be_focused()  # ready for the next message
    convo_id = await stored_convo(page, live_server)

    # The operator answers with a link: shown as a safe link.
    await operator_api.command(
        "sendmessage",
        convoID=convo_id,
        operatorID=operator_api.operator_id,
        message="Yes, we ship to both! Rates: https://example.com/shipping.",
    )
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
    await expect(operator_msgs).to_have_count(1)
    link = operator_msgs.locator("a")
    await expect(link).to_have_attribute("href", "https://example.com/shipping")
    await expect(link).to_have_attribute("rel", re.compile("noopener"))

    # It fits the narrow viewport: no sideways scrolling, composer on screen.
    scroll_width = await page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= width
    await expect(composer).to_be_in_viewport()
    await expect(page.locator("#send")).to_be_in_viewport()

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 0

    # Markup in a message is text, never HTML.
    markup = '<img src=x onerror="window.__pwned=1"><b>bold</b>'
    await page.keyboard.type(markup)
    await page.keyboard.press("Enter")
    await expect(visitor_msgs).to_have_count(2)
    await expect(visitor_msgs.nth(1).locator(".msg__bubble")).to_have_text(markup)
    assert await page.locator("#messages img, #messages b").count() == 0
    assert await page.evaluate("window.__pwned") is None

    assert window.errors == []


async def test_window_recovers_from_trouble(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import Route, expect

    window = await open_window(websocket=False)
    page = window.page
    op_id = operator_api.operator_id
    key = f"liveop:{live_server.account_id}:convo"
    banner = page.locator("#banner")

    # A stored conversation the server does not know is forgotten: the window starts fresh.
    await page.goto(live_server.chat_url)
    await page.evaluate("(k) => localStorage.setItem(k, 'no-such-conversation')", key)

    # The page loaded above may still be polling: wait for the poll that names the stale id.
    def stale_chatpoll(response: Any) -> bool:
        request = response.request
        return bool(
            is_endpoint("chatpoll")(response)
            and form_of(request).get("convoID") == "no-such-conversation"
        )

    async with page.expect_response(stale_chatpoll) as stale_poll:
        await page.reload()
    stale = await stale_poll.value
    assert stale.status == 404
    assert (await stale.json())["error"]["code"] == "conversation_not_found"
    await page.wait_for_function("(k) => localStorage.getItem(k) === null", arg=key)
    await expect(page.locator("#welcome")).to_be_visible()
    await expect(banner).to_be_hidden()

    # The answer to the first postmessage is lost after the server stored the message: the
    # window retries with the same clientMsgID and the message exists (and shows) once.
    attempts: list[str] = []

    async def lose_answer(route: Route) -> None:
        attempts.append(form_of(route.request)["clientMsgID"])
        if len(attempts) == 1:
            await route.fetch()  # reaches the server...
            await route.abort()  # ...but the browser never hears back
        else:
            await route.continue_()

    await page.route("**/liveoperator/postmessage", lose_answer)
    await page.locator("#composer").fill("Is my order on its way?")
    await page.locator("#composer").press("Enter")
    visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
    await expect(visitor_msgs).to_have_count(1)
    await expect(visitor_msgs).to_have_attribute("data-seq", re.compile(r"^\d+$"))
    await page.unroute("**/liveoperator/postmessage")
    assert len(attempts) == 2
    assert attempts[0] == attempts[1]
    convo_id = await stored_convo(page, live_server)
    history = await operator_api.command("gethistory", convoID=convo_id)
    assert [m["message"] for m in history["messages"]] == ["Is my order on its way?"]

    # Polls fail: a "Reconnecting…" banner, then recovery with whatever was missed.
    await page.route("**/liveoperator/chatpoll", lambda route: route.abort())
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Reconnecting")
    await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=op_id, message="Yes, it ships today."
    )
    await page.unroute("**/liveoperator/chatpoll")
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
    await expect(operator_msgs).to_have_count(1)
    await expect(operator_msgs).to_contain_text("Yes, it ships today.")
    await expect(banner).to_be_hidden()

    # Resolved: a status line; writing again reopens the conversation and clears it.
    status = page.locator("#status")
    await expect(status).to_be_hidden()
    await operator_api.command("setstatus", convoID=convo_id, status="resolved")
    await expect(status).to_be_visible()
    await expect(status).to_contain_text("resolved")
    await page.locator("#composer").fill("One more question")
    await page.locator("#composer").press("Enter")
    await expect(visitor_msgs).to_have_count(2)
    await expect(status).to_be_hidden()
    history = await operator_api.command("gethistory", convoID=convo_id)
    assert history["conversation"]["status"] != "resolved"
    await expect(page.locator("#messages .msg")).to_have_count(3)
    assert window.errors == []


async def test_chat_window_modules_are_served_by_name_only(live_server: LiveServer) -> None:
    """Each module of the chat window is on the allow-list, announced in the page and served
    as JavaScript; nothing else of the package is served beside them."""
    from server.api.chat_window import CHAT_MODULES

    on_disk = sorted(p.stem for p in (REPO_ROOT / "widget_assets" / "chat").glob("*.js"))
    assert sorted(CHAT_MODULES) == on_disk
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        page = await client.get(live_server.chat_url.removeprefix(live_server.base_url))
        # Module scripts load under the page's policy: same-origin scripts only.
        assert page.headers["content-security-policy"].startswith("default-src 'self';")
        for name in CHAT_MODULES:
            assert f'<link rel="modulepreload" href="/assets/chat/{name}.js">' in page.text
            module = await client.get(f"/assets/chat/{name}.js")
            assert module.status_code == 200, name
            assert module.headers["content-type"].startswith("text/javascript"), name
        for path in ("/assets/chat/", "/assets/chat", "/assets/app/app.js", "/assets/widget.js"):
            assert (await client.get(path)).status_code == 404, path
