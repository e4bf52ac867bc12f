"""The operator inbox (``/app/``) in a real Chromium, against a real server.

An operator signs in; a visitor on a page with the embed snippet (another browser context)
holds a whole conversation with them; the live stream is cut and recovers; the admin screens
change the account; a mixed-channel inbox is driven by keyboard and photographed for the README.
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

# The login of the operator that conftest's live_server creates (not an admin).
from .conftest import OPERATOR_EMAIL, OPERATOR_PASSWORD
from .test_widget import FRAME, LAUNCHER, chat_frame, send_as_visitor, stored
from .test_widget import host_site as host_site  # the fixture: a page with the embed snippet

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI
    from .test_widget import HostSite

pytestmark = pytest.mark.browser

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = REPO_ROOT / "docs" / "screenshots"
DESKTOP = {"width": 1400, "height": 860}
ADMIN = {"name": "Robin", "email": "robin@example.com", "password": "admin horse 9"}
WELCOME = "Hi {fname}, this is {operator}. How can I help?"
LABEL_SIZE = (240, 140)
MARKUP = '<img src="x" onerror="document.title=1"> <b>bold</b>'


# ---------------------------------------------------------------------------------------------
# Helpers


async def listed(server: LiveServer, kind: str) -> list[dict[str, Any]]:
    """``GET /api/v1/admin/{kind}`` with the account's API key, as an integration reads it."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10.0) as client:
        response = await client.get(f"/api/v1/admin/{kind}", headers={"X-Api-Key": server.api_key})
    assert response.status_code == 200, response.text
    found: list[dict[str, Any]] = response.json()[kind]
    return found


def created(server: LiveServer, kind: str, key: str, **body: Any) -> dict[str, Any]:
    """``POST /api/v1/admin/{kind}`` with the account's API key: the object created."""
    response = httpx.post(
        f"{server.base_url}/api/v1/admin/{kind}", json=body, headers={"X-Api-Key": server.api_key}
    )
    assert response.status_code == 201, response.text
    found: dict[str, Any] = response.json()[key]
    return found


@pytest.fixture(scope="module")
def welcome_canned(live_server: LiveServer) -> dict[str, Any]:
    """A canned response with macros, listed in the picker as "Welcome greeting"."""
    return created(live_server, "canned", "canned", name="Welcome", tag="greeting", message=WELCOME)


@pytest.fixture(scope="module")
def admin_operator(live_server: LiveServer) -> dict[str, Any]:
    """An admin operator of the test account (the one conftest creates is not an admin)."""
    return created(live_server, "operators", "operator", **ADMIN, role="admin")


async def sign_in(
    page: Any,
    server: LiveServer,
    email: str = OPERATOR_EMAIL,
    password: str = OPERATOR_PASSWORD,
    base_url: str | None = None,
) -> None:
    from playwright.async_api import expect

    await page.goto(f"{base_url or server.base_url}/app/")
    form = page.locator("#login-form")
    await form.get_by_label("Email").fill(email)
    await form.get_by_label("Password").fill(password)
    await form.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#shell")).to_be_visible()
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")


def row(page: Any, convo_id: str) -> Any:
    return page.locator(f'#convo-list .row[data-id="{convo_id}"]')


def shipping_label() -> bytes:
    """A PNG an operator might send: a small shipping label."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", LABEL_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, LABEL_SIZE[0] - 1, LABEL_SIZE[1] - 1), outline="black", width=3)
    for line, text in enumerate(("SHIP TO", "Priya Shah", "12 Harbour Street", "Bristol BS1 4QA")):
        draw.text((14, 12 + 16 * line), text, fill="black")
    for x in range(14, LABEL_SIZE[0] - 14, 5):
        draw.rectangle((x, 92, x + (x % 3) + 1, 128), fill="black")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


class DroppingProxy:
    """A TCP proxy in front of the server that can cut every connection at once and refuse new
    ones for a while: a network drop, as the browser sees it, on a live SSE stream."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self.refusing = False
        self.base_url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        self.cut(refuse=True)
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def resume(self) -> None:
        self.refusing = False

    def cut(self, *, refuse: bool) -> None:
        self.refusing = refuse
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self._upstream_port)
        self._writers |= {writer, up_writer}

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers -= {writer, up_writer}


