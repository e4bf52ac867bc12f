"""The Reports page (issue 19) in a real Chromium, against a real server: a visitor's rating
reaches the admin's report; filters, a bad time zone and the CSV export; an operator sees their
own figures; and a month of history is photographed for the README."""

from __future__ import annotations

import dataclasses
import random
import secrets
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from storage import create_store
from storage.models import Change, Conversation, Message, SourceApp, UserInfo

from .test_inbox import ADMIN, DESKTOP, SCREENSHOTS, sign_in
from .test_inbox import admin_operator as admin_operator  # the fixture: an admin of the account
from .test_widget import FRAME, LAUNCHER, chat_frame, page_errors, send_as_visitor, stored
from .test_widget import host_site as host_site  # the fixture: a page with the embed snippet

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI
    from .test_widget import HostSite

pytestmark = pytest.mark.browser

DAY_S = 86_400
# Live chat twice as often as SMS, as on a shop's site.
HUMAN_CHANNELS: tuple[SourceApp, ...] = ("liveoperator", "liveoperator", "smsbroadcast")


async def visitor_rates(server: LiveServer, operator_api: OperatorAPI, text: str) -> str:
    """A chat-window conversation that Alex answers and resolves and the visitor rates 4."""
    base = f"{server.base_url}/{server.account_id}/liveoperator"
    async with httpx.AsyncClient(timeout=10.0) as client:
        opened = await client.post(f"{base}/postmessage", data={"message": "Where is my parcel?"})
        convo: str = opened.json()["convoID"]
        await operator_api.command(
            "sendmessage", convoID=convo, operatorID=server.operator_id, message="On its way!"
        )
        await operator_api.command("setstatus", convoID=convo, status="resolved")
        rated = await client.post(
            f"{base}/rate", json={"convoID": convo, "rating": 4, "comment": text}
        )
        assert rated.status_code == 200, rated.text
    return convo


