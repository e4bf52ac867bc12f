"""Nobody online, or outside business hours (issue 18), in Chromium from the visitor's side:
the widget says so with the site's away message and when to expect an answer, and takes the
visitor's email with the message; the operator, back later, finds the conversation in the
queue with the email on its contact."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from server.business_hours import WEEKDAYS

from .test_inbox import (
    ADMIN,
    DESKTOP,
    OPERATOR_EMAIL,
    OPERATOR_PASSWORD,
    SCREENSHOTS,
    admin_operator,  # noqa: F401 (a fixture)
    listed,
    row,
    sign_in,
)
from .test_widget import FRAME, host_site  # noqa: F401 (host_site: a fixture)

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow
    from .test_widget import HostSite

pytestmark = pytest.mark.browser

AWAY_MESSAGE = "Our team is out right now.\nLeave your email and we will write back."
EMAIL = "jane@example.com"


async def set_site(server: LiveServer, body: dict[str, Any]) -> None:
    """What an admin sets on the Sites screen, through the admin REST."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        response = await client.patch(
            "/api/v1/admin/sites/1", json=body, headers={"X-Api-Key": server.api_key}
        )
    assert response.status_code == 200, response.text


async def only_conversation(server: LiveServer) -> str:
    """The account's one conversation, as the operator panel lists it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
        )
        listing = await client.get(
            "/api/v1/operator/inbox", headers={"Authorization": f"Bearer {login.json()['token']}"}
        )
    (found,) = listing.json()["conversations"]
    convo_id: str = found["id"]
    return convo_id


async def test_with_nobody_online_the_widget_takes_an_email_and_the_operator_finds_it_later(
    open_window: OpenWindow,
    live_server: LiveServer,
    host_site: HostSite,  # noqa: F811
) -> None:
    from playwright.async_api import expect

    await set_site(live_server, {"away_message": AWAY_MESSAGE, "reply_time": "within a day"})
    url = host_site.add(live_server, "away")
    visitor = await open_window(viewport=DESKTOP)
    await visitor.page.goto(url)
    await visitor.page.get_by_role("button", name="Open chat").click()
    chat = visitor.page.frame_locator(FRAME)
    away = chat.locator("#away")
    await expect(away.get_by_role("heading")).to_have_text("Nobody\u2019s here right now")
    await expect(away.locator("#away-text")).to_have_text(AWAY_MESSAGE)
    await expect(away.locator("#away-when")).to_have_text("Expected reply: within a day.")
    # The header does not promise help right now above a box that says nobody is here.
    await expect(chat.locator("#subtitle")).to_have_text("We\u2019ll get back to you")
    await away.get_by_label("Your email, so we can answer").fill(EMAIL)
    composer = chat.get_by_label("Message", exact=True)
    await composer.fill("Do you ship mugs to Norway?")
    await visitor.page.screenshot(path=str(SCREENSHOTS / "widget-away.png"))
    await composer.press("Enter")
    await expect(chat.locator(".msg.is-sending")).to_have_count(0)
    await expect(chat.locator(".msg.is-failed")).to_have_count(0)

    # The operator comes back: the conversation waits in the queue, with the email to reply to.
    convo_id = await only_conversation(live_server)
    operator = await open_window(viewport=DESKTOP)
    await sign_in(operator.page, live_server)
    await operator.page.locator("label.views__item", has_text="Unassigned").click()
    await expect(row(operator.page, convo_id)).to_contain_text("Do you ship mugs to Norway?")
    await row(operator.page, convo_id).click()
    await expect(operator.page.locator("#contact-identities .identity")).to_contain_text(
        [f"Email {EMAIL} typed"]
    )
    # Somebody is online now: a new visitor's widget is not away.
    later = await open_window(viewport=DESKTOP)
    await later.page.goto(url)
    await later.page.get_by_role("button", name="Open chat").click()
    latest = later.page.frame_locator(FRAME)
    await expect(latest.locator("#composer")).to_be_visible()
    await expect(latest.locator("#away")).to_be_hidden()
    await expect(latest.locator("#subtitle")).to_have_text("We\u2019re here to help")
    assert visitor.errors == [] and operator.errors == [] and later.errors == []


async def test_outside_business_hours_the_chat_window_says_when_the_team_is_back(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    # Open only two days from now, 09:00-10:00 UTC: closed now, whoever is online.
    opens = datetime.now(UTC).date() + timedelta(days=2)
    await set_site(
        live_server,
        {
            "time_zone": "UTC",
            "business_hours": [
                {"day": WEEKDAYS[opens.weekday()], "open": "09:00", "close": "10:00"}
            ],
            "away_message": "",
            "reply_time": "",
        },
    )
    operator = await open_window(viewport=DESKTOP)
    await sign_in(operator.page, live_server)  # online, but the site is closed
    visitor = await open_window(viewport=DESKTOP)  # the visitor's clock: UTC, en-US
    await visitor.page.goto(live_server.chat_url)
    away = visitor.page.locator("#away")
    await expect(away.get_by_role("heading")).to_have_text("We\u2019re closed right now")
    await expect(away.locator("#away-text")).to_have_text(
        "Leave us a message with your email and we\u2019ll get back to you."
    )
    back = re.compile(rf"^We\u2019re back {opens:%A} 9:00\s?AM \(your time\)\.$")
    await expect(away.locator("#away-when")).to_have_text(back)
    await away.get_by_label("Your email, so we can answer").fill("sam@example.com")
    composer = visitor.page.get_by_label("Message", exact=True)
    await composer.fill("Is the shop open on Saturday?")
    await composer.press("Enter")
    await expect(visitor.page.locator(".msg.is-sending")).to_have_count(0)
    await expect(visitor.page.locator(".msg.is-failed")).to_have_count(0)
    # The email rode with the message onto the conversation.
    await expect(operator.page.locator("#convo-list .row").first).to_contain_text(
        "Is the shop open on Saturday?"
    )
    assert visitor.errors == [] and operator.errors == []


async def test_an_admin_sets_business_hours_and_the_away_message_on_the_sites_screen(
    open_window: OpenWindow,
    live_server: LiveServer,
    admin_operator: dict[str, Any],  # noqa: F811
) -> None:
    from playwright.async_api import expect

    page = (await open_window(viewport=DESKTOP)).page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Admin").click()
    await page.get_by_role("link", name="Sites").click()
    await page.get_by_role("button", name="Edit Default").click()
    form = page.locator("#admin-form")
    await form.get_by_label("Time zone").fill("Europe/Berlin")
    hours = form.get_by_label("Business hours")
    await hours.fill("funday 09:00-17:00")
    await form.get_by_role("button", name="Save").click()
    await expect(form.get_by_role("alert")).to_contain_text("day must be one of mon")
    await hours.fill("mon 09:00-17:00\nfri 9:00-12:30")
    await form.get_by_label("Away message").fill("Back on Monday.")
    await form.get_by_label("Expected reply time").fill("within a day")
    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#admin-status")).to_have_text("Saved \u201cDefault\u201d.")
    cell = page.locator('#admin-body tr[data-id="1"] td').nth(5)
    await expect(cell).to_have_text("mon 09:00-17:00, fri 09:00-12:30 (Europe/Berlin)")
    (site,) = [s for s in await listed(live_server, "sites") if s["id"] == 1]
    assert site["business_hours"] == [
        {"day": "mon", "open": "09:00", "close": "17:00"},
        {"day": "fri", "open": "09:00", "close": "12:30"},
    ]
    assert (site["away_message"], site["reply_time"]) == ("Back on Monday.", "within a day")

    # Emptying the away message on the form clears it; fields left as they were stay.
    await page.get_by_role("button", name="Edit Default").click()
    await expect(form.get_by_label("Away message")).to_have_value("Back on Monday.")
    await form.get_by_label("Away message").fill("")
    await form.get_by_role("button", name="Save").click()
    await expect(page.locator("#admin-status")).to_have_text("Saved \u201cDefault\u201d.")
    (site,) = [s for s in await listed(live_server, "sites") if s["id"] == 1]
    assert (site["away_message"], site["reply_time"]) == ("", "within a day")
    assert site["time_zone"] == "Europe/Berlin" and len(site["business_hours"]) == 2
