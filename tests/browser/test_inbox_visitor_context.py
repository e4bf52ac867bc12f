"""Issue 18, knowing the customer, from the user's side in Chromium: a visitor chats through
the widget on a shop's pages and the operator's side panel shows where they started, where
they are now, where they came from, their browser and OS, and their local time; an ``@name``
in a private note alerts that colleague."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

import httpx
import pytest

from .test_inbox import DESKTOP, created, row, sign_in
from .test_inbox_workday import RECORD_ALERTS, fact, notified
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
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def shop(chromium_executable: str) -> Iterator[HostSite]:
    with serve_host_site("localhost") as site:
        yield site


async def test_the_side_panel_shows_where_the_visitor_is(
    open_window: OpenWindow, live_server: LiveServer, shop: HostSite
) -> None:
    from playwright.async_api import expect

    pricing = shop.add(live_server, "pricing")
    # The same embed on a page titled by its own script, as single-page shops do.
    checkout = shop.add(live_server, "checkout", head="<script>document.title='Checkout'</script>")
    shop.pages["/blog"] = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Blog</title></head>'
        f'<body><a href="{pricing}?plan=team#compare">See our prices</a></body></html>'
    )
    visitor = await open_window(viewport=DESKTOP, timezone_id="Asia/Tokyo")
    vp = visitor.page
    await vp.goto(f"{shop.base_url}/blog")
    await vp.get_by_role("link", name="See our prices").click()
    await vp.locator(LAUNCHER).click()
    await send_as_visitor(vp, "Which plan fits a team of five?")
    convo_id = await stored(await chat_frame(vp), live_server, "convo")

    operator = await open_window(viewport=DESKTOP)
    op = operator.page
    await sign_in(op, live_server)
    await row(op, convo_id).click()
    # The fragment stays on the visitor's side (it may carry a sign-in token).
    started = fact(op, "Started on").get_by_role("link", name="Example Shop")
    await expect(started).to_have_attribute("href", f"{pricing}?plan=team")
    await expect(started).to_have_attribute("target", "_blank")
    await expect(fact(op, "Came from")).to_have_text(f"{shop.base_url}/blog")
    await expect(fact(op, "Browser")).to_have_text(re.compile(r"^Chrome \d+ on Linux$"))
    # The visitor's clock now, in the operator's language, with the zone it is in.
    local = re.compile(r"^[A-Z][a-z]{2} \d{2}:\d{2}( [AP]M)? \(Asia/Tokyo\)$")
    await expect(fact(op, "Local time")).to_have_text(local)
    await expect(fact(op, "Now on")).to_have_count(0)  # still on the page the chat started on

    # The visitor moves on to the checkout and writes again: the open panel follows them there,
    # while the start and where they came from stay.
    await vp.goto(checkout)
    await vp.locator(LAUNCHER).click()
    await expect(vp.frame_locator(FRAME).locator(".msg[data-seq]")).to_have_count(1)
    await send_as_visitor(vp, "I am at the checkout now")
    now_on = fact(op, "Now on").get_by_role("link", name="Checkout")
    await expect(now_on).to_have_attribute("href", checkout)
    await expect(started).to_have_attribute("href", f"{pricing}?plan=team")
    await expect(fact(op, "Came from")).to_have_text(f"{shop.base_url}/blog")

    # A reload of the inbox shows the same.
    await op.reload()
    await row(op, convo_id).click()
    await expect(fact(op, "Now on")).to_have_text("Checkout")
    assert page_errors(visitor) == [] and operator.errors == []


async def test_an_at_name_in_a_note_alerts_that_colleague(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    kim = {"name": "Kim Novak", "email": "kim@example.com", "password": "kim horse 12345"}
    created(live_server, "operators", "operator", **kim)
    kimberly = {"name": "Kimberly", "email": "kimberly@example.com", "password": "kim b 12345"}
    created(live_server, "operators", "operator", **kimberly)
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        answer = await client.post(
            f"/{live_server.account_id}/liveoperator/postmessage",
            data={"message": "My parcel never came", "fname": "Lee"},
        )
    convo_id = answer.json()["convoID"]

    windows = {}
    for who in (kim, kimberly):
        window = await open_window(viewport=DESKTOP, permissions=["notifications"])
        await window.page.context.add_init_script(RECORD_ALERTS)
        await sign_in(window.page, live_server, who["email"], who["password"])
        windows[who["name"]] = window
    kp, kbp = windows["Kim Novak"].page, windows["Kimberly"].page
    await expect(row(kp, convo_id)).to_be_visible()

    alex_window = await open_window(viewport=DESKTOP)
    alex = alex_window.page
    await sign_in(alex, live_server)
    await row(alex, convo_id).click()
    await alex.get_by_role("radio", name="Private note").check()
    composer = alex.get_by_label("Message", exact=True)
    await composer.fill("@kim, did the courier call back?")
    await composer.press("Enter")
    await expect(alex.locator("#messages .msg").last).to_contain_text("courier")

    # Kim (by her first name, in any case) is alerted; Kimberly, whose name only starts the
    # same, is not.
    toast = kp.locator("#alerts-toast")
    await expect(toast).to_have_text("Alex mentioned you: @kim, did the courier call back?")
    assert await notified(kp) == ["Alex mentioned you"]
    await toast.get_by_role("button").click()
    await expect(kp.locator("#convo-name")).to_have_text("Lee")

    # Kimberly's stream carried the same note: a note naming her reaches her, the first did not.
    await composer.fill("Thanks. @Kimberly please refund it.")
    await composer.press("Enter")
    await expect(kbp.locator("#alerts-toast")).to_have_text(
        "Alex mentioned you: Thanks. @Kimberly please refund it."
    )
    assert await notified(kbp) == ["Alex mentioned you"]
    # The author is never alerted by their own note.
    await expect(alex.locator("#alerts-toast")).to_be_hidden()
    for window in (*windows.values(), alex_window):
        assert window.errors == []
