"""Issue 18, "a first hour that shows the product", in the inbox: an operator renames
themselves and a colleague's inbox follows; an admin invites a teammate, who opens the link in
a fresh browser, chooses a password and lands in the inbox; Admin → Install shows each site's
embed snippet and copies it. (Its own module, so its own server: the new operators would
change the other inbox tests' lists.)"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .test_inbox import ADMIN, DESKTOP, admin_operator, created, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI

pytestmark = pytest.mark.browser

__all__ = ["admin_operator"]  # a fixture, used by name


async def test_an_operator_renames_themselves_and_a_colleague_sees_the_new_name(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    admin_operator: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    # Alex answers a visitor, so the conversation is theirs.
    opened = await operator_api.command(
        "sendmessage", message="Is my order on its way?", userInfo={"fname": "Nora"}
    )
    convo_id = opened["convoID"]
    await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=live_server.operator_id, message="Checking"
    )

    colleague = (await open_window(viewport=DESKTOP)).page
    await sign_in(colleague, live_server, ADMIN["email"], ADMIN["password"])
    await colleague.goto(f"{live_server.base_url}/app/#/inbox/{convo_id}")
    owner = colleague.locator("#convo-owner")
    await expect(owner).to_have_text("Owner: Alex")

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await page.get_by_role("link", name="Profile").click()
    form = page.locator("#profile-form")
    await form.get_by_label("Name").fill("Alex Rivera")
    await form.get_by_label("Avatar URL").fill("https://cdn.example.com/alex.png")
    await form.get_by_role("button", name="Save profile").click()
    await expect(page.locator("#profile-status")).to_have_text("Saved.")
    await expect(page.locator("#me")).to_have_text("Alex Rivera")

    # Live, without a reload: the owner line and the list row.
    await expect(owner).to_have_text("Owner: Alex Rivera")
    row = colleague.locator(f'#convo-list .row[data-id="{convo_id}"] .row__owner')
    await expect(row).to_have_text("Alex Rivera")

    # A wrong current password changes nothing and says why.
    await form.get_by_label("Current password").fill("not my password")
    await form.get_by_label("New password (at least 8 characters)").fill("a new password 2")
    await form.get_by_role("button", name="Save profile").click()
    await expect(page.locator("#profile-error")).to_have_text("the current password is not right")
    # Signed in still: the refusal is no expired session.
    await expect(page.locator("#shell")).to_be_visible()
    assert window.errors == []


async def test_an_admin_invites_a_teammate_who_joins_from_a_fresh_browser(
    open_window: OpenWindow, live_server: LiveServer, admin_operator: dict[str, Any]
) -> None:
    from playwright.async_api import expect

    created(live_server, "teams", "team", name="Billing")
    admin = (await open_window(viewport=DESKTOP)).page
    await sign_in(admin, live_server, ADMIN["email"], ADMIN["password"])
    await admin.goto(f"{live_server.base_url}/app/#/admin/invites")
    await expect(admin.get_by_text("No pending invitations.")).to_be_visible()
    form = admin.locator("#invite-form")
    await form.get_by_label("Name").fill("Sam Newcomer")
    await form.get_by_label("Email").fill("sam@example.com")
    await form.get_by_label("Billing").check()
    await form.get_by_role("button", name="Create invitation link").click()
    link = admin.get_by_label("Invitation link for Sam Newcomer")
    await expect(link).to_be_visible()
    url = await link.input_value()
    assert url.startswith(f"{live_server.base_url}/app/#/invite/")
    pending = admin.locator(".admin__table tbody tr")
    await expect(pending).to_have_count(1)
    await expect(pending).to_contain_text("sam@example.com")

    invitee_window = await open_window(viewport=DESKTOP)
    invitee = invitee_window.page
    await invitee.goto(url)
    await expect(invitee.locator("#invite-lead")).to_have_text(
        "Sam Newcomer, you are invited to Acme as sam@example.com."
    )
    # The token leaves the address bar at once.
    assert url.rsplit("/", 1)[1] not in invitee.url
    await invitee.get_by_label("Choose a password (at least 8 characters)").fill("sams password 1")
    await invitee.get_by_label("Type it again").fill("sams password 1")
    await invitee.get_by_role("button", name="Join and sign in").click()
    await expect(invitee.locator("#shell")).to_be_visible()
    await expect(invitee.locator("body")).to_have_attribute("data-stream", "live")
    await expect(invitee.locator("#me")).to_have_text("Sam Newcomer")
    assert invitee.url.endswith("/app/#/inbox")
    assert invitee_window.errors == []

    # The link worked once.
    again = (await open_window(viewport=DESKTOP)).page
    await again.goto(url)
    await expect(again.locator("#invite-error")).to_have_text(
        "this invitation has already been used: sign in instead"
    )
    await expect(again.get_by_role("link", name="Go to sign in")).to_be_visible()
    # Sam is a member of the team, and no invitation is pending any more.
    await admin.reload()
    await expect(admin.get_by_text("No pending invitations.")).to_be_visible()
    await admin.goto(f"{live_server.base_url}/app/#/admin/teams")
    await expect(admin.locator(".admin__table")).to_contain_text("Sam Newcomer")


async def test_the_install_tab_shows_each_sites_snippet_and_copies_it(
    open_window: OpenWindow, live_server: LiveServer, admin_operator: dict[str, Any]
) -> None:
    from playwright.async_api import expect

    shop = created(live_server, "sites", "site", name="Shop")
    window = await open_window(viewport=DESKTOP, permissions=["clipboard-read", "clipboard-write"])
    page = window.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Admin").click()
    await page.get_by_role("link", name="Install").click()
    expected = (
        f'<script src="{live_server.base_url}/widget.js" data-account="{live_server.account_id}"'
        f' data-site="{shop["id"]}" async></script>'
    )
    section = page.get_by_role("region", name="Shop")
    await expect(section.locator("pre")).to_have_text(expected)
    await section.get_by_role("button", name="Copy snippet for Shop").click()
    await expect(section.get_by_role("status")).to_have_text("Copied.")
    assert await page.evaluate("navigator.clipboard.readText()") == expected
    assert window.errors == []
