"""Admin -> Webhooks in the inbox, in Chromium (issue 16): an admin adds an endpoint and sees
its signing secret once, the running server's worker delivers a visitor's message signed with
that very secret to a receiver on loopback, and the admin disables and deletes the webhook;
a receiver that fails shows in the delivery log, and the admin replays the delivery once it is
fixed and re-enables a disabled webhook."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import httpx
import orjson
import pytest

from tests.server.webhook_receiver import Receiver, webhook_receiver

from .test_inbox import ADMIN, DESKTOP, created, listed, sign_in
from .test_inbox import admin_operator as admin_operator  # the fixture

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, Window

# How long the server's worker may take to post (it polls every second); a bound, not a timing.
DELIVERY_WAIT_S = 30.0


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with webhook_receiver(time.time) as found:
        yield found


async def _visitor_says(server: LiveServer, text: str) -> None:
    form = {
        "accountID": server.account_id, "key": server.api_key, "app": "liveoperator",
        "command": "sendmessage", "json": orjson.dumps({"message": text}).decode(),
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        response = await client.post("/", data=form)
    assert response.status_code == 200, response.text


async def _until(receiver: Receiver, check: Callable[[Receiver], bool], failure: str) -> None:
    """Waits until ``check`` holds for what the receiver saw, within the worker's bound."""
    deadline = time.monotonic() + DELIVERY_WAIT_S
    while time.monotonic() < deadline:
        with receiver.lock:
            if check(receiver):
                return
        await asyncio.sleep(0.2)
    raise AssertionError(failure)


async def _delivered(receiver: Receiver, more_than: int = 0) -> list[dict[str, Any]]:
    await _until(
        receiver,
        lambda r: len(r.deliveries) > more_than or r.bad_signatures > 0,
        "the server posted nothing (more) to the webhook",
    )
    with receiver.lock:
        return list(receiver.deliveries)


async def _webhooks_screen(open_window: OpenWindow, live_server: LiveServer) -> Window:
    """A window where the admin has signed in and opened Admin → Webhooks."""
    window = await open_window(viewport=DESKTOP)
    await sign_in(window.page, live_server, ADMIN["email"], ADMIN["password"])
    await window.page.get_by_role("link", name="Admin").click()
    await window.page.get_by_role("link", name="Webhooks").click()
    return window


async def test_an_admin_adds_a_webhook_sees_its_secret_once_disables_and_deletes_it(
    open_window: OpenWindow,
    live_server: LiveServer,
    admin_operator: dict[str, Any],
    receiver: Receiver,
) -> None:
    from playwright.async_api import expect

    window = await _webhooks_screen(open_window, live_server)
    page = window.page
    body = page.locator("#admin-body")
    form = page.locator("#admin-form")
    status = page.locator("#admin-status")
    await expect(body.get_by_role("heading", name="Webhooks")).to_be_visible()

    # A refused field is explained; nothing is created.
    await form.get_by_label("Endpoint URL").fill(receiver.url)
    await form.get_by_role("button", name="Add webhook").click()
    await expect(form.get_by_role("alert")).to_contain_text("events must be a non-empty list")
    await form.get_by_label("Message created").check()
    await form.get_by_label("Control changed").check()
    await form.get_by_role("button", name="Add webhook").click()
    await expect(status).to_contain_text("Its signing secret, shown only now: whsec_")
    found = re.search(r"whsec_\S+", await status.inner_text())
    assert found is not None
    receiver.secret = found.group(0)

    (webhook,) = await listed(live_server, "webhooks")
    assert "secret" not in webhook
    assert webhook["events"] == ["message.created", "conversation.control_changed"]
    row = body.locator("tr", has_text=receiver.url)
    await expect(row).to_contain_text("Enabled")

    # The secret shown is the one the server signs with.
    await _visitor_says(live_server, "Hello from the web")
    deliveries = await _delivered(receiver)
    assert receiver.bad_signatures == 0
    assert deliveries[0]["event"] == "message.created"
    assert deliveries[0]["data"]["message"]["content"] == "Hello from the web"

    # Shown once: not after the screen is drawn again, nor in the edit form.
    await page.get_by_role("link", name="Channels").click()
    await page.get_by_role("link", name="Webhooks").click()
    await expect(row).to_contain_text("Enabled")
    assert receiver.secret not in await page.content()

    await row.get_by_role("button", name=f"Edit {receiver.url}").click()
    await form.get_by_label("Status", exact=True).select_option("false")
    await form.get_by_role("button", name="Save").click()
    await expect(body.locator("tr", has_text=receiver.url)).to_contain_text(
        "Disabled: disabled by an admin"
    )
    assert receiver.secret not in await page.content()

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await body.get_by_role("button", name=f"Delete {receiver.url}").click()
    await expect(status).to_have_text(f"Deleted “{receiver.url}”.")
    await expect(body.locator("tr", has_text=receiver.url)).to_have_count(0)
    assert await listed(live_server, "webhooks") == []
    assert window.errors == []


