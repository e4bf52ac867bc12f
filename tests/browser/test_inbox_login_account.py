"""Issue 21 item 9 in the inbox: emails are unique per account, so an email and password that
sign in to two accounts need the account. The login form asks for it only then. (Its own
module, so its own server: the second account would change the other inbox tests' logins.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from .conftest import _cli_json, _server_env
from .test_inbox import DESKTOP, OPERATOR_EMAIL, OPERATOR_PASSWORD

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser

OTHER_NAME = "Alexandra"


async def test_login_asks_for_the_account_when_the_password_works_in_two(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    env = _server_env(live_server.data_dir)
    other = str(_cli_json(["account", "create", "--name", "Globex"], env)["accountID"])
    _cli_json(
        ["operator", "create", "--account", other, "--name", OTHER_NAME,
         "--email", OPERATOR_EMAIL.upper(), "--password", OPERATOR_PASSWORD],
        env,
    )  # fmt: skip

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await page.goto(f"{live_server.base_url}/app/")
    form = page.locator("#login-form")
    error = page.locator("#login-error")
    account = form.get_by_label("Account")
    await expect(account).to_be_hidden()

    await form.get_by_label("Email").fill(OPERATOR_EMAIL)
    await form.get_by_label("Password").fill(OPERATOR_PASSWORD)
    async with page.expect_response("**/api/v1/auth/login") as ambiguous:
        await form.get_by_role("button", name="Sign in").click()
    assert (await ambiguous.value).status == 409
    await expect(error).to_have_text(
        "This email and password sign in to more than one account: enter the account ID."
    )
    await expect(account).to_be_visible()
    await expect(account).to_be_focused()

    await account.fill("no-such-account")
    async with page.expect_response("**/api/v1/auth/login") as refused:
        await account.press("Enter")
    assert (await refused.value).status == 401
    await expect(error).to_have_text("Wrong email, password or account.")
    await expect(page.locator("#shell")).to_be_hidden()

    await form.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await account.fill(other)
    await form.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#shell")).to_be_visible()
    await expect(page.locator("#me")).to_have_text(OTHER_NAME)
    assert window.errors == []