@pytest.fixture
async def proxy(live_server: LiveServer) -> AsyncIterator[DroppingProxy]:
    found = DroppingProxy(int(live_server.base_url.rsplit(":", 1)[1]))
    await found.start()
    try:
        yield found
    finally:
        await found.close()


# ---------------------------------------------------------------------------------------------
# Tests


async def test_login_page(open_window: OpenWindow, live_server: LiveServer) -> None:
    from playwright.async_api import expect

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await page.goto(f"{live_server.base_url}/app")
    assert page.url == f"{live_server.base_url}/app/"
    form = page.locator("#login-form")
    error = page.locator("#login-error")
    await expect(form.get_by_label("Email")).to_be_focused()
    await expect(error).to_be_hidden()

    await form.get_by_role("button", name="Sign in").click()
    await expect(error).to_have_text("Enter your email and password.")
    await form.get_by_label("Email").fill(OPERATOR_EMAIL)
    await form.get_by_label("Password").fill("not the password")
    async with page.expect_response("**/api/v1/auth/login") as refused:
        await form.get_by_label("Password").press("Enter")
    assert (await refused.value).status == 401
    await expect(error).to_have_text("Wrong email or password.")
    await expect(error).to_have_attribute("role", "alert")
    await expect(page.locator("#shell")).to_be_hidden()

    await form.get_by_label("Password").fill(OPERATOR_PASSWORD)
    await form.get_by_role("button", name="Sign in").click()
    await expect(page.locator("#shell")).to_be_visible()
    await expect(page.locator("#me")).to_have_text(live_server.operator_name)
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")
    # The session is this tab's: sessionStorage, never localStorage.
    assert await page.evaluate("() => localStorage.length") == 0
    assert "token" in await page.evaluate("() => sessionStorage.getItem('liveop:inbox:session')")
    # A reload keeps it; another tab does not have it.
    await page.reload()
    await expect(page.locator("#shell")).to_be_visible()
    other = await page.context.new_page()
    await other.goto(f"{live_server.base_url}/app/")
    await expect(other.locator("#login-form")).to_be_visible()
    await other.close()

    # An operator who is not an admin may look at the admin screens, not change them.
    await page.get_by_role("link", name="Admin").click()
    await expect(page.locator("#admin-body table")).to_contain_text(OPERATOR_EMAIL)
    await expect(page.locator("#admin-body")).to_contain_text("Only admins can change these.")
    await expect(page.locator("#admin-form")).to_have_count(0)

    await page.get_by_role("button", name="Sign out").click()
    await expect(form).to_be_visible()
    assert await page.evaluate("() => sessionStorage.getItem('liveop:inbox:session')") is None

    # A session the server no longer accepts (a deleted operator, a new secret key) ends.
    await page.evaluate(
        """() => sessionStorage.setItem("liveop:inbox:session", JSON.stringify({
          token: "not.a.token", expires_at: Date.now() / 1000 + 3600,
          operator: {id: 1, name: "Alex", is_admin: false}}))"""
    )
    await page.reload()
    await expect(error).to_have_text("Your session has ended. Please sign in again.")
    await expect(form).to_be_visible()
    assert window.errors == []