async def test_a_visitors_rating_reaches_the_admins_reports(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    admin_operator: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    await visitor_rates(live_server, operator_api, "Fast <b>and</b> friendly")
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Reports").click()
    summary = page.locator("#reports-summary")
    filters = page.locator("#reports-form")
    await expect(summary.locator("div", has_text="Opened")).to_contain_text("1")
    await expect(summary.locator("div", has_text="Average rating")).to_contain_text("4.0 / 5")
    await expect(page.locator("#reports-comments")).to_have_text("4 ★ Fast <b>and</b> friendly")
    await expect(page.locator("#chart-volume rect")).to_have_count(30)
    await expect(page.locator("#chart-hours rect")).to_have_count(168)
    await expect(page.locator("#chart-ratings rect")).to_have_count(5)
    await expect(page.locator("#chart-response rect")).to_have_count(7)

    # The SMS channel alone has no conversations.
    await filters.get_by_label("Channel").select_option("sms")
    await filters.get_by_role("button", name="Show").click()
    await expect(summary.locator("div", has_text="Opened")).to_contain_text("0")

    # A time zone the server does not know is explained, not a blank page.
    await filters.get_by_label("Time zone").fill("Mars/Olympus")
    await filters.get_by_role("button", name="Show").click()
    await expect(page.locator("#reports-error")).to_contain_text("unknown time zone")

    await filters.get_by_label("Time zone").fill("Europe/Berlin")
    await filters.get_by_label("Channel").select_option("")
    await filters.get_by_role("button", name="Show").click()
    await expect(page.locator("#reports-error")).to_be_hidden()
    async with page.expect_download() as downloading:
        await page.get_by_role("button", name="Download CSV").click()
    download = await downloading.value
    assert download.suggested_filename.startswith("volume-")
    lines = (await download.path()).read_text().splitlines()
    assert lines[0] == "series,when,hour,opened,resolved" and len(lines) == 1 + 30 + 168
    assert window.errors == []


async def test_an_operator_sees_their_own_figures(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#reports-summary")).to_contain_text("Opened")
    # No operator picker: the server gives an operator only their own figures.
    await expect(page.locator("#reports-form").get_by_label("Operator")).to_have_count(0)
    await expect(page.locator("#reports-comments")).to_contain_text("Fast")
    assert window.errors == []


@pytest.mark.parametrize("websocket", [True, False], ids=["socket", "polling"])
async def test_the_visitor_rates_in_the_chat_window_and_the_admin_sees_it(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    admin_operator: dict[str, Any],
    websocket: bool,
) -> None:
    from playwright.async_api import expect

    visitor = await open_window(websocket=websocket, viewport={"width": 420, "height": 720})
    chat = visitor.page
    await chat.goto(live_server.chat_url)
    await chat.get_by_label("Message", exact=True).fill("My order never arrived")
    await chat.locator("#send").click()
    sent = chat.locator('#messages .msg[data-sender="visitor"]')
    await expect(sent).to_have_attribute("data-seq", "1")
    convo = await chat.evaluate(
        "(k) => localStorage.getItem(k)", f"liveop:{live_server.account_id}:convo"
    )
    question = chat.locator("#rating")
    await expect(question).to_be_hidden()
    await operator_api.command(
        "sendmessage", convoID=convo, operatorID=live_server.operator_id, message="Resent today!"
    )
    await operator_api.command("setstatus", convoID=convo, status="resolved")
    await expect(question).to_be_visible()
    await expect(question.get_by_role("button", name="Send rating")).to_be_disabled()
    comment = f"Sorted quickly ({'socket' if websocket else 'polling'})"
    await question.get_by_role("radio", name="5 of 5: Very good").click()
    await question.get_by_label("Comment (optional)").fill(comment)
    await question.get_by_role("button", name="Send rating").click()
    await expect(question.get_by_role("status")).to_have_text("Thank you for your feedback!")

    # Reopened by the visitor, resolved again: asked again, once more.
    await chat.get_by_label("Message", exact=True).fill("One more thing")
    await chat.locator("#send").click()
    await expect(question).to_be_hidden()
    await operator_api.command("setstatus", convoID=convo, status="resolved")
    await expect(question.get_by_role("button", name="Send rating")).to_be_visible()
    assert visitor.errors == []

    admin = await open_window(viewport=DESKTOP)
    page = admin.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#reports-comments")).to_contain_text(f"5 ★ {comment}")
    assert admin.errors == []


async def test_the_widget_asks_the_visitor_too(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    host_site: HostSite,
) -> None:
    from playwright.async_api import expect

    window = await open_window(viewport={"width": 1200, "height": 800})
    page = window.page
    await page.goto(host_site.add(live_server, "rated"))
    await page.locator(LAUNCHER).click()
    frame = await chat_frame(page)
    await send_as_visitor(page, "Do you ship to Norway?")
    convo = await stored(frame, live_server, "convo")
    await operator_api.command(
        "sendmessage", convoID=convo, operatorID=live_server.operator_id, message="We do!"
    )
    await operator_api.command("setstatus", convoID=convo, status="resolved")
    question = page.frame_locator(FRAME).locator("#rating")
    await question.get_by_role("radio", name="3 of 5: OK").click()
    await question.get_by_label("Comment (optional)").fill("Asked in the widget")
    await question.get_by_role("button", name="Send rating").click()
    await expect(question.get_by_role("status")).to_have_text("Thank you for your feedback!")
    today = datetime.now(UTC).date().isoformat()
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        report = await client.get(
            "/api/v1/reports/ratings",
            params={"from": today, "to": today},
            headers={"X-Api-Key": live_server.api_key},
        )
    comments = [r for r in report.json()["rows"] if r["kind"] == "comment"]
    assert {"score": 3, "comment": "Asked in the widget", "conversation_id": convo}.items() <= {
        **next(c for c in comments if c["conversation_id"] == convo)
    }.items()
    assert page_errors(window) == []


async def seed_history(server: LiveServer, operator_ids: list[int]) -> None:
    """A month of a small team's conversations, written into the server's own SQLite file:
    the API stamps everything "now", and a chart of one day shows nothing."""
    store = create_store(f"sqlite:///{server.data_dir / 'liveop.db'}")
    await store.open()
    rng = random.Random(19)
    midnight = time.time() // DAY_S * DAY_S
    comments = {1: "Still waiting on my refund", 2: "Nobody read my first message",
                3: "Took a while, but solved.", 4: "Very helpful agent",
                5: "Quick and clear, thanks!"}  # fmt: skip
    try:
        for day in range(1, 30):
            for _ in range(rng.randint(3, 12) + (6 if (day % 7) in (1, 2, 3) else 0)):
                opened = midnight - day * DAY_S + rng.uniform(7, 20) * 3600
                replied = opened + rng.expovariate(1 / 420)
                resolved = replied + rng.expovariate(1 / 5400)
                bot = rng.random() < 0.3
                # Some the bot settles alone; some wait for a reply, unresolved.
                answered = not bot or rng.random() < 0.6
                operator = rng.choice(operator_ids) if answered else None
                convo_id = secrets.token_urlsafe(16)
                said = [("visitor", opened, None)] + ([("bot", opened + 2, None)] if bot else [])
                if answered and rng.random() < 0.95:
                    said.append(("operator", replied, operator))
                else:
                    resolved = None
                messages = tuple(
                    Message(secrets.token_urlsafe(12), convo_id, seq, sender, op,  # type: ignore[arg-type]
                            "Op" if op else None, "…", at, None)
                    for seq, (sender, at, op) in enumerate(said, start=1)
                )  # fmt: skip
                convo = Conversation(
                    id=convo_id, account_id=server.account_id,
                    source_app="chatbot" if bot else rng.choice(HUMAN_CHANNELS),
                    status="resolved" if resolved else "open",
                    mode="operator" if answered else "bot", operator_id=operator, team_id=None,
                    user_info=UserInfo(fname="Visitor"), created=opened, last_activity=said[-1][1],
                    resolved_at=resolved, last_seq=len(said), asked_at=opened,
                    replied_at=said[-1][1] if said[-1][0] == "operator" else None,
                    replied_by=operator if said[-1][0] == "operator" else None,
                    bot_answered=bot,
                )  # fmt: skip
                if resolved and rng.random() < 0.6:
                    score = rng.choices([1, 2, 3, 4, 5], weights=[1, 1, 2, 5, 8])[0]
                    comment = comments[score] if rng.random() < 0.3 else ""
                    convo = dataclasses.replace(
                        convo, rating=score, rating_comment=comment, rated_resolved_at=resolved
                    )
                await store.write(
                    server.account_id, None, lambda _, c=convo, m=messages: Change(None, c, m)
                )
    finally:
        await store.close()


async def test_reports_page_screenshot(
    open_window: OpenWindow, live_server: LiveServer, admin_operator: dict[str, Any]
) -> None:
    from playwright.async_api import expect

    await seed_history(live_server, [live_server.operator_id, admin_operator["id"]])
    window = await open_window(viewport={"width": 1400, "height": 1100})
    page = window.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Reports").click()
    await expect(page.locator("#reports-comments li").first).to_be_visible()
    await page.mouse.move(0, 0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "reports.png"), full_page=True)
    assert window.errors == []
