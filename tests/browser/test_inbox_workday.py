"""Issue 18, an inbox a support team can work in all day, from the user's side in Chromium.

An operator signs in to the inbox (``/app/``) while a visitor uses the chat window (another
browser context): images reach the visitor, the conversation's facts and controls say what
happened and reset after use, the view survives a reload, and a blocked visitor is told the
chat is closed.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .test_chat_window import stored_convo
from .test_inbox import DESKTOP, LABEL_SIZE, created, row, shipping_label, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI

pytestmark = pytest.mark.browser

PHONE = {"width": 420, "height": 760}


def fact(page: Any, term: str) -> Any:
    """The value of one line of the conversation's facts (``<dt>term</dt><dd>value</dd>``)."""
    return page.locator(f'#facts dt:text-is("{term}") + dd')


async def test_the_visitor_sees_an_operators_image_and_a_blocked_visitor_a_closed_chat(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    created(live_server, "canned", "canned", name="Hello", tag="greet", message="Hi {fname}!")
    visitor = await open_window(viewport=PHONE)
    vp = visitor.page
    await vp.goto(live_server.chat_url)
    await vp.locator("#details summary").click()
    await vp.get_by_label("Your name", exact=True).fill("Sam Visitor")
    await vp.get_by_label("Message", exact=True).fill("Can you send me the label?")
    await vp.locator("#send").click()
    await expect(vp.locator('#messages .msg[data-sender="visitor"]')).to_have_count(1)
    convo_id = await stored_convo(vp, live_server)

    operator = await open_window(viewport=DESKTOP)
    op = operator.page
    await sign_in(op, live_server)
    await row(op, convo_id).click()
    await expect(op.locator("#convo-name")).to_have_text("Sam Visitor")
    # No bot ever touched this chat.
    await expect(fact(op, "Answered by")).to_have_text("nobody yet")

    # {fname} greets the first name of a whole name typed in the one name field.
    await op.get_by_role("button", name="Canned responses").click()
    await op.get_by_role("button", name="Hello greet").click()
    await expect(op.locator("#canned-preview-text")).to_have_text("Hi Sam!")
    await op.get_by_role("button", name="Send canned reply").click()
    await expect(op.locator("#canned-preview")).to_be_hidden()  # sent: the composer has focus
    from_operator = vp.locator('#messages .msg[data-sender="operator"]')
    await expect(from_operator).to_have_count(1)
    await expect(from_operator).to_contain_text("Hi Sam!")
    await expect(fact(op, "Answered by")).to_have_text("operators")

    # An image is shown before it goes; Cancel sends nothing.
    label = {"name": "label.png", "mimeType": "image/png", "buffer": shipping_label()}
    await op.locator("#upload").set_input_files(label)
    preview = op.locator("#image-preview")
    await expect(preview).to_be_visible()
    shown = "data:image/png;base64," + base64.b64encode(shipping_label()).decode()
    await expect(preview.locator("img")).to_have_attribute("src", shown)
    await expect(op.get_by_label("Caption (optional)")).to_be_focused()
    await op.get_by_role("button", name="Cancel").click()
    await expect(preview).to_be_hidden()
    await op.locator("#upload").set_input_files(label)
    await op.get_by_label("Caption (optional)").fill("Your new label")
    await op.get_by_role("button", name="Send image").click()
    await expect(preview).to_be_hidden()
    await expect(op.locator("#messages .msg img")).to_have_count(1)

    # The visitor sees a thumbnail with its caption, which opens the image full size; a reload
    # shows it again.
    for attempt in ("live", "after a reload"):
        thumbnail = from_operator.nth(1).locator("a.msg__image img")
        await expect(thumbnail).to_be_visible()
        await expect(from_operator.nth(1).locator(".msg__caption")).to_have_text("Your new label")
        src = await thumbnail.get_attribute("src")
        assert src and src.startswith(f"{live_server.base_url}/uploads/"), attempt
        width = await thumbnail.evaluate("img => img.decode().then(() => img.naturalWidth)")
        assert width == LABEL_SIZE[0], attempt
        link = from_operator.nth(1).locator("a.msg__image")
        await expect(link).to_have_attribute("href", src)
        await expect(link).to_have_attribute("target", "_blank")
        box = await thumbnail.bounding_box()
        assert box is not None and box["width"] <= PHONE["width"], attempt
        if attempt == "live":
            await vp.reload()
    async with vp.context.expect_page() as opened:
        await from_operator.nth(1).locator("a.msg__image").click()
    full = await opened.value
    await full.wait_for_load_state()
    assert full.url == src
    await full.close()

    # Blocked: the visitor is told the chat is closed, with no Retry that cannot work.
    await op.get_by_label("What to block").select_option("both")
    await op.get_by_role("button", name="Block", exact=True).click()
    await expect(op.locator("#block-state")).to_have_text("Blocked: Visitor's messages")
    await vp.get_by_label("Message", exact=True).fill("Hello?")
    await vp.locator("#send").click()
    await expect(vp.locator("#status")).to_have_text("This chat is closed.")
    failed = vp.locator('#messages .msg[data-sender="visitor"]').last
    await expect(failed).to_contain_text("Not sent.")
    await expect(vp.get_by_role("button", name="Retry")).to_have_count(0)
    await expect(vp.get_by_label("Message", exact=True)).to_be_disabled()
    assert "blocked" not in (await vp.locator("body").inner_text()).lower()
    assert operator.errors == []
    assert visitor.errors == []


async def test_waiting_reopens_transfer_resets_and_the_view_survives_a_reload(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    colleague = created(
        live_server, "operators", "operator",
        name="Jo", email="jo@example.com", password="jo horse 12345",
    )  # fmt: skip
    started = await operator_api.command(
        "sendmessage", message="Where is my parcel?", userInfo={"fname": "Kim"}
    )
    convo_id = started["convoID"]
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await row(page, convo_id).click()
    await expect(page.locator("#convo-name")).to_have_text("Kim")
    await page.get_by_label("Message", exact=True).fill("Which order number is it?")
    await page.get_by_label("Message", exact=True).press("Enter")
    await expect(page.locator("#convo-status")).to_have_text("Active")

    # Waiting for the customer; their answer brings it back to Open.
    await page.get_by_label("Conversation status").select_option("waiting")
    await expect(page.locator("#convo-status")).to_have_text("Waiting")
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        answer = await client.post(
            f"/{live_server.account_id}/liveoperator/postmessage",
            data={"convoID": convo_id, "message": "It is 1042"},
        )
        assert answer.status_code == 200, answer.text
    await expect(page.locator("#convo-status")).to_have_text("Open")
    await expect(row(page, convo_id)).to_have_attribute("data-status", "open")

    # A transfer says so once, and the drop-down is ready for the next one.
    await page.get_by_label("Transfer to").select_option(f"operator:{colleague['id']}")
    await page.get_by_role("button", name="Transfer").click()
    await expect(page.locator("#convo-owner")).to_have_text("Owner: Jo")
    await expect(page.locator("#composer-status")).to_have_text("Transferred.")
    await expect(page.get_by_label("Transfer to")).to_have_value("")
    await page.get_by_label("Message", exact=True).press_sequentially("Jo will ")
    await expect(page.locator("#composer-status")).to_be_hidden()

    # The status filter and the view are the operator's until they change them, reloads too.
    await page.get_by_label("Status", exact=True).select_option("open")
    await page.get_by_role("radio", name="Mine").check()
    await expect(row(page, convo_id)).to_have_count(0)  # Jo's now
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")
    await expect(page.get_by_label("Status", exact=True)).to_have_value("open")
    await expect(page.get_by_role("radio", name="Mine")).to_be_checked()
    await page.get_by_role("radio", name="All").check()
    await expect(row(page, convo_id)).to_be_visible()
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")
    await expect(page.get_by_role("radio", name="All")).to_be_checked()
    await expect(page.get_by_label("Status", exact=True)).to_have_value("open")
    assert window.errors == []


# Records each desktop notification the page shows (the browser's own Notification still
# shows it) and each alert tone it plays.
RECORD_ALERTS = """
window.__notified = [];
window.__tones = 0;
const RealNotification = window.Notification;
class Recorded extends RealNotification {
  constructor(title, options) {
    super(title, options);
    window.__notified.push(title);
  }
}
Object.defineProperty(Recorded, "permission", { get: () => RealNotification.permission });
Recorded.requestPermission = (...args) => RealNotification.requestPermission(...args);
window.Notification = Recorded;
const oscillator = AudioContext.prototype.createOscillator;
AudioContext.prototype.createOscillator = function () {
  window.__tones += 1;
  return oscillator.call(this);
};
"""


async def notified(page: Any) -> list[str]:
    found: list[str] = await page.evaluate("() => window.__notified")
    return found


async def test_alerts_reach_the_operator_whose_customer_writes(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    from playwright.async_api import expect

    sky = {"name": "Sky", "email": "sky@example.com", "password": "sky horse 12345"}
    sky_id = created(live_server, "operators", "operator", **sky)["id"]
    alex_window = await open_window(viewport=DESKTOP)
    alex = alex_window.page
    await alex.context.add_init_script(RECORD_ALERTS)
    await sign_in(alex, live_server)
    enable = alex.get_by_role("button", name="Enable notifications")
    await expect(enable).to_be_visible()
    await alex.context.grant_permissions(["notifications"], origin=live_server.base_url)
    await enable.click()
    await expect(enable).to_be_hidden()
    sky_window = await open_window(viewport=DESKTOP, permissions=["notifications"])
    sp = sky_window.page
    await sp.context.add_init_script(RECORD_ALERTS)
    await sign_in(sp, live_server, sky["email"], sky["password"])
    await expect(sp.get_by_role("button", name="Enable notifications")).to_be_hidden()
    await sp.get_by_role("radio", name="All").check()
    await sp.get_by_label("Status", exact=True).select_option("open,waiting,active")

    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:

        async def customer_says(text: str, convo: str | None = None) -> str:
            answer = await client.post(
                f"/{live_server.account_id}/liveoperator/postmessage",
                data={"message": text, "fname": "Ari", **({"convoID": convo} if convo else {})},
            )
            assert answer.status_code == 200, answer.text
            found: str = answer.json()["convoID"]
            return found

        # A new conversation alerts everyone whose queue it is in: sound, desktop, page.
        convo_id = await customer_says("Is the shop open on Sunday?")
        toast = alex.locator("#alerts-toast")
        await expect(toast).to_have_text("New conversation: Is the shop open on Sunday?")
        assert await notified(alex) == ["New conversation"]
        assert await alex.evaluate("() => window.__tones") == 1
        await expect(sp.locator("#alerts-toast")).to_contain_text("New conversation")

        # The alert opens the conversation; a customer message on screen alerts nobody.
        await toast.get_by_role("button").click()
        await expect(alex.locator("#convo-name")).to_have_text("Ari")
        await alex.get_by_label("Message", exact=True).fill("Yes, 10 to 4.")
        await alex.get_by_label("Message", exact=True).press("Enter")
        await expect(row(sp, convo_id).locator(".row__owner")).to_have_text("Alex")
        await customer_says("Great, thanks", convo_id)
        await expect(alex.locator("#messages .msg").last).to_contain_text("Great, thanks")
        await expect(row(sp, convo_id).locator(".row__preview")).to_have_text("Great, thanks")
        assert await notified(alex) == ["New conversation"]
        assert await notified(sp) == ["New conversation"]  # Alex's now, not Sky's

        # Handed to Sky: Sky is alerted.
        await alex.get_by_label("Transfer to").select_option(f"operator:{sky_id}")
        await alex.get_by_role("button", name="Transfer").click()
        await expect(sp.locator("#alerts-toast")).to_have_text("Transferred to you: Ari")
        assert await notified(sp) == ["New conversation", "Transferred to you"]

        # Muted, Sky sees the message arrive and hears nothing; the choice survives a reload.
        await sp.get_by_label("Mute alerts").check()
        await customer_says("One more question", convo_id)
        await expect(row(sp, convo_id).locator(".row__preview")).to_have_text("One more question")
        assert await notified(sp) == ["New conversation", "Transferred to you"]
        await sp.reload()
        await expect(sp.get_by_label("Mute alerts")).to_be_checked()
    assert alex_window.errors == []
    assert sky_window.errors == []


async def test_the_online_away_switch_is_kept_and_colleagues_see_it(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    kai = {"name": "Kai", "email": "kai@example.com", "password": "kai horse 12345"}
    created(live_server, "operators", "operator", **kai)
    started = await operator_api.command("sendmessage", message="Hello?", userInfo={"fname": "Bo"})
    alex_window = await open_window(viewport=DESKTOP)
    alex = alex_window.page
    await sign_in(alex, live_server)
    switch = alex.get_by_label("Availability")
    await expect(switch).to_have_value("online")
    kai_window = await open_window(viewport=DESKTOP)
    kp = kai_window.page
    await sign_in(kp, live_server, kai["email"], kai["password"])
    await row(kp, started["convoID"]).click()
    alex_option = kp.get_by_label("Transfer to").locator(
        f'option[value="operator:{live_server.operator_id}"]'
    )
    await expect(alex_option).to_have_text(f"{live_server.operator_name} — online")

    async with alex.expect_response("**/api/v1/operator/availability"):
        await switch.select_option("away")
    await expect(alex_option).to_have_text(f"{live_server.operator_name} — away")
    await alex.reload()
    await expect(alex.locator("body")).to_have_attribute("data-availability", "away")
    await expect(alex.get_by_label("Availability")).to_have_value("away")
    await alex.get_by_label("Availability").select_option("online")
    await expect(alex_option).to_have_text(f"{live_server.operator_name} — online")
    assert alex_window.errors == []
    assert kai_window.errors == []


async def test_triage_by_keyboard_from_sign_in_with_clickable_links(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    older = await operator_api.command(
        "sendmessage", message="Tracking says https://parcel.example/track?id=7, see?",
        userInfo={"fname": "Uma"},
    )  # fmt: skip
    newer = await operator_api.command(
        "sendmessage", message="Do you ship abroad?", userInfo={"fname": "Vic"}
    )
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    # Signed in, the keyboard is on the list: the newest conversation's row.
    await expect(row(page, newer["convoID"])).to_be_focused()

    await page.keyboard.press("?")
    shortcuts = page.get_by_role("dialog", name="Keyboard shortcuts")
    await expect(shortcuts).to_be_visible()
    for action in ("Next conversation", "Previous conversation", "Assign to me", "Resolve"):
        await expect(shortcuts).to_contain_text(action)
    await page.keyboard.press("Escape")
    await expect(shortcuts).to_be_hidden()

    await page.keyboard.press("j")  # nothing open: the first conversation
    await expect(page.locator("#convo-name")).to_have_text("Vic")
    await page.keyboard.press("j")
    await expect(page.locator("#convo-name")).to_have_text("Uma")
    link = page.locator("#messages .msg__text a")
    await expect(link).to_have_text("https://parcel.example/track?id=7")
    await expect(link).to_have_attribute("href", "https://parcel.example/track?id=7")
    await expect(link).to_have_attribute("target", "_blank")
    await expect(page.locator("#messages .msg__text")).to_have_text(
        "Tracking says https://parcel.example/track?id=7, see?"
    )
    await page.keyboard.press("k")
    await expect(page.locator("#convo-name")).to_have_text("Vic")
    await page.keyboard.press("a")
    await expect(page.locator("#convo-owner")).to_have_text("Owner: you")
    await page.keyboard.press("r")
    composer = page.get_by_label("Message", exact=True)
    await expect(composer).to_be_focused()
    await composer.press_sequentially("jk?ae")  # typed, not shortcuts
    await expect(composer).to_have_value("jk?ae")
    await expect(page.locator("#convo-name")).to_have_text("Vic")
    await composer.fill("")
    await page.locator("#convo-name").click()
    await page.keyboard.press("e")
    await expect(page.locator("#convo-status")).to_have_text("Resolved")
    assert older["convoID"] != newer["convoID"]
    assert window.errors == []


async def test_slash_inserts_a_canned_response_as_editable_text(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    created(
        live_server, "canned", "canned",
        name="Shipping times", tag="delivery", message="Hi {fname}, parcels arrive in 2-3 days.",
    )  # fmt: skip
    started = await operator_api.command(
        "sendmessage", message="How long does shipping take?", userInfo={"fname": "Wen Li"}
    )
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await row(page, started["convoID"]).click()
    await expect(page.locator("#convo-name")).to_have_text("Wen Li")
    composer = page.get_by_label("Message", exact=True)
    picker = page.get_by_role("listbox", name="Canned responses to insert")

    await composer.press_sequentially("/zzz")
    await expect(picker).to_have_text("No canned response matches.")
    await composer.press("Escape")
    await expect(picker).to_be_hidden()
    await expect(composer).to_have_value("/zzz")

    await composer.fill("")
    await composer.press_sequentially("/ship")
    filled = "Hi Wen, parcels arrive in 2-3 days."
    top = picker.get_by_role("option").first
    await expect(top).to_contain_text("Shipping times")
    await expect(top).to_contain_text(filled)  # the text itself, macros filled
    await composer.press("Enter")
    await expect(picker).to_be_hidden()
    await expect(composer).to_have_value(filled)
    await composer.press("End")
    await composer.press_sequentially(" Anything else?")
    await composer.press("Enter")
    mine = page.locator('#messages .msg[data-sender="operator"] .msg__text')
    await expect(mine).to_have_text(f"{filled} Anything else?")
    history = await operator_api.command("gethistory", convoID=started["convoID"])
    assert history["messages"][-1]["message"] == f"{filled} Anything else?"

    # An emoji goes in at the cursor.
    await composer.fill("Thanks!")
    await composer.press("Home")
    await page.get_by_role("button", name="Emoji").click()
    await page.get_by_role("button", name="thumbs up").click()
    await expect(page.get_by_role("group", name="Emoji")).to_be_hidden()
    await expect(composer).to_be_focused()
    await expect(composer).to_have_value("👍Thanks!")
    await composer.press("Enter")
    await expect(mine.last).to_have_text("👍Thanks!")
    assert window.errors == []


async def test_a_phone_sized_inbox_reads_and_answers_a_conversation(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    started = await operator_api.command(
        "sendmessage", message="Are you open today?", userInfo={"fname": "Zoe"}
    )
    for n in range(12):
        await operator_api.command("sendmessage", convoID=started["convoID"], message=f"line {n}")
    window = await open_window(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = window.page
    await sign_in(page, live_server)
    await row(page, started["convoID"]).click()
    await expect(page.locator("#convo-name")).to_have_text("Zoe")
    await expect(page.locator("#convo-list")).to_be_hidden()  # the conversation has the screen
    thread = await page.locator("#thread").bounding_box()
    assert thread is not None and thread["height"] >= 300, thread
    width = await page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 390
    composer = page.get_by_label("Message", exact=True)
    box = await composer.bounding_box()
    assert box is not None and box["y"] + box["height"] <= 844
    await composer.fill("Yes, until 6 pm.")
    await page.get_by_role("button", name="Send", exact=True).click()
    await expect(page.locator('#messages .msg[data-sender="operator"]')).to_contain_text(
        "Yes, until 6 pm."
    )
    await page.get_by_role("link", name="← Conversations").click()
    await expect(row(page, started["convoID"])).to_be_visible()
    await expect(page.locator("#convo")).to_be_hidden()
    assert window.errors == []


async def test_deactivating_an_operator_puts_their_chats_back_in_the_queue(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    admin = {"name": "Robin", "email": "robin@example.com", "password": "admin horse 9"}
    created(live_server, "operators", "operator", **admin, role="admin")
    started = await operator_api.command(
        "sendmessage", message="My order is late", userInfo={"fname": "Lee"}
    )
    convo_id = started["convoID"]
    await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=live_server.operator_id,
        message="Looking into it now",
    )  # fmt: skip
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server, admin["email"], admin["password"])
    await expect(row(page, convo_id).locator(".row__owner")).to_have_text(live_server.operator_name)

    await page.get_by_role("link", name="Admin").click()
    operators = page.locator("#admin-body table")
    alex = operators.locator("tr", has_text=live_server.operator_name)
    await expect(alex).to_contain_text("Active")
    await page.get_by_role("button", name=f"Deactivate {live_server.operator_name}").click()
    dialog = page.get_by_role("dialog", name=f"Deactivate {live_server.operator_name}?")
    await expect(dialog).to_be_visible()
    await expect(dialog.get_by_label("Their open conversations")).to_have_value("")
    await dialog.get_by_role("button", name="Deactivate").click()
    await expect(dialog).to_have_count(0)
    # Alex also owns the chats of the tests before in this module.
    await expect(page.locator("#admin-status")).to_have_text(
        re.compile(
            f"Deactivated “{live_server.operator_name}”; [0-9]+ open conversations? went back"
            " to the queue."
        )
    )
    await expect(alex).to_contain_text("Deactivated")
    await expect(
        page.get_by_role("button", name=f"Reactivate {live_server.operator_name}")
    ).to_be_visible()

    # The chat is back in the queue; what Alex wrote still carries their name; nobody hands
    # it to Alex again.
    await page.get_by_role("link", name="Inbox").click()
    item = row(page, convo_id)
    await expect(item.locator(".row__owner")).to_have_text("Unassigned")
    await expect(item).to_have_attribute("data-status", "open")
    await item.click()
    await expect(page.locator("#convo-owner")).to_have_text("Unassigned")
    await expect(page.locator('#messages .msg[data-sender="operator"] .msg__who')).to_have_text(
        live_server.operator_name
    )
    options = await page.get_by_label("Transfer to").locator("option").all_inner_texts()
    assert not any(o.startswith(live_server.operator_name) for o in options), options

    # Alex cannot sign in any more.
    other = await open_window(viewport=DESKTOP)
    await other.page.goto(f"{live_server.base_url}/app/")
    form = other.page.locator("#login-form")
    await form.get_by_label("Email").fill("alex@example.com")
    await form.get_by_label("Password").fill("correct horse 1")
    await form.get_by_role("button", name="Sign in").click()
    await expect(other.page.locator("#login-error")).to_have_text(
        "this operator has been deactivated"
    )
    assert window.errors == []
