"""Admin -> Channels in the inbox, in Chromium, as an account's admin uses it (issue 14):
create an SMS channel, read the webhook URLs to paste into the provider, send a test message
through a local server speaking Twilio's API, and see the outcome on the health line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.outbound.servers import SMS_SID, SMS_TOKEN, SmsServer, sms_server

from .test_inbox import ADMIN, DESKTOP, listed, sign_in
from .test_inbox import admin_operator as admin_operator  # the fixture

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow


@pytest.fixture
def provider() -> Iterator[SmsServer]:
    with sms_server() as server:
        yield server


async def test_an_admin_creates_an_sms_channel_and_sends_a_test_message(
    open_window: OpenWindow,
    live_server: LiveServer,
    admin_operator: dict[str, Any],
    provider: SmsServer,
) -> None:
    from playwright.async_api import expect

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Admin").click()
    await page.get_by_role("link", name="Channels").click()
    body = page.locator("#admin-body")
    form = page.locator("#admin-form")
    status = page.locator("#admin-status")
    await expect(body.get_by_role("heading", name="Channels")).to_be_visible()

    # A refused field is explained; nothing is created.
    await form.get_by_label("Name").fill("Support texts")
    await form.get_by_label("Account SID").fill("AC123")
    await form.get_by_label("Auth token").fill(SMS_TOKEN)
    await form.get_by_label("From number or messaging service").fill("+15550100100")
    await form.get_by_label("Public URL of this server").fill("https://chat.example.test")
    await form.get_by_label("Provider API URL").fill(provider.base)
    await form.get_by_role("button", name="Add channel").click()
    await expect(form.get_by_role("alert")).to_contain_text("account_sid must be AC")
    await form.get_by_label("Account SID").fill(SMS_SID)
    await form.get_by_role("button", name="Add channel").click()
    await expect(status).to_have_text("Added “Support texts”.")

    (channel,) = await listed(live_server, "channels")
    row = body.locator("tr", has_text="Support texts")
    await expect(row).to_contain_text(channel["webhooks"]["sms"])
    await expect(row).to_contain_text(channel["webhooks"]["status"])
    await expect(row).to_contain_text("Out: never")
    # The token went in and never comes back, not even into the edit form.
    assert SMS_TOKEN not in await page.content()
    await row.get_by_role("button", name="Edit Support texts").click()
    await expect(form.get_by_label("Auth token")).to_have_value("")
    assert SMS_TOKEN not in await page.content()
    await form.get_by_role("button", name="Cancel").click()

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("+15557654321")))
    await row.get_by_role("button", name="Send test Support texts").click()
    await expect(status).to_have_text("Test message sent from “Support texts” to +15557654321.")
    (received,) = provider.twilio.received
    assert (received.form["From"], received.form["To"]) == ("+15550100100", "+15557654321")
    await expect(body.locator("tr", has_text="Support texts")).not_to_contain_text("Out: never")

    # A provider's refusal is shown with its reason and lands on the health line.
    provider.twilio.scripted.append((401, {"code": 20003, "message": "Authenticate"}))
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept("+15557654321")))
    await body.get_by_role("button", name="Send test Support texts").click()
    await expect(status).to_have_text("SMS provider: 20003: Authenticate")
    await expect(body.locator("tr", has_text="Support texts")).to_contain_text("Last error")
    assert window.errors == []
