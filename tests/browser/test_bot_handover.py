"""A bot platform hands a user over (issue 16): in a real Chromium, the operator sees the
conversation with the bot's dialogue, the attributes the bot passed (never the hidden ones)
and who answers it now."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httpx
import pytest

from .test_inbox import DESKTOP, created, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser


async def test_the_operator_sees_a_handed_over_user_with_dialogue_and_attributes(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    team = created(live_server, "teams", "team", name="Refunds",
                   member_ids=[live_server.operator_id])  # fmt: skip
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as platform:
        made = await platform.post(
            "/api/v1/admin/channels",
            json={"kind": "bot", "name": "Aimylogic", "public_url": live_server.base_url},
            headers={"X-Api-Key": live_server.api_key},
        )
        assert made.status_code == 201, made.text
        api = urlsplit(made.json()["channel"]["api_url"]).path
        handed = await platform.post(f"{api}/selectDestination", json={
            "userId": "tg-5511", "destinationId": str(team["id"]), "userName": "Ines Duarte",
            "attributes": {"Plan": "Gold", "Order": "A-1009"},
            "hiddenAttributes": {"crm_token": "hidden-77"},
            "customData": {"history": [
                {"sender": "client", "text": "My parcel never came"},
                {"sender": "bot", "text": "I am passing you to a person"},
            ]},
        })  # fmt: skip
        assert handed.status_code == 200, handed.text

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    convo = page.locator("#convo-list .row", has_text="Ines Duarte")
    await expect(convo).to_have_count(1)
    convo_id = await convo.get_attribute("data-id")
    assert convo_id is not None
    await row(page, convo_id).click()
    texts = page.locator("#messages .msg__text")
    await expect(texts).to_have_text(["My parcel never came", "I am passing you to a person"])
    facts = page.locator("#facts")
    answered = facts.locator("dt", has_text="Answered by").locator("xpath=following-sibling::dd[1]")
    await expect(answered).to_have_text("operators (waiting in the queue)")
    await expect(facts).to_contain_text("Gold")
    await expect(facts).to_contain_text("A-1009")
    await expect(facts).not_to_contain_text("hidden-77")

    await page.locator("#composer-text").fill("Hello Ines, I am on it")
    await page.locator("#composer-text").press("Enter")
    # The operator who speaks takes it over; the stream brings the change back.
    await expect(answered).to_have_text("operators")
    assert window.errors == []
