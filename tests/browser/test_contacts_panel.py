"""The contact in the inbox's side panel, in Chromium, from the operator's side (issue 14): a
customer texts in, then writes in the chat window giving the same phone number; the SMS
contact shows the web visitor as a possible match, and merging puts both conversations under
one contact, each linking to the other."""

from __future__ import annotations

import asyncio
import re
from typing import TYPE_CHECKING, Any

import httpx
from twilio.request_validator import RequestValidator

from tests.outbound.servers import SMS_SID, SMS_TOKEN

from .test_inbox import DESKTOP, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

PUBLIC = "https://chat.example.test"
CUSTOMER = "+15557654321"


async def _texted_in(server: LiveServer, text: str) -> None:
    """An SMS channel of the account, and the customer's SMS on its webhook, signed by the
    `twilio` package as Twilio signs it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        created = await client.post(
            "/api/v1/admin/channels",
            json={
                "kind": "sms",
                "name": "Texts",
                "account_sid": SMS_SID,
                "auth_token": SMS_TOKEN,
                "from": "+15550100100",
                "public_url": PUBLIC,
            },
            headers={"X-Api-Key": server.api_key},
        )
        assert created.status_code == 201, created.text
        url: str = created.json()["channel"]["webhooks"]["sms"]
        sid = "SM" + "c" * 32
        params = {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": SMS_SID, "From": CUSTOMER,
            "To": "+15550100100", "Body": text, "NumMedia": "0",
        }  # fmt: skip
        signature = RequestValidator(SMS_TOKEN).compute_signature(url, params)
        answer = await client.post(
            url.removeprefix(PUBLIC), data=params, headers={"X-Twilio-Signature": signature}
        )
        assert answer.status_code == 200, answer.text


async def _conversation_ids(server: LiveServer) -> dict[str, str]:
    """The account's conversations by their channel tag (one of each here)."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": "alex@example.com", "password": "correct horse 1"},
        )
        token = login.json()["token"]
        listing = await client.get(
            "/api/v1/operator/inbox", headers={"Authorization": f"Bearer {token}"}
        )
        found: list[dict[str, Any]] = listing.json()["conversations"]
        return {c["channel"]: c["id"] for c in found}


async def test_a_chat_window_visitor_with_the_sms_customers_phone_is_merged_from_the_panel(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    await _texted_in(live_server, "Did my parcel ship?")
    visitor = (await open_window()).page
    await visitor.goto(live_server.chat_url)
    await visitor.locator("#details summary").click()
    await visitor.get_by_label("Your name", exact=True).fill("Maria")
    await visitor.get_by_label("Phone", exact=True).fill("+1 555 765 4321")
    composer = visitor.get_by_label("Message", exact=True)
    await composer.fill("I also texted you about my parcel")
    await composer.press("Enter")
    await expect(visitor.locator(".msg.is-sending")).to_have_count(0)
    ids = await _conversation_ids(live_server)
    sms, web = ids["sms"], ids["chat"]

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await row(page, sms).click()
    panel = page.locator("#contact")
    await expect(panel.locator("#contact-identities .identity")).to_have_text(
        [f"Phone {CUSTOMER} verified"]
    )
    await expect(panel.locator("#contact-conversations-empty")).to_be_visible()
    match = panel.locator("#contact-matches .match")
    await expect(match.locator(".match__name")).to_have_text("Maria")
    # The chat window's own session is proven; the phone Maria typed is only a claim.
    await expect(match.locator(".identity")).to_have_text(
        [re.compile(r"^Web session \S+ verified$"), f"Phone {CUSTOMER} typed"]
    )

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await match.get_by_role("button", name="Merge").click()
    await expect(panel.locator("#contact-status")).to_have_text("Merged Maria.")
    await expect(panel.locator("#contact-matches-section")).to_be_hidden()
    await expect(panel.locator("#contact-name")).to_have_text("Maria")
    other = panel.locator("#contact-conversations a")
    await expect(other).to_have_attribute("data-id", web)
    await expect(other.locator(".channel")).to_have_text("Live chat")

    # The link opens the web conversation, whose panel lists the SMS one under the contact.
    await other.click()
    await expect(page.locator("#convo-name")).to_have_text("Maria")
    back = panel.locator("#contact-conversations a")
    await expect(back).to_have_attribute("data-id", sms)
    await expect(back.locator(".channel")).to_have_text("SMS")
    assert window.errors == []
