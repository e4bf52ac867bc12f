"""The chat window with a site's AI assistant (issue 17), in a real Chromium against a real
server and a real OpenAI-compatible model server (LLMock) on loopback: the visitor chats with
the assistant, asks for a person, the operator sees the AI dialogue in the inbox and replies,
the assistant never answers again, and the visitor sees the operator's reply."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import pytest
from llmock.pytest_plugin import LLMock

from server.widgets import HANDOVER_TEXT

from .test_inbox import DESKTOP, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser

FIRST_ANSWER = "Yes, we ship to Canada within 5 working days."


def _admin(server: LiveServer, method: str, path: str, body: Any = None) -> dict[str, Any]:
    response = httpx.request(
        method,
        f"{server.base_url}/api/v1/admin/{path}",
        json=body,
        headers={"X-Api-Key": server.api_key},
    )
    assert response.status_code in (200, 201), response.text
    found: dict[str, Any] = response.json()
    return found


async def _send(page: Any, text: str) -> None:
    """Types and sends as the visitor; returns once the server has the message."""
    from playwright.async_api import expect

    sent = page.locator('.msg[data-sender="visitor"][data-seq]')
    before = await sent.count()
    await page.locator("#composer").fill(text)
    await page.locator("#composer").press("Enter")
    await expect(sent).to_have_count(before + 1)


async def test_the_assistant_answers_until_a_person_takes_over(
    open_window: OpenWindow, live_server: LiveServer, llmock: LLMock
) -> None:
    from playwright.async_api import expect

    llmock.tool_mode("off")
    assistant = _admin(
        live_server,
        "POST",
        "assistants",
        {
            "name": "Concierge",
            "base_url": llmock.base_url("openai"),
            "model": "gpt-4o-mini",
            "api_key": "sk-browser",
            "monthly_token_budget": 100_000,
        },
    )["assistant"]
    site = _admin(live_server, "POST", "sites", {"name": "Shop"})["site"]
    _admin(live_server, "PATCH", f"sites/{site['id']}", {"assistant_id": assistant["id"]})

    operator = await open_window(viewport=DESKTOP)
    op = operator.page
    await sign_in(op, live_server)
    visitor = await open_window(viewport={"width": 480, "height": 760})
    vp = visitor.page
    await vp.goto(f"{live_server.chat_url}?site={site['id']}")

    # The assistant answers the visitor first, in the window, marked as the assistant.
    llmock.reply(FIRST_ANSWER)
    await _send(vp, "Do you ship to Canada?")
    bot_lines = vp.locator('.msg[data-sender="bot"]')
    await expect(bot_lines).to_have_count(1)
    await expect(bot_lines.first).to_contain_text(FIRST_ANSWER)
    await expect(bot_lines.first.locator(".msg__name")).to_have_text("Assistant")

    # The visitor asks for a person: the assistant hands over without asking the model.
    await _send(vp, "Can I talk to a real person please?")
    await expect(bot_lines).to_have_count(2)
    await expect(bot_lines.nth(1)).to_contain_text(HANDOVER_TEXT)
    assert len(llmock.requests) == 1

    # The operator sees the whole AI dialogue, the assistant's lines as the bot's, and replies.
    convo_id = await vp.evaluate(
        "(k) => localStorage.getItem(k)", f"liveop:{live_server.account_id}:convo"
    )
    item = row(op, convo_id)
    await expect(item).to_be_visible()
    await item.click()
    await expect(op.locator('#messages .msg[data-sender="visitor"]')).to_have_count(2)
    bot_seen = op.locator('#messages .msg[data-sender="bot"]')
    await expect(bot_seen).to_have_count(2)
    await expect(bot_seen.first.locator(".msg__who")).to_have_text("Bot")
    await expect(bot_seen.first).to_contain_text(FIRST_ANSWER)
    composer = op.get_by_label("Message", exact=True)
    await composer.fill("Hi, this is Alex. Which province are you in?")
    await composer.press("Enter")

    # The visitor sees the operator's reply, and that a person has joined.
    human = vp.locator('.msg[data-sender="operator"]')
    await expect(human).to_have_count(1)
    await expect(human).to_contain_text("Which province are you in?")
    await expect(human.locator(".msg__joined")).to_have_text(
        f"{live_server.operator_name} has joined the conversation"
    )
    await expect(vp.locator("#subtitle")).to_have_text(
        f"You're chatting with {live_server.operator_name}"
    )

    # From now on the assistant never answers: the visitor's message reaches the operator only.
    await _send(vp, "Ontario, thanks!")
    await expect(op.locator('#messages .msg[data-sender="visitor"]')).to_have_count(3)
    assert len(llmock.requests) == 1
    await expect(bot_lines).to_have_count(2)
