"""Two-way SMS end to end (issue 14, "Done when"): a real server in its own process, a local
server speaking Twilio's Messages API, webhooks signed by the `twilio` package's own
RequestValidator, the operator's SSE stream and the inbox in Chromium.

A customer's SMS opens a conversation that appears in the inbox live; the operator replies in
the inbox and the reply leaves through that channel's number with that channel's credentials;
the status callback marks it delivered in the inbox; the next SMS continues the conversation,
a retried webhook makes no duplicate; STOP turns the composer off. A second account with its
own SMS channel never sees the first one's messages or credentials, nor the other way round.
A channel that asks for ratings texts the question when the operator resolves, and the
customer's digit reaches the Reports page (issue 19).
"""

from __future__ import annotations

import asyncio
import io
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from twilio.request_validator import RequestValidator

from server.api.webhooks_twilio import EMPTY_TWIML
from server.conversations import RATING_QUESTION
from tests.outbound.servers import SMS_SID, SMS_TOKEN, SmsServer, sms_server
from tests.server.realtime_clients import sse

from .conftest import _cli_json, _server_env
from .test_inbox import DESKTOP, OPERATOR_EMAIL, OPERATOR_PASSWORD, row, sign_in

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow

pytestmark = pytest.mark.browser

CUSTOMER = "+15557654321"
A_NUMBER = "+15550100100"
# The second account's own provider account, number and customer.
B_SID = "AC" + "b" * 32
B_TOKEN = "second-account-token-9"
B_NUMBER = "+15550200200"
B_CUSTOMER = "+15559876543"
B_OPERATOR = {"email": "sam@example.org", "password": "second horse 2"}
WAIT_S = 10.0


@dataclass
class Line:
    """An account's SMS channel, and a provider account that signs what it posts to it."""

    base_url: str
    channel: dict[str, Any]
    token: str
    account_sid: str
    customer: str

    def params(self, n: int, body: str, *pictures: str) -> dict[str, str]:
        sid = f"SM{n:032x}"
        media: dict[str, str] = {}
        for i, url in enumerate(pictures):
            media |= {f"MediaUrl{i}": url, f"MediaContentType{i}": "image/png"}
        return {
            "MessageSid": sid, "SmsSid": sid, "AccountSid": self.account_sid,
            "From": self.customer, "To": self.channel["from"], "Body": body,
            "NumMedia": str(len(pictures)), "ApiVersion": "2010-04-01", **media,
        }  # fmt: skip

    async def post(self, kind: str, params: dict[str, str]) -> httpx.Response:
        url = self.channel["webhooks"][kind]
        signature = RequestValidator(self.token).compute_signature(url, params)
        async with httpx.AsyncClient(timeout=10.0) as client:
            return await client.post(url, data=params, headers={"X-Twilio-Signature": signature})

    async def text(self, n: int, body: str, *pictures: str) -> None:
        answer = await self.post("sms", self.params(n, body, *pictures))
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/xml")
        assert answer.content == EMPTY_TWIML

    async def status(self, message_sid: str, state: str) -> None:
        params = {
            "MessageSid": message_sid, "SmsSid": message_sid, "AccountSid": self.account_sid,
            "MessageStatus": state, "SmsStatus": state, "To": self.customer,
            "From": self.channel["from"], "ApiVersion": "2010-04-01",
        }  # fmt: skip
        answer = await self.post("status", params)
        assert answer.status_code == 200, answer.text
        assert answer.content == EMPTY_TWIML


@pytest.fixture(scope="module")
def provider() -> Iterator[SmsServer]:
    with sms_server() as server:
        server.twilio.accounts[B_SID] = B_TOKEN
        yield server


def _channel(base_url: str, api_key: str, body: dict[str, Any]) -> dict[str, Any]:
    answer = httpx.post(
        f"{base_url}/api/v1/admin/channels", json=body, headers={"X-Api-Key": api_key}
    )
    assert answer.status_code == 201, answer.text
    channel: dict[str, Any] = answer.json()["channel"]
    return channel


@dataclass
class Accounts:
    a: Line
    a_key: str
    b: Line
    b_key: str


