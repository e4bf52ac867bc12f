"""A customer's mail with attachments in the inbox, in Chromium (issue 15): the picture the
HTML showed inline appears in the message, the other file is a download link, both served
from the stored copies by a real server in its own process."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from tests.outbound.servers import SmtpServer, smtp_server

from .test_inbox import DESKTOP, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser

MAIL = Path(__file__).parent.parent / "fixtures" / "email" / "attachment.eml"


@pytest.fixture
def sink() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


async def test_a_mails_picture_shows_inline_and_its_file_downloads(
    open_window: OpenWindow, live_server: LiveServer, sink: SmtpServer
) -> None:
    from playwright.async_api import expect

    base = live_server.base_url
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        created = await client.post(
            "/api/v1/admin/channels",
            headers={"X-Api-Key": live_server.api_key},
            json={
                "kind": "email", "name": "Support mail", "address": "support@example.com",
                "smtp_url": f"smtp://127.0.0.1:{sink.port}", "public_url": base,
            },
        )  # fmt: skip
        assert created.status_code == 201, created.text
        mime = created.json()["channel"]["webhooks"]["mime"]
        taken = await client.post(mime, content=MAIL.read_bytes())
        assert taken.status_code == 200, taken.text
        convo_id = taken.json()["conversation_id"]

        window = await open_window(viewport=DESKTOP)
        page = window.page
        await sign_in(page, live_server)
        await row(page, convo_id).click()
        message = page.locator("#messages li", has_text="The box came crushed")
        files = message.get_by_role("list", name="Attachments")
        picture = files.get_by_role("img", name="box.png")
        await expect(picture).to_be_visible()
        assert await picture.evaluate("(img) => img.complete && img.naturalWidth") > 0
        receipt = files.get_by_role("link", name="receipt.pdf")
        await expect(receipt).to_have_attribute("download", "receipt.pdf")
        await expect(files).to_contain_text("receipt.pdf (82 bytes)")
        href = await receipt.get_attribute("href")
        assert href is not None and "/files/" in href
        saved = await client.get(href)
        assert saved.status_code == 200
        assert saved.content.startswith(b"%PDF")
        assert window.errors == []