async def test_an_admin_sees_a_failed_delivery_replays_it_and_re_enables_the_webhook(
    open_window: OpenWindow,
    live_server: LiveServer,
    admin_operator: dict[str, Any],
    receiver: Receiver,
) -> None:
    from playwright.async_api import expect

    receiver.failing_with = 503
    hook = created(live_server, "webhooks", "webhook", url=receiver.url, events=["message.created"])
    receiver.secret = hook["secret"]
    await _visitor_says(live_server, "Is my parcel lost?")
    await _until(receiver, lambda r: r.refused > 0, "the server never tried the receiver")

    window = await _webhooks_screen(open_window, live_server)
    page = window.page
    body = page.locator("#admin-body")
    row = body.locator("tr", has_text=receiver.url)
    await row.get_by_role("button", name=f"Deliveries {receiver.url}").click()

    # The failed attempt is in the log, with what the receiver answered.
    log = page.get_by_role("dialog", name=f"Deliveries to {receiver.url}")
    delivery = log.locator("tbody tr", has_text="message.created")
    await expect(delivery).to_contain_text("Queued")
    await expect(delivery).to_contain_text("answered 503")
    await delivery.get_by_text(re.compile(r"^\d+ attempts?$")).click()
    await expect(delivery.get_by_role("listitem").last).to_contain_text("#1")
    await expect(delivery.get_by_role("listitem").last).to_contain_text("HTTP 503")
    delivery_id = await delivery.get_attribute("data-id")
    # Nothing missing is written out as a word, on the screen or in the log.
    for shown in (await body.inner_text(), await log.inner_text()):
        assert "undefined" not in shown and "null" not in shown

    # Fixed, the receiver gets the same delivery on Replay, and the log follows it to Sent.
    receiver.failing_with = None
    await delivery.get_by_role("button", name=re.compile(r"^Replay message\.created")).click()
    await expect(log.get_by_role("status")).to_have_text(
        "Queued message.created again: it goes out now."
    )
    posted = await _delivered(receiver)
    assert receiver.bad_signatures == 0
    assert {d["id"] for d in posted} == {delivery_id}
    assert posted[0]["data"]["message"]["content"] == "Is my parcel lost?"
    await expect(delivery).to_contain_text("Sent", timeout=DELIVERY_WAIT_S * 1000)
    await log.get_by_role("button", name="Close").click()
    await expect(log).to_have_count(0)

    # Disabled, a replay waits; re-enabled, it goes out.
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        answer = await client.patch(
            f"/api/v1/admin/webhooks/{hook['id']}",
            json={"enabled": False},
            headers={"X-Api-Key": live_server.api_key},
        )
    assert answer.status_code == 200, answer.text
    await page.get_by_role("link", name="Channels").click()
    await page.get_by_role("link", name="Webhooks").click()
    await expect(row).to_contain_text("Disabled: disabled by an admin")
    await row.get_by_role("button", name=f"Deliveries {receiver.url}").click()
    await expect(log).to_contain_text("Disabled: disabled by an admin")
    before = len(posted)
    await delivery.get_by_role("button", name=re.compile(r"^Replay message\.created")).click()
    await expect(log.get_by_role("status")).to_have_text(
        "Queued message.created again: it goes out once the webhook is re-enabled."
    )
    await log.get_by_role("button", name="Close").click()

    await row.get_by_role("button", name=f"Re-enable {receiver.url}").click()
    await expect(page.locator("#admin-status")).to_have_text(
        f"Re-enabled “{receiver.url}”: what was queued for it goes out now, in order."
    )
    await expect(row).to_contain_text("Enabled")
    await expect(row.get_by_role("button", name=f"Re-enable {receiver.url}")).to_have_count(0)
    (webhook,) = [w for w in await listed(live_server, "webhooks") if w["id"] == hook["id"]]
    assert webhook["enabled"] is True and webhook["disabled_reason"] is None
    again = await _delivered(receiver, more_than=before)
    assert {d["id"] for d in again} == {delivery_id}
    assert window.errors == []
