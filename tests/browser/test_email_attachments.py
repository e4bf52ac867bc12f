"""A customer's mail in the inbox, in Chromium (issue 15): the picture the HTML showed inline
appears in the message, the other file is a download link, both served from the stored copies
by a real server in its own process; and an operator reads the whole original mail, headers
and markup as text."""

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

MAILS = Path(__file__).parent.parent / "fixtures" / "email"


@pytest.fixture(scope="module")
def sink() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture(scope="module")
def mime_url(live_server: LiveServer, sink: SmtpServer) -> str:
    """The raw-MIME webhook of an email channel of the test account."""
    created = httpx.post(
        f"{live_server.base_url}/api/v1/admin/channels",
        headers={"X-Api-Key": live_server.api_key},
        json={
            "kind": "email", "name": "Support mail", "address": "support@example.com",
            "smtp_url": f"smtp://127.0.0.1:{sink.port}", "public_url": live_server.base_url,
        },
    )  # fmt: skip
    assert created.status_code == 201, created.text
    url: str = created.json()["channel"]["webhooks"]["mime"]
    return url


async def _mailed(client: httpx.AsyncClient, mime_url: str, name: str) -> str:
    """Delivers the fixture mail ``name``; the conversation it landed in."""
    taken = await client.post(mime_url, content=(MAILS / name).read_bytes())
    assert taken.status_code == 200, taken.text
    convo_id: str = taken.json()["conversation_id"]
    return convo_id


async def test_a_mails_picture_shows_inline_and_its_file_downloads(
    open_window: OpenWindow, live_server: LiveServer, mime_url: str
) -> None:
    from playwright.async_api import expect

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        convo_id = await _mailed(client, mime_url, "attachment.eml")

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


async def test_an_operator_reads_the_original_mail_as_text(
    open_window: OpenWindow, live_server: LiveServer, mime_url: str
) -> None:
    from playwright.async_api import expect

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        convo_id = await _mailed(client, mime_url, "html_only.eml")
    window = await open_window(viewport=DESKTOP)
    page = window.page
    # The script and the tracking pixel in the mail must never run or load.
    pixels: list[str] = []
    page.on("request", lambda r: pixels.append(r.url) if "tracker" in r.url else None)
    await sign_in(page, live_server)  # an operator, not an admin
    await row(page, convo_id).click()
    message = page.locator("#messages li", has_text="INV-2291")
    await message.get_by_role("button", name="Show original").click()

    dialog = page.get_by_role("dialog", name="Original mail")
    raw = dialog.get_by_label("The mail as it arrived")
    await expect(raw).to_contain_text("Message-ID: <20261207100000.1f2e3d4c@mailer.customer.test>")
    await expect(raw).to_contain_text('<script>alert("x")</script>')
    await expect(raw).to_contain_text('onclick="steal()"')
    assert await dialog.locator("script, img, a").count() == 0
    await dialog.get_by_role("button", name="Close").click()
    await expect(dialog).to_have_count(0)
    assert pixels == []
    assert window.errors == []