async def test_operator_and_visitor_hold_a_whole_conversation(
    open_window: OpenWindow,
    live_server: LiveServer,
    host_site: HostSite,
    welcome_canned: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    operator = await open_window(viewport=DESKTOP)
    op = operator.page
    await sign_in(op, live_server)
    visitor = await open_window(viewport={"width": 1000, "height": 800})
    vp = visitor.page
    await vp.goto(host_site.add(live_server, "inbox-conversation"))
    await vp.locator(LAUNCHER).click()
    chat = vp.frame_locator(FRAME)
    await chat.locator("#details summary").click()
    await chat.get_by_label("Your name", exact=True).fill("Dana")

    # The visitor writes: it appears live, unread, with its channel.
    await send_as_visitor(vp, "Hi, is the blue mug back in stock?")
    convo_id = await stored(await chat_frame(vp), live_server, "convo")
    item = row(op, convo_id)
    await expect(item).to_be_visible()
    await expect(item.locator(".row__name")).to_have_text("Dana")
    await expect(item.locator(".channel")).to_have_text("Live chat")
    await expect(item).to_have_attribute("data-channel", "chat")
    await expect(item.locator(".badge")).to_have_text("1, 1 unread")
    await expect(item.locator(".row__owner")).to_have_text("Unassigned")

    # Opening it shows the history with the sender, and reads it.
    await item.click()
    await expect(op.locator("#convo-name")).to_have_text("Dana")
    visitor_msgs = op.locator('#messages .msg[data-sender="visitor"]')
    await expect(visitor_msgs).to_have_count(1)
    await expect(visitor_msgs.locator(".msg__who")).to_have_text("Dana")
    await expect(item.locator(".badge")).to_have_count(0)
    await expect(op.locator("#messages")).to_have_attribute("aria-live", "polite")

    # Typing, both ways.
    await chat.locator("#composer").press_sequentially("Also", delay=30)
    await expect(op.locator("#typing")).to_have_text("Dana is typing…")
    await expect(item.locator(".row__preview")).to_have_text("typing…")
    composer = op.get_by_label("Message", exact=True)
    await composer.press_sequentially("Let me check for you", delay=20)
    await expect(chat.locator("#typing")).to_be_visible()
    await expect(chat.locator("#typing")).to_contain_text("is typing")

    # The first reply claims the conversation.
    await composer.press("Enter")
    await expect(op.locator("#convo-owner")).to_have_text("Owner: you")
    await expect(op.locator("#convo-status")).to_have_text("Active")
    await expect(item.locator(".row__owner")).to_have_text("You")
    await expect(op.locator("#accept")).to_be_hidden()
    visitor_sees = chat.locator('.msg[data-sender="operator"]')
    await expect(visitor_sees).to_have_count(1)
    await expect(visitor_sees).to_contain_text("Let me check for you")
    await expect(op.locator('#messages .msg[data-sender="operator"] .msg__who')).to_have_text(
        f"{live_server.operator_name} (you)"
    )

    # A canned reply: the preview has the macros filled, and so does what the visitor gets.
    filled = f"Hi Dana, this is {live_server.operator_name}. How can I help?"
    await op.get_by_role("button", name="Canned responses").click()
    await op.get_by_label("Search canned responses").fill("greet")
    await op.get_by_role("button", name="Welcome greeting").click()
    await expect(op.locator("#canned-preview-text")).to_have_text(filled)
    async with op.expect_request("**/api/v1/operator/message") as canned_request:
        await op.get_by_role("button", name="Send canned reply").click()
    assert (await canned_request.value).post_data_json["canned_id"] == welcome_canned["id"]
    await expect(visitor_sees).to_have_count(2)
    await expect(visitor_sees.nth(1)).to_contain_text(filled)
    await expect(op.locator("#canned-preview")).to_be_hidden()

    # A private note, set apart, that the visitor never sees.
    await op.get_by_label("Private note").check()
    await composer.fill("Regular customer: offer free shipping")
    await composer.press("Enter")
    note = op.locator('#messages .msg[data-private="true"]')
    await expect(note).to_contain_text("Regular customer")
    await expect(note.locator(".msg__who")).to_have_text(
        f"Private note · {live_server.operator_name} (you)"
    )
    await expect(note).to_contain_text("Only operators see this note.")
    await op.get_by_label("Reply", exact=True).check()
    await composer.fill("Good news: shipping is on us today!")
    await composer.press("Enter")
    await expect(visitor_sees).to_have_count(3)  # the reply after the note has arrived...
    assert "Regular customer" not in await chat.locator("body").inner_text()  # ...the note not

    # Any status from the status control; then resolved: gone from the unresolved view, and
    # the visitor writing again reopens it, live.
    await op.get_by_label("Conversation status").select_option("waiting")
    await expect(op.locator("#convo-status")).to_have_text("Waiting")
    await expect(item).to_have_attribute("data-status", "waiting")
    await op.get_by_role("button", name="Resolve").click()
    await expect(op.locator("#convo-status")).to_have_text("Resolved")
    await expect(op.locator("#accept")).to_have_text("Reopen")
    await expect(item).to_have_count(0)
    await send_as_visitor(vp, "One more thing: do you gift wrap?")
    await expect(item).to_be_visible()
    await expect(item).to_have_attribute("data-status", "open")
    await expect(op.locator("#convo-status")).to_have_text("Open")
    await expect(op.locator("#messages .msg").last).to_contain_text("gift wrap")

    # A reload of the operator's page misses nothing written before, during or after it.
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:

        async def visitor_says(text: str) -> None:
            response = await client.post(
                f"/{live_server.account_id}/liveoperator/postmessage",
                data={"convoID": convo_id, "message": text},
            )
            assert response.status_code == 200, response.text

        await visitor_says("before the reload")
        reloading = asyncio.create_task(op.reload())
        for n in range(3):
            await visitor_says(f"during the reload {n}")
            await asyncio.sleep(0.1)
        await reloading
        await visitor_says("after the reload")
    history = [
        "Hi, is the blue mug back in stock?", "Let me check for you", filled,
        "Regular customer: offer free shipping", "Good news: shipping is on us today!",
        "One more thing: do you gift wrap?", "before the reload",
        *(f"during the reload {n}" for n in range(3)), "after the reload",
    ]  # fmt: skip
    shown = op.locator("#messages .msg .msg__text")
    await expect(shown).to_have_text(history)
    seqs = await op.locator("#messages .msg").evaluate_all("els => els.map(e => +e.dataset.seq)")
    assert seqs == sorted(set(seqs))
    await expect(op.locator("#convo-status")).to_have_text("Open")
    assert operator.errors == []
    assert [e for e in visitor.errors if "widget-config" not in e] == []


async def test_stream_drop_shows_banner_and_catches_up(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    proxy: DroppingProxy,
) -> None:
    from playwright.async_api import expect

    first = await operator_api.command(
        "sendmessage", sourceApp="emailbroadcast", message="Where is my refund?",
        userInfo={"fname": "Kim", "lname": "Ito", "email": "kim@example.com"},
    )  # fmt: skip
    convo_id = first["convoID"]
    window = await open_window(viewport=DESKTOP)
    page = window.page
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    await sign_in(page, live_server, base_url=proxy.base_url)
    await row(page, convo_id).click()
    messages = page.locator("#messages .msg")
    await expect(messages).to_have_count(1)
    banner = page.locator("#banner")
    await expect(banner).to_be_hidden()
    loads = sum("/operator/inbox" in u for u in requests)

    proxy.cut(refuse=True)
    await expect(banner).to_have_text(re.compile("^Reconnecting…"))
    await expect(page.locator("body")).to_have_attribute("data-stream", "down")
    # While the operator is cut off, the customer writes again and somebody new writes in.
    await operator_api.command("sendmessage", convoID=convo_id, message="Hello? Anyone there?")
    second = await operator_api.command(
        "sendmessage", sourceApp="smsbroadcast", message="Can I change my booking?",
        userInfo={"fname": "Lee", "phone": "+1 555 0199"},
    )  # fmt: skip

    proxy.resume()
    await expect(banner).to_be_hidden()
    await expect(messages).to_have_count(2)
    await expect(messages.last).to_contain_text("Hello? Anyone there?")
    await expect(row(page, second["convoID"])).to_be_visible()
    await expect(row(page, second["convoID"]).locator(".channel")).to_have_text("SMS")
    # Caught up by the stream's replay from the last event id, not by reloading the list.
    assert any("last_event_id=" in u for u in requests if "/operator/stream" in u)
    assert sum("/operator/inbox" in u for u in requests) == loads
    assert window.errors == []


async def test_admin_screens(
    open_window: OpenWindow, live_server: LiveServer, admin_operator: dict[str, Any]
) -> None:
    from playwright.async_api import expect

    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server, ADMIN["email"], ADMIN["password"])
    await page.get_by_role("link", name="Admin").click()
    body = page.locator("#admin-body")
    form = page.locator("#admin-form")
    status = page.locator("#admin-status")
    await expect(body.get_by_role("heading", name="Operators")).to_be_visible()

    async def open_tab(title: str) -> None:
        # The screen changes on hashchange, a task after the click: wait for it before filling
        # "the form", or the previous screen's form takes the first keystrokes.
        await page.get_by_role("link", name=title).click()
        await expect(body.get_by_role("heading", name=title, exact=True)).to_be_visible()

    # Operators: a refused password is explained; a good one is added.
    await form.get_by_label("Name").fill("Sam Rivera")
    await form.get_by_label("Email").fill("sam@example.com")
    await form.get_by_label("Password").fill("short")
    await form.get_by_role("button", name="Add operator").click()
    await expect(form.get_by_role("alert")).to_contain_text("password must be 8 to 256")
    await form.get_by_label("Password").fill("a long password 1")
    await form.get_by_role("button", name="Add operator").click()
    await expect(status).to_have_text("Added “Sam Rivera”.")
    await expect(body.locator("table")).to_contain_text("sam@example.com")

    # Teams, with members.
    await open_tab("Teams")
    await form.get_by_label("Name").fill("Billing")
    await form.get_by_label("Sam Rivera").check()
    await form.get_by_role("button", name="Add team").click()
    await expect(status).to_have_text("Added “Billing”.")
    await expect(body.locator("tr", has_text="Billing")).to_contain_text("Sam Rivera")

    # Canned responses.
    await open_tab("Canned responses")
    await form.get_by_label("Name").fill("Refunds")
    await form.get_by_label("Tag").fill("billing")
    await form.get_by_label("Message").fill("Hi {fname}, refunds take 5 days. — {operator}")
    await form.get_by_role("button", name="Add canned response").click()
    await expect(status).to_have_text("Added “Refunds”.")

    # Sites: add one routed to the team, rename it, delete it.
    await open_tab("Sites")
    await form.get_by_label("Name").fill("Shop EU")
    await form.get_by_label("Widget color").fill("#e8590c")
    await form.get_by_label("Widget position").select_option("left")
    await form.get_by_label("Greeting").fill("Hallo! How can we help?")
    await form.get_by_label("Team for new conversations").select_option(label="Billing")
    await form.get_by_role("button", name="Add site").click()
    await expect(status).to_have_text("Added “Shop EU”.")
    site_row = body.locator("tr", has_text="Shop EU")
    await expect(site_row).to_contain_text("#e8590c")
    await expect(site_row).to_contain_text("Billing")
    await site_row.get_by_role("button", name="Edit Shop EU").click()
    await expect(form.get_by_label("Name")).to_be_focused()
    await form.get_by_label("Name").fill("Shop Europe")
    await form.get_by_role("button", name="Save").click()
    await expect(status).to_have_text("Saved “Shop Europe”.")

    found = {
        kind: await listed(live_server, kind) for kind in ("operators", "teams", "canned", "sites")
    }
    sam = next(o for o in found["operators"] if o["email"] == "sam@example.com")
    assert sam["name"] == "Sam Rivera" and sam["role"] == "operator"
    billing = next(t for t in found["teams"] if t["name"] == "Billing")
    assert billing["member_ids"] == [sam["id"]]
    assert any(
        c["message"] == "Hi {fname}, refunds take 5 days. — {operator}" for c in found["canned"]
    )
    site = next(s for s in found["sites"] if s["name"] == "Shop Europe")
    assert (site["color"], site["position"], site["team_id"]) == ("#e8590c", "left", billing["id"])
    assert site["greeting"] == "Hallo! How can we help?"

    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await body.get_by_role("button", name="Delete Shop Europe").click()
    await expect(status).to_have_text("Deleted “Shop Europe”.")
    await expect(body.locator("tr", has_text="Shop Europe")).to_have_count(0)
    # The default site cannot go: the server's reason is shown.
    page.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    await body.get_by_role("button", name="Delete Default").click()
    await expect(status).to_have_text("the account's first site cannot be deleted")
    assert window.errors == []