@pytest.fixture(scope="module")
def accounts(live_server: LiveServer, provider: SmsServer) -> Accounts:
    """The live server's account and a second one, each with an SMS channel of its own that
    the local provider answers for (the public URL is the live server's, which the provider
    signs)."""
    base = live_server.base_url
    common = {"kind": "sms", "public_url": base, "api_url": provider.base}
    a = _channel(
        base, live_server.api_key,
        {**common, "name": "A texts", "account_sid": SMS_SID, "auth_token": SMS_TOKEN,
         "from": A_NUMBER},
    )  # fmt: skip
    env = _server_env(live_server.data_dir)
    other = _cli_json(["account", "create", "--name", "Other"], env)
    b_account, b_key = str(other["accountID"]), str(other["apiKey"])
    _cli_json(
        ["operator", "create", "--account", b_account, "--name", "Sam",
         "--email", B_OPERATOR["email"], "--password", B_OPERATOR["password"]],
        env,
    )  # fmt: skip
    b = _channel(
        base, b_key,
        {**common, "name": "B texts", "account_sid": B_SID, "auth_token": B_TOKEN,
         "from": B_NUMBER},
    )  # fmt: skip
    return Accounts(
        Line(base, a, SMS_TOKEN, SMS_SID, CUSTOMER), live_server.api_key,
        Line(base, b, B_TOKEN, B_SID, B_CUSTOMER), b_key,
    )  # fmt: skip


async def _login(client: httpx.AsyncClient, email: str, password: str) -> str:
    answer = await client.post("/api/v1/auth/login", json={"email": email, "password": password})
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["token"]
    return token


