"""Issue 18, from the user's side in Chromium: the conversation's timeline (who took over,
transferred with a hand-over note, resolved) as small lines between the messages, live and
after a reload, never in the visitor's window; and read receipts ("Seen") both ways.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .test_chat_window import stored_convo
from .test_inbox import DESKTOP, created, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser

JO = {"name": "Jo", "email": "jo@example.com", "password": "jo horse 12345"}
NOTE = "Wants a refund for order 1042; already checked the courier"


async def test_a_transfer_with_a_note_and_a_resolve_are_lines_on_the_timeline(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    jo = created(live_server, "operators", "operator", **JO)
    visitor = await open_window(viewport=DESKTOP)
    vp = visitor.page
    await vp.goto(live_server.chat_url)
    await vp.get_by_label("Message", exact=True).fill("My parcel never came")
    await vp.locator("#send").click()
    convo_id = await stored_convo(vp, live_server)

    receiver = (await open_window(viewport=DESKTOP)).page
    await sign_in(receiver, live_server, JO["email"], JO["password"])
    alex = (await open_window(viewport=DESKTOP)).page
    await sign_in(alex, live_server)
    await row(alex, convo_id).click()
    await alex.get_by_label("Message", exact=True).fill("Let me get my colleague")
    await alex.get_by_label("Message", exact=True).press("Enter")
    lines = alex.locator("#messages .line")
    await expect(lines).to_have_count(1)
    await expect(lines).to_contain_text("Alex took over")

    await alex.get_by_label("Transfer to").select_option(f"operator:{jo['id']}")
    await alex.get_by_label("Hand-over note").fill(NOTE)
    await alex.get_by_role("button", name="Transfer").click()
    await expect(alex.locator("#convo-owner")).to_have_text("Owner: Jo")
    await expect(alex.get_by_label("Hand-over note")).to_have_value("")

    # The colleague it went to finds it in their list and reads why.
    await row(receiver, convo_id).click()
    handed = receiver.locator('#messages .line[data-kind="transferred"]')
    await expect(handed).to_contain_text("Alex transferred the conversation to Jo")
    await expect(handed).to_contain_text(f"Hand-over note: {NOTE}")
    await expect(alex.locator('#messages .line[data-kind="transferred"]')).to_contain_text(NOTE)

    await receiver.get_by_role("button", name="Resolve").click()
    resolved = '#messages .line[data-kind="resolved"]'
    await expect(receiver.locator(resolved)).to_contain_text("Resolved by Jo")
    await expect(alex.locator(resolved)).to_contain_text("Resolved by Jo")  # live, elsewhere

    # The server keeps them: a reload shows the same lines, after the message they followed.
    await receiver.reload()  # the address keeps the conversation open
    thread = receiver.locator("#messages > li")
    await expect(thread).to_have_count(5)
    kinds = await thread.evaluate_all("(items) => items.map((li) => li.dataset.kind || 'msg')")
    assert kinds == ["msg", "msg", "taken_over", "transferred", "resolved"]
    await expect(receiver.locator(resolved)).to_contain_text("Resolved by Jo")

    # The visitor sees the reply, never a line or the note.
    await expect(vp.locator('#messages .msg[data-sender="operator"]')).to_have_count(1)
    assert NOTE not in await vp.locator("body").inner_text()
    assert "transferred" not in await vp.locator("#messages").inner_text()


async def test_seen_both_ways_live_and_after_a_reload(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    visitor = await open_window(viewport=DESKTOP)
    vp = visitor.page
    await vp.goto(live_server.chat_url)
    await vp.get_by_label("Message", exact=True).fill("Has my order shipped?")
    await vp.locator("#send").click()
    convo_id = await stored_convo(vp, live_server)
    mine = vp.locator('#messages .msg[data-sender="visitor"]')
    await expect(mine).to_have_count(1)
    await expect(vp.locator(".msg__seen")).to_have_count(0)

    # The operator opens the conversation: the visitor's window says their message was seen.
    operator = (await open_window(viewport=DESKTOP)).page
    await sign_in(operator, live_server)
    await row(operator, convo_id).click()
    await expect(mine.locator(".msg__seen")).to_have_text("Seen")

    # The visitor's window shows the reply: the operator's view says it was seen.
    await operator.get_by_label("Message", exact=True).fill("Yes, it left this morning")
    await operator.get_by_label("Message", exact=True).press("Enter")
    await expect(vp.locator('#messages .msg[data-sender="operator"]')).to_have_count(1)
    reply = operator.locator('#messages .msg[data-sender="operator"]')
    await expect(reply.locator(".msg__seen")).to_have_text("Seen")

    # A later message moves it; both survive a reload.
    await vp.get_by_label("Message", exact=True).fill("Great, thanks")
    await vp.locator("#send").click()
    await expect(operator.locator('#messages .msg[data-sender="visitor"]')).to_have_count(2)
    await expect(mine.last.locator(".msg__seen")).to_have_text("Seen")
    await expect(mine.first.locator(".msg__seen")).to_have_count(0)
    await vp.reload()
    await expect(vp.locator('#messages .msg[data-sender="visitor"]').last).to_contain_text("Seen")
    await operator.reload()
    await expect(reply.locator(".msg__seen")).to_have_text("Seen")