async def test_mixed_channel_inbox(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    admin_operator: dict[str, Any],
    welcome_canned: dict[str, Any],
) -> None:
    from playwright.async_api import expect

    sms = await operator_api.command(
        "sendmessage", sourceApp="smsbroadcast", message="Has order #1042 shipped yet?",
        userInfo={"fname": "Maria", "lname": "Lopez", "phone": "+1 555 0100"},
    )  # fmt: skip
    email = await operator_api.command(
        "sendmessage", sourceApp="emailbroadcast",
        message="Hello, could you send me a copy of my March invoice?",
        userInfo={"fname": "Tom", "lname": "Becker", "email": "tom@example.org"},
    )  # fmt: skip
    bot = await operator_api.command(
        "sendmessage", sourceApp="chatbot", message="I want to change my delivery address",
        userInfo={"fname": "Priya", "lname": "Shah", "email": "priya@example.com"},
    )  # fmt: skip
    convo = bot["convoID"]
    await operator_api.command(
        "sendmessage", sourceApp="chatbot", convoID=convo, sender="bot",
        message="I can help with that! What is your order number?",
    )  # fmt: skip
    await operator_api.command(
        "sendmessage", sourceApp="chatbot", convoID=convo,
        message="It's 1042, but I'd rather talk to a person, please.",
    )  # fmt: skip
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    for found, label in ((sms, "SMS"), (email, "Email"), (bot, "Chatbot")):
        await expect(row(page, found["convoID"]).locator(".channel")).to_have_text(label)

    # The list by keyboard: arrows move, Enter opens.
    rows = page.locator("#convo-list .row")
    await rows.first.focus()
    await page.keyboard.press("ArrowDown")
    await expect(rows.nth(1)).to_be_focused()
    await page.keyboard.press("Home")
    await expect(rows.first).to_be_focused()
    await expect(rows.first).to_have_attribute("data-id", convo)  # the newest activity
    await page.keyboard.press("Enter")
    await expect(page.locator("#convo-name")).to_have_text("Priya Shah")
    await expect(rows.first).to_have_attribute("aria-selected", "true")
    who = page.locator("#messages .msg .msg__who")
    await expect(who).to_have_text(["Priya Shah", "Bot", "Priya Shah"])

    # Taking over from the bot, a canned greeting, a note, an image.
    await page.get_by_role("button", name="Take over").click()
    await expect(page.locator("#convo-owner")).to_have_text("Owner: you")
    await page.get_by_role("button", name="Canned responses").click()
    await page.get_by_role("button", name="Welcome greeting").click()
    await page.get_by_role("button", name="Send canned reply").click()
    await page.get_by_label("Private note").check()
    await page.get_by_label("Message", exact=True).fill("Address change needs a new label.")
    await page.get_by_role("button", name="Add note").click()
    await page.get_by_label("Reply", exact=True).check()
    await page.get_by_label("Message", exact=True).fill("Here is the new label:")
    await page.locator("#upload").set_input_files(
        {"name": "label.png", "mimeType": "image/png", "buffer": shipping_label()}
    )
    await expect(page.get_by_label("Caption (optional)")).to_have_value("Here is the new label:")
    await page.get_by_role("button", name="Send image").click()
    image = page.locator("#messages .msg img")
    await expect(image).to_have_count(1)
    assert (await image.get_attribute("src") or "").startswith(f"{live_server.base_url}/uploads/")
    width = await image.evaluate("img => img.decode().then(() => img.naturalWidth)")
    assert width == LABEL_SIZE[0]
    await operator_api.command(
        "sendmessage", sourceApp="chatbot", convoID=convo, message="Perfect, thank you!"
    )
    await expect(page.locator("#messages .msg").last).to_contain_text("Perfect, thank you!")

    # Views and filters.
    await page.get_by_label("Channel").select_option("sms")
    await expect(page.locator('#convo-list .row:not([data-channel="sms"])')).to_have_count(0)
    await expect(row(page, sms["convoID"])).to_be_visible()
    await page.get_by_label("Channel").select_option("")
    await page.get_by_role("radio", name="Mine").check()
    await expect(row(page, convo)).to_be_visible()
    await expect(row(page, sms["convoID"])).to_have_count(0)
    await page.get_by_role("radio", name="Team").check()
    await expect(page.get_by_label("Which team")).to_be_visible()
    await expect(page.locator("#list-empty")).to_be_visible()  # Alex is in no team
    await page.get_by_role("radio", name="All").check()
    await expect(row(page, sms["convoID"])).to_be_visible()

    await page.mouse.move(0, 0)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOTS / "inbox.png"))

    # Transfer the SMS conversation to the admin, then block the email sender.
    await row(page, sms["convoID"]).click()
    await expect(page.locator("#convo-name")).to_have_text("Maria Lopez")
    await page.get_by_label("Transfer to").select_option(f"operator:{admin_operator['id']}")
    await page.get_by_role("button", name="Transfer").click()
    await expect(page.locator("#convo-owner")).to_have_text(f"Owner: {ADMIN['name']}")
    await row(page, email["convoID"]).click()
    await expect(page.locator("#convo-name")).to_have_text("Tom Becker")
    await page.get_by_label("Phone").fill("+44 20 7946 0000")
    await page.get_by_label("Notes about the visitor").fill("Prefers email")
    await page.get_by_role("button", name="Save details").click()
    await expect(page.locator("#visitor-status")).to_have_text("Details saved.")
    history = await operator_api.command("gethistory", convoID=email["convoID"])
    assert history["userInfo"]["phone"] == "+44 20 7946 0000"
    await page.get_by_label("What to block").select_option("both")
    await page.get_by_role("button", name="Block", exact=True).click()
    await expect(page.locator("#block-state")).to_have_text("Blocked: Visitor's messages")
    refused = await operator_api.raw(
        "sendmessage", sourceApp="emailbroadcast", convoID=email["convoID"], message="hello?"
    )
    assert refused.status_code == 403
    await page.get_by_role("button", name="Unblock").click()
    await expect(page.locator("#block-state")).to_have_text("Not blocked")
    assert window.errors == []


