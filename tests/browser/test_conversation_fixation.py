"""Conversation fixation (issue 21, item 2), in a real Chromium against a real server.

``/{account}/liveoperator/loadchat/{convoID}`` opens a conversation by its capability, so
whoever made the link reads what is written there. Opening such a link once used to make that
conversation the one the browser remembers: an attacker who sent a visitor the link to their
own conversation then read everything the visitor (and the operators answering them) wrote
afterwards, in the plain chat window and in a widget embedded on the chat server's own site.
A link's conversation is shown and continued in its own window only; the browser keeps the
conversation it started itself."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .test_chat_window import stored_convo
from .test_chat_window_socket import script_errors
from .test_widget import (
    FRAME,
    LAUNCHER,
    HostSite,
    chat_frame,
    page_errors,
    send_as_visitor,
    serve_host_site,
    stored,
)

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI

pytestmark = pytest.mark.browser

ATTACKER_TEXT = "Hello, I need help with my order"


@pytest.fixture(scope="module")
def same_site_host(chromium_executable: str) -> Iterator[HostSite]:
    # 127.0.0.1 on another port: the same site as the chat server, so the widget's chat window
    # shares its storage with the window opened from a link (no partition between them).
    with serve_host_site("127.0.0.1") as site:
        yield site


async def attackers_conversation(server: LiveServer) -> str:
    """A conversation the attacker opened as an anonymous visitor, and so can read."""
    async with httpx.AsyncClient(base_url=server.base_url) as client:
        answer = await client.post(
            f"/{server.account_id}/liveoperator/postmessage", data={"message": ATTACKER_TEXT}
        )
    assert answer.status_code == 200, answer.text
    convo_id: str = answer.json()["convoID"]
    return convo_id


async def texts(operator_api: OperatorAPI, convo_id: str) -> list[str]:
    history = await operator_api.command("gethistory", convoID=convo_id)
    return [m["message"] for m in sorted(history["messages"], key=lambda m: m["seq"])]


async def remembered(page: Any, server: LiveServer) -> str | None:
    key = f"liveop:{server.account_id}:convo"
    value: str | None = await page.evaluate("(k) => localStorage.getItem(k)", key)
    return value


async def send(page: Any, text: str) -> None:
    from playwright.async_api import expect

    sent = page.locator('#messages .msg[data-sender="visitor"][data-seq]')
    before = await sent.count()
    await page.locator("#composer").fill(text)
    await page.locator("#composer").press("Enter")
    await expect(sent).to_have_count(before + 1)


@pytest.mark.parametrize("websocket", [True, False], ids=["socket", "polling"])
async def test_conversation_fixation_a_link_does_not_replace_the_remembered_conversation(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    websocket: bool,
) -> None:
    from playwright.async_api import expect

    attacker = await attackers_conversation(live_server)
    window = await open_window(websocket=websocket)
    page = window.page
    messages = page.locator("#messages .msg")

    # The victim's own conversation.
    await page.goto(live_server.chat_url)
    await send(page, "Where is my parcel?")
    own = await stored_convo(page, live_server)

    # The attacker's link shows the attacker's conversation...
    await page.goto(f"{live_server.chat_url}/{attacker}")
    await expect(messages).to_have_count(1)
    await expect(messages).to_contain_text(ATTACKER_TEXT)
    # ...and the browser still remembers its own.
    assert await remembered(page, live_server) == own

    # The chat window without a link continues the victim's conversation, and what the victim
    # writes next reaches it, never the attacker's.
    await page.goto(live_server.chat_url)
    await expect(messages).to_have_count(1)
    await expect(messages).to_contain_text("Where is my parcel?")
    await send(page, "My card ends in 4242")
    assert await texts(operator_api, own) == ["Where is my parcel?", "My card ends in 4242"]
    assert await texts(operator_api, attacker) == [ATTACKER_TEXT]

    # Writing in the link's own window is choosing that conversation: the message goes there
    # (the visitor sees whose conversation it is), and the remembered one still stays.
    await page.goto(f"{live_server.chat_url}/{attacker}")
    await expect(messages).to_have_count(1)
    await send(page, "Who is this?")
    assert await texts(operator_api, attacker) == [ATTACKER_TEXT, "Who is this?"]
    assert await remembered(page, live_server) == own
    await page.reload()  # the link's window keeps showing the link's conversation
    await expect(messages).to_have_count(2)
    await page.goto(live_server.chat_url)
    await expect(messages).to_have_count(2)
    await expect(messages.last).to_contain_text("My card ends in 4242")
    assert script_errors(window) == []


async def test_conversation_fixation_a_same_site_widget_keeps_its_own_conversation(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    same_site_host: HostSite,
) -> None:
    """A browser with no conversation of its own opens the attacker's link; later the widget
    on the chat server's own site starts a new conversation instead of continuing the link's."""
    from playwright.async_api import expect

    attacker = await attackers_conversation(live_server)
    window = await open_window()
    page = window.page
    await page.goto(f"{live_server.chat_url}/{attacker}")
    await expect(page.locator("#messages .msg")).to_contain_text(ATTACKER_TEXT)
    assert await remembered(page, live_server) is None

    await page.goto(same_site_host.add(live_server, "shop"))
    await page.locator(LAUNCHER).click()
    chat = page.frame_locator(FRAME)
    await expect(chat.locator("#welcome")).to_be_visible()
    await expect(chat.locator("#messages .msg")).to_have_count(0)
    await send_as_visitor(page, "Can I change my delivery address?")
    frame = await chat_frame(page)
    own = await stored(frame, live_server, "convo")
    assert own != attacker
    assert await texts(operator_api, own) == ["Can I change my delivery address?"]
    assert await texts(operator_api, attacker) == [ATTACKER_TEXT]
    assert page_errors(window) == []
