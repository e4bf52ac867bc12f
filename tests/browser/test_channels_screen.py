"""Admin -> Channels in the inbox, in Chromium, as an account's admin uses it (issues 14, 15):
create an SMS channel, read the webhook URLs to paste into the provider, send a test message
through a local server speaking Twilio's API, and see the outcome on the health line; create
an email channel and test it against a local SMTP server and a local Dovecot."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from tests.dovecot_server import PASSWORD as DOVECOT_PASSWORD
from tests.dovecot_server import USER as DOVECOT_USER
from tests.dovecot_server import Dovecot
from tests.outbound.servers import (
    SMS_SID,
    SMS_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    SmsServer,
    SmtpServer,
    sms_server,
    smtp_server,
)

from .test_inbox import ADMIN, DESKTOP, listed, sign_in
from .test_inbox import admin_operator as admin_operator  # the fixture

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

SIGNING_KEY = "key-mailgun-signing-0123456789abcdef"


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
    # The rating question is off until the admin turns it on (issue 19).
    assert channel["ask_rating"] is False
    await expect(form.get_by_label("Rating question")).to_have_value("false")
    await form.get_by_label("Rating question").select_option(
        label="Ask when a conversation is resolved"
    )
    await form.get_by_role("button", name="Save").click()
    await expect(status).to_have_text("Saved “Support texts”.")
    (channel,) = await listed(live_server, "channels")
    assert channel["ask_rating"] is True

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


async def email_channels(server: LiveServer) -> list[dict[str, Any]]:
    """The live server's account is shared by the module's tests: only the email channels."""
    return [c for c in await listed(server, "channels") if c["kind"] == "email"]


@pytest.fixture
def smtp_sink() -> Iterator[SmtpServer]:
    with smtp_server(auth=True) as server:
        yield server


async def test_an_admin_creates_edits_and_tests_an_email_channel(
    open_window: OpenWindow,
    live_server: LiveServer,
    admin_operator: dict[str, Any],
    smtp_sink: SmtpServer,
    dovecot: Dovecot,
) -> None:
    """Issue 15: an email channel's SMTP and IMAP URLs and signing key go in, their secrets
    never come back, and the Test button logs in to both servers and shows the outcome."""
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

    # The kind chooses the fields: an email channel asks for no Twilio account.
    await form.get_by_label("Kind").select_option("email")
    await expect(form.get_by_label("Account SID")).to_be_hidden()
    await expect(form.get_by_label("Provider API URL")).to_be_hidden()
    smtp_url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp_sink.port}"
    await form.get_by_label("Name").fill("Support mail")
    await form.get_by_label("Support address").fill(DOVECOT_USER)
    await form.get_by_label("SMTP URL").fill("ftp://127.0.0.1:25")
    await form.get_by_label("IMAP URL (optional)").fill(dovecot.url())
    await form.get_by_label("Import mail from the last days (IMAP)").fill("7")
    await form.get_by_label("Public URL of this server").fill("https://chat.example.test")
    await form.get_by_label("Mailgun signing key (optional)").fill(SIGNING_KEY)
    await form.get_by_role("button", name="Add channel").click()
    await expect(form.get_by_role("alert")).to_contain_text("smtp_url")
    assert await email_channels(live_server) == []
    await form.get_by_label("SMTP URL").fill(smtp_url)
    await form.get_by_role("button", name="Add channel").click()
    await expect(status).to_have_text("Added “Support mail”.")

    (channel,) = await email_channels(live_server)
    assert (channel["kind"], channel["address"], channel["imap_backfill_days"]) == (
        "email",
        DOVECOT_USER,
        7,
    )
    row = body.locator("tr", has_text="Support mail")
    await expect(row).to_contain_text(DOVECOT_USER)
    await expect(row).to_contain_text(channel["webhooks"]["mime"])
    await expect(row).to_contain_text(channel["webhooks"]["mailgun"])
    await expect(row).to_contain_text("Out: never")
    secrets = (SMTP_PASSWORD, DOVECOT_PASSWORD, SIGNING_KEY)
    assert not [s for s in secrets if s in await page.content()]

    # Editing shows where each URL points, never a password; empty fields keep them.
    await row.get_by_role("button", name="Edit Support mail").click()
    await expect(form.get_by_label("SMTP URL")).to_have_value("")
    await expect(form.get_by_label("Mailgun signing key (optional)")).to_have_value("")
    await expect(form).to_contain_text(f"Now smtp://{SMTP_USER}@127.0.0.1:{smtp_sink.port}")
    await expect(form.get_by_label("Account SID")).to_be_hidden()
    assert not [s for s in secrets if s in await page.content()]
    await form.get_by_label("Name").fill("Help desk mail")
    await form.get_by_role("button", name="Save").click()
    await expect(status).to_have_text("Saved “Help desk mail”.")

    # The passwords were kept: both servers let the channel in.
    row = body.locator("tr", has_text="Help desk mail")
    await row.get_by_role("button", name="Test Help desk mail").click()
    await expect(status).to_have_text("Tested “Help desk mail”: SMTP ok, IMAP ok.")
    await expect(body.locator("tr", has_text="Help desk mail")).not_to_contain_text("Out: never")

    # A mailbox that cannot be reached is said, and lands on the health line.
    dovecot.stop()
    await body.get_by_role("button", name="Test Help desk mail").click()
    await expect(status).to_contain_text("IMAP:")
    await expect(body.locator("tr", has_text="Help desk mail")).to_contain_text("Last error")
    assert window.errors == []