async def test_long_history_pages_back_and_markup_stays_text(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    first = await operator_api.command(
        "sendmessage", sourceApp="smsbroadcast", message="message 1",
        userInfo={"fname": "<b>Noor</b>", "phone": "+1 555 0142"},
    )  # fmt: skip
    convo = first["convoID"]
    for n in range(2, 60):
        await operator_api.command("sendmessage", convoID=convo, message=f"message {n}")
    await operator_api.command("sendmessage", convoID=convo, message=MARKUP)
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    await row(page, convo).click()
    texts = page.locator("#messages .msg__text")
    await expect(texts).to_have_count(50)
    await expect(texts.first).to_have_text("message 11")
    older = page.get_by_role("button", name="Load earlier messages")
    await older.click()
    await expect(texts).to_have_count(60)
    await expect(texts.first).to_have_text("message 1")
    await expect(older).to_be_hidden()
    # What visitors write is shown as they wrote it, never run or rendered as markup.
    await expect(texts.last).to_have_text(MARKUP)
    await expect(row(page, convo).locator(".row__name")).to_have_text("<b>Noor</b>")
    await expect(page.locator("#convo-name")).to_have_text("<b>Noor</b>")
    assert await page.locator("#shell b, #shell img").count() == 0
    assert window.errors == []
