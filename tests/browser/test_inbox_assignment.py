"""Issue 18 from the operators' side, in Chromium: an admin turns on a team's round robin in
Admin → Teams and new conversations land in the next online operator's "Mine"; an operator
keeps a canned response of their own and inserts it with "/", where nobody else finds it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .test_inbox import ADMIN, DESKTOP, created, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI

pytestmark = pytest.mark.browser

KAI = {"name": "Kai", "email": "kai@example.com", "password": "kai horse 12345"}


@pytest.fixture(scope="module")
def kai(live_server: LiveServer) -> dict[str, Any]:
    """A second plain operator, besides conftest's Alex."""
    return created(live_server, "operators", "operator", **KAI)


def mine_view(page: Any) -> Any:
    return page.get_by_label("Mine", exact=True)


async def signed_in_and_online(page: Any, server: LiveServer, *login: str) -> None:
    """Signs in and waits for the inbox's first heartbeat: the operator is online."""
    async with page.expect_response("**/api/v1/operator/heartbeat"):
        await sign_in(page, server, *login)


async def test_a_round_robin_team_puts_new_conversations_in_the_next_online_operators_mine(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    kai: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    created(live_server, "operators", "operator", **ADMIN, role="admin")

    # The admin makes a team of Alex and Kai that hands out conversations in turn, one each.
    admin_window = await open_window(viewport=DESKTOP)
    ap = admin_window.page
    await sign_in(ap, live_server, ADMIN["email"], ADMIN["password"])
    await ap.get_by_role("link", name="Admin").click()
    await ap.get_by_role("link", name="Teams").click()
    body = ap.locator("#admin-body")
    await expect(body.get_by_role("heading", name="Teams", exact=True)).to_be_visible()
    form = ap.locator("#admin-form")
    await form.get_by_label("Name").fill("Support")
    await form.get_by_label(live_server.operator_name).check()
    await form.get_by_label("Kai").check()
    await form.get_by_label("New conversations").select_option(
        label="Assign round robin to online members"
    )
    await form.get_by_label("Open conversations per operator (round robin)").fill("1")
    await form.get_by_role("button", name="Add team").click()
    team_row = body.locator("tr", has_text="Support")
    await expect(team_row).to_contain_text("Round robin, up to 1 each")
    # New conversations of the default site go to the team.
    await ap.get_by_role("link", name="Sites").click()
    await body.get_by_role("button", name="Edit Default").click()
    await form.get_by_label("Team for new conversations").select_option(label="Support")
    await form.get_by_role("button", name="Save").click()
    await expect(body.locator("tr", has_text="Default")).to_contain_text("Support")

    # Alex has the inbox open, looking at his own conversations; Kai is not signed in.
    alex_window = await open_window(viewport=DESKTOP)
    alex = alex_window.page
    await signed_in_and_online(alex, live_server)
    await mine_view(alex).check()

    first = await operator_api.command(
        "sendmessage", message="Hi, my order?", userInfo={"fname": "Ann"}
    )
    await expect(row(alex, first["convoID"])).to_be_visible()
    await row(alex, first["convoID"]).click()
    await expect(alex.locator("#convo-owner")).to_have_text("Owner: you")

    # Alex has his one: the next waits unassigned, in the team's queue, until Kai comes in.
    second = await operator_api.command(
        "sendmessage", message="Anyone there?", userInfo={"fname": "Ben"}
    )
    await alex.get_by_label("Unassigned", exact=True).check()
    await expect(row(alex, second["convoID"])).to_be_visible()
    kai_window = await open_window(viewport=DESKTOP)
    kp = kai_window.page
    await signed_in_and_online(kp, live_server, KAI["email"], KAI["password"])
    await mine_view(kp).check()
    await expect(row(kp, second["convoID"])).to_be_visible()
    await expect(row(alex, second["convoID"])).to_be_hidden()
    history = await operator_api.command("gethistory", convoID=second["convoID"])
    assert history["conversation"]["operatorID"] == kai["id"]
    assert admin_window.errors == []
    assert alex_window.errors == []
    assert kai_window.errors == []


async def test_an_operator_keeps_a_canned_response_of_their_own_and_inserts_it_with_slash(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    kai: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    created(live_server, "canned", "canned", name="Refund policy", message="Refunds take 5 days.")
    started = await operator_api.command(
        "sendmessage", message="Where is my refund?", userInfo={"fname": "Dee"}
    )
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)

    # Admin → My responses: any operator may keep their own.
    await page.get_by_role("link", name="Admin").click()
    await page.get_by_role("link", name="My responses").click()
    body = page.locator("#admin-body")
    await expect(body.get_by_role("heading", name="My responses", exact=True)).to_be_visible()
    form = page.locator("#admin-form")
    await form.get_by_label("Name").fill("Refund check")
    await form.get_by_label("Message").fill("Hi {fname}, I'm checking your refund now. {operator}")
    await form.get_by_role("button", name="Add canned response").click()
    await expect(body.locator("tr", has_text="Refund check")).to_be_visible()

    await page.get_by_role("link", name="Inbox").click()
    await row(page, started["convoID"]).click()
    await expect(page.locator("#convo-name")).to_have_text("Dee")
    composer = page.get_by_role("textbox", name="Message", exact=True)
    picker = page.get_by_role("listbox", name="Canned responses to insert")
    await composer.press_sequentially("/refund")
    options = picker.get_by_role("option")
    # Both kinds, the operator's own first and marked.
    await expect(options).to_have_count(2)
    filled = f"Hi Dee, I'm checking your refund now. {live_server.operator_name}"
    await expect(options.first).to_contain_text("Refund check")
    await expect(options.first.locator(".mine-mark")).to_have_text("Mine")
    await expect(options.first).to_contain_text(filled)
    await expect(options.nth(1)).to_contain_text("Refund policy")
    await expect(options.nth(1).locator(".mine-mark")).to_have_count(0)
    await composer.press("Enter")
    await expect(composer).to_have_value(filled)
    await composer.press("Enter")
    sent = page.locator('#messages .msg[data-sender="operator"] .msg__text')
    await expect(sent).to_have_text(filled)

    # A colleague's picker has the account's response only.
    kai_window = await open_window(viewport=DESKTOP)
    kp = kai_window.page
    await sign_in(kp, live_server, KAI["email"], KAI["password"])
    await row(kp, started["convoID"]).click()
    await kp.get_by_label("Message", exact=True).press_sequentially("/refund")
    their_options = kp.get_by_role("listbox", name="Canned responses to insert").get_by_role(
        "option"
    )
    await expect(their_options).to_have_count(1)
    await expect(their_options).to_contain_text("Refund policy")
    assert window.errors == []
    assert kai_window.errors == []