@pytest.fixture
async def api(live_server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        yield client


async def _conversations(client: httpx.AsyncClient, token: str) -> list[dict[str, Any]]:
    answer = await client.get(
        "/api/v1/operator/inbox", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["conversations"]
    return found


async def _texted_and_opened(
    api: httpx.AsyncClient, page: Any, live_server: LiveServer, customer: Line, sid: int, text: str
) -> tuple[str, str]:
    """Signs the operator in on ``page``, has ``customer`` text ``text`` (message ``sid``) and
    opens that conversation in the inbox: the operator's token and the conversation's id."""
    token = await _login(api, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    await sign_in(page, live_server)
    await customer.text(sid, text)
    (convo_id,) = [
        c["id"]
        for c in await _conversations(api, token)
        if c["contact_data"]["phone"] == customer.customer
    ]
    await row(page, convo_id).click()
    return token, convo_id


async def _messages(client: httpx.AsyncClient, token: str, convo_id: str) -> list[dict[str, Any]]:
    answer = await client.get(
        f"/api/v1/operator/conversation/{convo_id}", headers={"Authorization": f"Bearer {token}"}
    )
    assert answer.status_code == 200, answer.text
    found: list[dict[str, Any]] = answer.json()["messages"]
    return found


async def test_a_customers_sms_thread_end_to_end(
    open_window: OpenWindow,
    live_server: LiveServer,
    accounts: Accounts,
    provider: SmsServer,
    api: httpx.AsyncClient,
) -> None:
    from playwright.async_api import expect

    a, b = accounts.a, accounts.b
    token = await _login(api, OPERATOR_EMAIL, OPERATOR_PASSWORD)
    window = await open_window(viewport=DESKTOP)
    page = window.page
    await sign_in(page, live_server)
    host = live_server.base_url.removeprefix("http://")

    # The customer's first SMS: live on the SSE stream and in the inbox.
    async with sse(host, token) as stream:
        await a.text(1, "Is my order 1234 shipped?")
        opened = await stream.until("conversation:new", WAIT_S)
        added = await stream.until("message:new", WAIT_S)
    convo_id = opened.data["id"]
    assert (opened.data["channel"], opened.data["channel_id"]) == ("sms", a.channel["id"])
    assert opened.data["contact_data"]["phone"] == CUSTOMER
    assert added.data["message"]["content"] == "Is my order 1234 shipped?"
    await expect(row(page, convo_id)).to_contain_text("Is my order 1234 shipped?")

    # The operator replies in the inbox; it leaves from A's number with A's credentials.
    await row(page, convo_id).click()
    thread = page.locator("#messages")
    await expect(thread).to_contain_text("Is my order 1234 shipped?")
    await page.locator("#composer-text").fill("It left this morning.")
    await page.get_by_role("button", name="Send", exact=True).click()
    reply = thread.locator("li", has_text="It left this morning.")
    await expect(reply.locator(".msg__delivery")).to_have_text("Delivery: sent")
    (sent,) = provider.twilio.received
    assert (sent.account_sid, sent.form["From"], sent.form["To"], sent.form["Body"]) == (
        SMS_SID, A_NUMBER, CUSTOMER, "It left this morning.",
    )  # fmt: skip

    # The provider's status callback marks it delivered, live.
    await a.status(f"SM{1:032x}", "delivered")
    await expect(reply.locator(".msg__delivery")).to_have_text("Delivery: delivered")

    # The next SMS continues the conversation; a retried webhook makes no second message.
    await a.text(2, "Thanks!")
    await a.text(2, "Thanks!")
    await expect(thread).to_contain_text("Thanks!")
    assert [c["id"] for c in await _conversations(api, token)] == [convo_id]
    texts = [m["content"] for m in await _messages(api, token, convo_id)]
    assert texts == ["Is my order 1234 shipped?", "It left this morning.", "Thanks!"]

    # A picture: fetched in the background from the provider with A's credentials (through
    # its redirect to a short-lived URL) and shown as the message's image, live.
    provider.twilio.media["ME1"] = ("image/png", _picture())
    await a.text(5, "", provider.twilio.media_url(provider.base, "ME1"))
    image = thread.locator("li", has_text="[The customer sent 1 picture(s)").locator("img")
    await expect(image).to_be_visible()
    await expect(image).to_have_attribute("src", re.compile(r"^/uploads/"))
    assert await image.evaluate("(img) => img.complete && img.naturalWidth") == 40
    first_request = provider.twilio.media_requests[0]
    assert first_request == (provider.twilio.media_url("", "ME1"), True)

    # STOP: the composer says why replies are off, live; START turns it back on.
    composer = page.locator("#composer-text")
    await expect(composer).to_be_enabled()
    await a.text(3, "STOP")
    await expect(page.locator("#composer-off")).to_be_visible()
    await expect(page.locator("#composer-off")).to_contain_text("opted out")
    await expect(composer).to_be_disabled()
    await expect(page.get_by_role("button", name="Send", exact=True)).to_be_disabled()
    # Private notes still work.
    await page.get_by_label("Private note").check()
    await expect(composer).to_be_enabled()
    await page.get_by_label("Reply").check()
    await expect(composer).to_be_disabled()
    # A reload shows the same.
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")
    await row(page, convo_id).click()
    await expect(page.locator("#composer-off")).to_be_visible()
    await a.text(4, "start")
    await expect(page.locator("#composer-off")).to_be_hidden()
    await expect(composer).to_be_enabled()

    # The second account: its customer's SMS is its own, answered from its own number.
    b_token = await _login(api, B_OPERATOR["email"], B_OPERATOR["password"])
    await b.text(1, "Hello from the other shop")
    (b_convo,) = await _conversations(api, b_token)
    assert b_convo["channel_id"] == b.channel["id"]
    answer = await api.post(
        "/api/v1/operator/message",
        json={"conversation_id": b_convo["id"], "content": "Hi, shop B here."},
        headers={"Authorization": f"Bearer {b_token}"},
    )
    assert answer.status_code == 200, answer.text
    b_sent = await _received(provider, "Hi, shop B here.")
    assert (b_sent.account_sid, b_sent.form["From"], b_sent.form["To"]) == (
        B_SID, B_NUMBER, B_CUSTOMER,
    )  # fmt: skip
    # Neither account sees the other's conversations, messages or channels.
    assert [c["id"] for c in await _conversations(api, token)] == [convo_id]
    assert [c["id"] for c in await _conversations(api, b_token)] == [b_convo["id"]]
    for mine, theirs in ((token, b_convo["id"]), (b_token, convo_id)):
        forbidden = await api.get(
            f"/api/v1/operator/conversation/{theirs}", headers={"Authorization": f"Bearer {mine}"}
        )
        assert forbidden.status_code == 404, forbidden.text
    for key, own, other in (
        (accounts.a_key, a.channel, b.channel),
        (accounts.b_key, b.channel, a.channel),
    ):
        listing = await api.get("/api/v1/admin/channels", headers={"X-Api-Key": key})
        assert [c["id"] for c in listing.json()["channels"]] == [own["id"]]
        assert other["key"] not in listing.text
        assert SMS_TOKEN not in listing.text and B_TOKEN not in listing.text
    # B's provider account cannot post into A's channel: the signature is A's token's.
    forged = Line(a.base_url, a.channel, B_TOKEN, B_SID, B_CUSTOMER)
    assert (await forged.post("sms", forged.params(9, "Mixing in"))).status_code == 403
    await expect(page.locator("#convo-list .row")).to_have_count(1)
    assert "Hello from the other shop" not in await page.content()
    assert window.errors == []


async def test_an_sms_customer_rates_the_resolved_conversation_and_the_report_counts_it(
    open_window: OpenWindow,
    live_server: LiveServer,
    accounts: Accounts,
    provider: SmsServer,
    api: httpx.AsyncClient,
) -> None:
    """Issue 19 by SMS: the channel asks, the operator resolves in the inbox, the question
    reaches the customer's phone, their "5!" rates it, and the Reports page counts it."""
    from playwright.async_api import expect

    patched = await api.patch(
        f"/api/v1/admin/channels/{accounts.a.channel['id']}",
        json={"ask_rating": True},
        headers={"X-Api-Key": accounts.a_key},
    )
    assert patched.status_code == 200, patched.text
    customer = Line(accounts.a.base_url, patched.json()["channel"], SMS_TOKEN, SMS_SID,
                    "+15550003333")  # fmt: skip
    window = await open_window(viewport=DESKTOP)
    page = window.page
    token, convo_id = await _texted_and_opened(
        api, page, live_server, customer, 101, "Do you ship to Norway?"
    )
    await page.locator("#composer-text").fill("We do, in three days.")
    await page.get_by_role("button", name="Send", exact=True).click()
    await _received(provider, "We do, in three days.")
    await page.get_by_role("button", name="Resolve", exact=True).click()
    question = await _received(provider, RATING_QUESTION)
    assert (question.form["From"], question.form["To"]) == (A_NUMBER, customer.customer)

    await customer.text(102, "5!")
    thread = page.locator("#messages")
    await expect(thread).to_contain_text("5!")
    shown = await api.get(
        f"/api/v1/operator/conversation/{convo_id}", headers={"Authorization": f"Bearer {token}"}
    )
    conversation = shown.json()["conversation"]
    assert conversation["status"] == "resolved"
    assert conversation["rating"]["score"] == 5
    await page.get_by_role("link", name="Reports").click()
    summary = page.locator("#reports-summary")
    await expect(summary.locator("div", has_text="Average rating")).to_contain_text("5.0 / 5")
    assert window.errors == []


async def test_the_operator_sees_every_picture_of_an_mms(
    open_window: OpenWindow,
    live_server: LiveServer,
    accounts: Accounts,
    provider: SmsServer,
    api: httpx.AsyncClient,
) -> None:
    """A 2-picture MMS in the open conversation: the first shows as the message's image, the
    second beside it as a thumbnail, live; both open full size and are there after a reload."""
    from playwright.async_api import expect

    a = accounts.a
    customer = Line(a.base_url, a.channel, SMS_TOKEN, SMS_SID, "+15550004444")
    window = await open_window(viewport=DESKTOP)
    page = window.page
    _, convo_id = await _texted_and_opened(
        api, page, live_server, customer, 201, "Two photos of the damage coming"
    )
    thread = page.locator("#messages")
    await expect(thread).to_contain_text("Two photos of the damage coming")

    provider.twilio.media["ME201"] = ("image/png", _picture(40))
    provider.twilio.media["ME202"] = ("image/png", _picture(64))
    await customer.text(
        202, "", *(provider.twilio.media_url(provider.base, m) for m in ("ME201", "ME202"))
    )
    message = thread.locator("li", has_text="[The customer sent 2 picture(s)")
    images = message.locator("a.msg__image img")

    async def both_shown() -> None:
        await expect(images).to_have_count(2)
        loaded = "(imgs) => imgs.every((i) => i.complete && i.naturalWidth > 0)"
        await page.wait_for_function(
            f"() => ({loaded})([...document.querySelectorAll('#messages a.msg__image img')])"
        )
        # The order the two were stored in decides which one is the message's image.
        widths = await images.evaluate_all("(imgs) => imgs.map((i) => i.naturalWidth)")
        assert sorted(widths) == [40, 64]
        for link in await message.locator("a.msg__image").all():
            src = await link.locator("img").get_attribute("src")
            assert src is not None and src.startswith("/uploads/")
            async with page.expect_popup() as opened:
                await link.click()
            popup = await opened.value
            assert popup.url == live_server.base_url + src
            await popup.close()

    await both_shown()  # live: the pictures are stored after the message is shown
    await page.reload()
    await expect(page.locator("body")).to_have_attribute("data-stream", "live")
    await row(page, convo_id).click()
    await both_shown()
    assert window.errors == []


def _picture(width: int = 40) -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, 30), (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


async def _received(provider: SmsServer, body: str) -> Any:
    """The provider's copy of the message with this body, once the worker has sent it."""
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        with provider.twilio.lock:
            found = [r for r in provider.twilio.received if r.form.get("Body") == body]
        if found:
            return found[0]
        assert asyncio.get_running_loop().time() < deadline, f"{body!r} never left"
        await asyncio.sleep(0.05)
