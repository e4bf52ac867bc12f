"""The chat window's WebSocket transport in a real Chromium, against a real server: live chat
over ``/{account}/liveoperator/ws``, the fall back to polling when WebSockets are unavailable
or blocked, and resuming after the socket drops."""

from __future__ import annotations

import json
import re
import socket
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from .test_chat_window import eventually, form_of, is_endpoint, stored_convo

if TYPE_CHECKING:
    from .conftest import LiveServer, OpenWindow, OperatorAPI, Window

pytestmark = pytest.mark.browser

WS_GLOB = "**/liveoperator/ws"
UUID = re.compile(r"[0-9a-f-]{36}")


def _decode(payload: str | bytes) -> dict[str, Any]:
    text = payload.decode() if isinstance(payload, bytes) else payload
    frame = json.loads(text)
    assert isinstance(frame, dict), text
    return frame


@dataclass
class SeenSocket:
    """One WebSocket the page opened, with the JSON frames each way."""

    url: str
    sent: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)

    def sent_of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.sent if f.get("type") == kind]

    def received_of(self, kind: str) -> list[dict[str, Any]]:
        return [f for f in self.received if f.get("type") == kind]

    @property
    def ready(self) -> bool:
        return bool(self.received_of("ready"))


class SocketLog:
    """Every WebSocket of a page, as Chromium reports it (``page.on("websocket")``)."""

    def __init__(self, page: Any) -> None:
        self.sockets: list[SeenSocket] = []
        page.on("websocket", self._opened)

    def _opened(self, ws: Any) -> None:
        seen = SeenSocket(ws.url)
        self.sockets.append(seen)
        ws.on("framesent", lambda payload: seen.sent.append(_decode(payload)))
        ws.on("framereceived", lambda payload: seen.received.append(_decode(payload)))


class SocketProxy:
    """A ``page.route_web_socket`` handler between the page and the real server: records the
    frames, and can refuse connections, drop the current one, or lose the next ack."""

    def __init__(self) -> None:
        self.sockets: list[SeenSocket] = []
        self.refusing = False
        self.refused = 0
        self.lose_next_ack = False
        self.lost_acks: list[dict[str, Any]] = []
        self._current: tuple[Any, Any] | None = None

    async def handle(self, ws: Any) -> None:
        if self.refusing:
            self.refused += 1
            await ws.close(code=1013, reason="try again later")
            return
        seen = SeenSocket(ws.url)
        self.sockets.append(seen)
        server = ws.connect_to_server()
        self._current = (ws, server)

        def from_page(message: str | bytes) -> None:
            seen.sent.append(_decode(message))
            server.send(message)

        async def from_server(message: str | bytes) -> None:
            frame = _decode(message)
            seen.received.append(frame)
            if frame.get("type") == "ack" and self.lose_next_ack:
                # The server stored the message; the page never hears so.
                self.lose_next_ack = False
                self.lost_acks.append(frame)
                await self._cut(ws, server, 1006)
                return
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    async def drop(self, code: int = 1012) -> None:
        """Closes the current connection on both sides, the page seeing ``code``."""
        assert self._current is not None, "no connection to drop"
        await self._cut(*self._current, code)

    async def _cut(self, ws: Any, server: Any, code: int) -> None:
        # 1006 ("abnormal") may not be sent in a close frame: the page gets 1001 instead.
        await ws.close(code=1001 if code == 1006 else code, reason="dropped by the test")
        await server.close(code=1000, reason="dropped by the test")
        if self._current is not None and self._current[0] is ws:
            self._current = None


def record_requests(page: Any, name: str) -> list[dict[str, str]]:
    """The form fields of every request the page makes to ``/liveoperator/{name}``."""
    seen: list[dict[str, str]] = []
    matches = is_endpoint(name)
    page.on("request", lambda r: seen.append(form_of(r)) if matches(r) else None)
    return seen


def script_errors(window: Window) -> list[str]:
    """Errors other than Chromium's own log lines about WebSockets that could not connect."""
    return [
        e
        for e in window.errors
        if "WebSocket connection to" not in e and "Content Security Policy" not in e
    ]


async def _async(value: Any) -> Any:
    """Lets ``eventually`` probe a plain expression."""
    return value


async def _ready_socket(log: SocketLog) -> SeenSocket | None:
    return next((s for s in log.sockets if s.ready), None)


async def dom_seqs(page: Any) -> list[int]:
    values = await page.locator("#messages .msg").evaluate_all("els => els.map(e => e.dataset.seq)")
    assert all(v is not None for v in values), values
    return [int(v) for v in values]


async def test_visitor_chats_over_websocket(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    window = await open_window()
    page = window.page
    op_id = operator_api.operator_id
    log = SocketLog(page)
    polls = record_requests(page, "chatpoll")
    http_sends = record_requests(page, "postmessage")
    http_typing = record_requests(page, "chattyping")

    # On load, with no conversation yet: a socket (the CSP's default-src 'self' allows it),
    # and a hello without a conversation.
    await page.goto(live_server.chat_url)
    await expect(page.locator("body")).to_have_attribute("data-transport", "socket")
    first = await eventually(lambda: _ready_socket(log), "the socket to be ready")
    assert first.url == (
        f"{live_server.base_url.replace('http', 'ws', 1)}/{live_server.account_id}/liveoperator/ws"
    )
    hello = first.sent[0]  # the visitor's session and site come along (widget, proactive chat)
    assert hello == {"type": "hello", "seq": 0, "sessionID": hello["sessionID"], "siteID": 1}
    assert re.fullmatch(r"sess_[A-Za-z0-9_-]{22}", hello["sessionID"])
    assert first.received_of("ready") == [
        {"type": "ready", "convoID": None, "status": None, "seq": 0}
    ]

    await page.locator("#details summary").click()
    await page.get_by_label("Your name", exact=True).fill("Dana")
    await page.get_by_label("Email", exact=True).fill("dana@example.com")

    # The first send creates the conversation; the server follows it on this socket.
    composer = page.get_by_label("Message", exact=True)
    await composer.fill("Hi, I need help")
    await page.locator("#send").click()
    visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
    await expect(visitor_msgs).to_have_count(1)
    await expect(visitor_msgs).to_contain_text("Hi, I need help")
    await expect(visitor_msgs).to_have_attribute("data-seq", "1")
    await expect(visitor_msgs).not_to_have_class(re.compile("is-sending"))
    convo_id = await stored_convo(page, live_server)
    (send,) = first.sent_of("send")
    assert send["message"] == "Hi, I need help"
    assert UUID.fullmatch(send["clientMsgID"])
    assert (send["fname"], send["email"]) == ("Dana", "dana@example.com")
    assert "convoID" not in send
    ack = await eventually(lambda: _async(first.received_of("ack")), "the ack")
    assert ack == [
        {
            "type": "ack",
            "clientMsgID": send["clientMsgID"],
            "convoID": convo_id,
            "seq": 1,
            "duplicate": False,
        }
    ]

    polled = await operator_api.command("poll", convoID=convo_id, operatorID=op_id)
    assert [m["message"] for m in polled["messages"]] == ["Hi, I need help"]

    # The visitor types: a typing frame, and the operator's poll sees it.
    await composer.press_sequentially("Is anyone there?", delay=15)
    await eventually(lambda: _async(first.sent_of("typing")), "a typing frame")

    async def visitor_typing() -> bool:
        answer = await operator_api.command("poll", convoID=convo_id, operatorID=op_id)
        return answer["typing"] is True

    await eventually(visitor_typing, "the operator's poll to report the visitor typing")

    # The operator types: the indicator shows; their reply replaces it.
    typing = page.locator("#typing")
    await expect(typing).to_be_hidden()
    await operator_api.command("settyping", convoID=convo_id, operatorID=op_id)
    await expect(typing).to_be_visible()
    await expect(typing).to_contain_text("is typing")
    reply = await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=op_id, message="Hello! I'm Alex"
    )
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
    await expect(operator_msgs).to_have_count(1)
    await expect(operator_msgs).to_contain_text("Hello! I'm Alex")
    await expect(operator_msgs).to_have_attribute("data-seq", str(reply["message"]["seq"]))
    await expect(operator_msgs.locator(".msg__name")).to_have_text(live_server.operator_name)
    await expect(page.locator("#subtitle")).to_contain_text(live_server.operator_name)
    await expect(typing).to_be_hidden()

    # The operator's typing lapses by itself after expires_in (5 s) without a heartbeat.
    await operator_api.command("settyping", convoID=convo_id, operatorID=op_id)
    await expect(typing).to_be_visible()
    await expect(typing).to_contain_text(f"{live_server.operator_name} is typing")
    await expect(typing).to_be_hidden()

    # The draft goes out over the socket too.
    await composer.press("Enter")
    await expect(visitor_msgs).to_have_count(2)
    await expect(visitor_msgs.nth(1)).to_contain_text("Is anyone there?")

    # Resolved: the status line; writing again reopens the conversation and clears it.
    status = page.locator("#status")
    await expect(status).to_be_hidden()
    await operator_api.command("setstatus", convoID=convo_id, status="resolved")
    await expect(status).to_be_visible()
    await expect(status).to_contain_text("resolved")
    await composer.fill("One more question")
    await composer.press("Enter")
    await expect(visitor_msgs).to_have_count(3)
    await expect(status).to_be_hidden()

    # All of it over the one socket: no HTTP at all, each message received once, in order.
    assert polls == []
    assert http_sends == []
    assert http_typing == []
    assert len(log.sockets) == 1
    seqs = [f["seq"] for f in first.received_of("message:new")]
    assert seqs == [1, 2, 3, 4]
    assert await dom_seqs(page) == [1, 2, 3, 4]
    history = await operator_api.command("gethistory", convoID=convo_id)
    assert [m["message"] for m in history["messages"]] == [
        "Hi, I need help",
        "Hello! I'm Alex",
        "Is anyone there?",
        "One more question",
    ]

    # Reload: the history comes from one chatpoll (since=0), then the socket resumes after it.
    await page.reload()
    await expect(page.locator("#messages .msg")).to_have_count(4)
    resumed = await eventually(
        lambda: _async(len(log.sockets) == 2 and log.sockets[1].ready and log.sockets[1]),
        "the socket after the reload to be ready",
    )
    assert resumed.sent[0] == {**hello, "convoID": convo_id, "seq": 4}
    assert polls == [
        {"convoID": convo_id, "since": "0", "sessionID": hello["sessionID"], "siteID": "1"}
    ]
    await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=op_id, message="Sure, go ahead."
    )
    await expect(operator_msgs).to_have_count(2)
    await expect(operator_msgs.nth(1)).to_contain_text("Sure, go ahead.")
    assert await dom_seqs(page) == [1, 2, 3, 4, 5]
    assert [f["seq"] for f in resumed.received_of("message:new")] == [5]
    assert len(polls) == 1
    await expect(page.locator("#banner")).to_be_hidden()
    assert window.errors == []


@pytest.mark.parametrize("blocked", ["missing", "refused", "dropped"])
async def test_window_falls_back_to_polling(
    open_window: OpenWindow,
    live_server: LiveServer,
    operator_api: OperatorAPI,
    blocked: str,
) -> None:
    """missing: no ``WebSocket`` at all. refused: every socket fails before it opens (here it
    is aimed at a port nobody listens on, which the page's CSP blocks first: Chromium then
    fires ``error`` and never ``close``). dropped: something in between accepts the upgrade and
    closes the socket before the server's ready (say, a proxy that does not speak WebSocket)."""
    from playwright.async_api import expect

    window = await open_window(websocket=blocked != "missing")
    page = window.page
    polls = record_requests(page, "chatpoll")
    proxy = SocketProxy()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as dead:
        dead.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        if blocked == "refused":
            port = dead.getsockname()[1]
            await page.add_init_script(
                "window.__wsAttempts = 0;"
                "window.WebSocket = class extends WebSocket {"
                "  constructor(url, protocols) {"
                "    window.__wsAttempts += 1;"
                f"    super('ws://127.0.0.1:{port}/', protocols);"
                "  }"
                "};"
            )
        elif blocked == "dropped":
            proxy.refusing = True
            await page.route_web_socket(WS_GLOB, proxy.handle)

        await page.goto(live_server.chat_url)
        body = page.locator("body")
        await expect(body).to_have_attribute("data-transport", "polling")

        # The conversation works over postmessage and chatpoll.
        async with page.expect_response(is_endpoint("postmessage")) as posted:
            await page.locator("#composer").fill("Hello? Anyone?")
            await page.locator("#composer").press("Enter")
        assert (await posted.value).status == 200
        visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
        await expect(visitor_msgs).to_have_count(1)
        await expect(visitor_msgs).to_have_attribute("data-seq", "1")
        convo_id = await stored_convo(page, live_server)
        await operator_api.command(
            "sendmessage",
            convoID=convo_id,
            operatorID=operator_api.operator_id,
            message="Yes, hello!",
        )
        operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
        await expect(operator_msgs).to_have_count(1)
        await expect(operator_msgs).to_contain_text("Yes, hello!")
        # Before its first message the window polls by session; after, by conversation.
        conversation_polls = [p for p in polls if "convoID" in p]
        assert conversation_polls, "the window should poll its conversation"
        assert all(p["convoID"] == convo_id for p in conversation_polls)
        assert all(p["sessionID"] == polls[0]["sessionID"] for p in polls)
        await expect(page.locator("#banner")).to_be_hidden()
        assert await dom_seqs(page) == [1, 2]

        # Two failed sockets, then polling for good.
        if blocked == "refused":
            assert await page.evaluate("window.__wsAttempts") == 2
        elif blocked == "dropped":
            assert proxy.refused == 2
        await expect(body).to_have_attribute("data-transport", "polling")
    assert script_errors(window) == []


async def test_a_polling_window_receives_a_proactive_message(
    open_window: OpenWindow, live_server: LiveServer
) -> None:
    """Without WebSockets the window polls by session before its first message, so the
    visitor is online on the site and an operator's proactive message reaches them."""
    from playwright.async_api import expect

    window = await open_window(websocket=False)
    page = window.page
    async with page.expect_request(is_endpoint("chatpoll")) as first_poll:
        await page.goto(live_server.chat_url)
    await expect(page.locator("body")).to_have_attribute("data-transport", "polling")
    polled = form_of(await first_poll.value)
    assert "convoID" not in polled
    session_id = polled["sessionID"]
    async with httpx.AsyncClient(base_url=live_server.base_url) as client:
        login = await client.post(
            "/api/v1/auth/login", json={"email": "alex@example.com", "password": "correct horse 1"}
        )
        headers = {"Authorization": f"Bearer {login.json()['token']}"}
        sent = await client.post(
            "/api/v1/operator/proactive-message",
            json={"site_id": 1, "session_id": session_id, "content": "Can I help you find it?"},
            headers=headers,
        )
        assert sent.status_code == 200, sent.json()
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')
    await expect(operator_msgs).to_contain_text("Can I help you find it?")
    assert script_errors(window) == []


async def test_socket_drops_and_resumes(
    open_window: OpenWindow, live_server: LiveServer, operator_api: OperatorAPI
) -> None:
    from playwright.async_api import expect

    window = await open_window()
    page = window.page
    op_id = operator_api.operator_id
    proxy = SocketProxy()
    await page.route_web_socket(WS_GLOB, proxy.handle)
    banner = page.locator("#banner")
    visitor_msgs = page.locator('#messages .msg[data-sender="visitor"]')
    operator_msgs = page.locator('#messages .msg[data-sender="operator"]')

    await page.goto(live_server.chat_url)
    await expect(page.locator("body")).to_have_attribute("data-transport", "socket")
    await page.locator("#composer").fill("Hi there")
    await page.locator("#composer").press("Enter")
    await expect(visitor_msgs).to_have_attribute("data-seq", "1")
    convo_id = await stored_convo(page, live_server)
    await operator_api.command(
        "sendmessage", convoID=convo_id, operatorID=op_id, message="First reply"
    )
    await expect(operator_msgs).to_have_count(1)
    assert len(proxy.sockets) == 1

    # The connection drops and stays down: the banner, and reconnect attempts.
    proxy.refusing = True
    await proxy.drop(1012)
    await expect(banner).to_be_visible()
    await expect(banner).to_contain_text("Reconnecting")
    await eventually(lambda: _async(proxy.refused >= 1), "a refused reconnect attempt")

    # Meanwhile the operator answers twice and the visitor writes once (held until acked).
    for text in ("Second reply", "Third reply"):
        await operator_api.command("sendmessage", convoID=convo_id, operatorID=op_id, message=text)
    await page.locator("#composer").fill("Still there?")
    await page.locator("#composer").press("Enter")
    await expect(visitor_msgs).to_have_count(2)
    await expect(visitor_msgs.nth(1)).to_have_class(re.compile("is-sending"))

    # Back up: the window resumes from the last seq it showed; everything appears once.
    proxy.refusing = False
    await expect(operator_msgs).to_have_count(3)
    await expect(operator_msgs).to_have_text(
        [re.compile("First reply"), re.compile("Second reply"), re.compile("Third reply")]
    )
    await expect(visitor_msgs).to_have_count(2)
    await expect(visitor_msgs.nth(1)).to_have_attribute("data-seq", "5")
    await expect(banner).to_be_hidden()
    assert await dom_seqs(page) == [1, 2, 3, 4, 5]
    resumed = proxy.sockets[1]
    assert resumed.sent[0] == {**proxy.sockets[0].sent[0], "convoID": convo_id, "seq": 2}
    # The replay carried what was missed, over the socket, once each.
    assert [f["seq"] for f in resumed.received_of("message:new")][:3] == [3, 4, 5]
    (held,) = resumed.sent_of("send")
    assert held["message"] == "Still there?"

    # The ack of a stored message is lost with the connection: the window sends it again with
    # the same clientMsgID after reconnecting; the server knows it; it shows once.
    proxy.lose_next_ack = True
    await page.locator("#composer").fill("Did you get this?")
    await page.locator("#composer").press("Enter")
    await eventually(lambda: _async(proxy.lost_acks), "the lost ack")
    await expect(visitor_msgs).to_have_count(3)
    await expect(visitor_msgs.nth(2)).to_have_attribute("data-seq", "6")
    await eventually(lambda: _async(len(proxy.sockets) == 3 and proxy.sockets[2].ready), "resume")
    await eventually(
        lambda: _async(proxy.sockets[2].received_of("ack")), "the ack of the resent message"
    )
    (lost,) = proxy.lost_acks
    (resent,) = proxy.sockets[2].sent_of("send")
    (again,) = proxy.sockets[2].received_of("ack")
    assert resent["clientMsgID"] == lost["clientMsgID"]
    assert again == {**lost, "duplicate": True}
    assert proxy.sockets[2].sent[0]["type"] == "hello"
    await expect(visitor_msgs).to_have_count(3)
    assert await dom_seqs(page) == [1, 2, 3, 4, 5, 6]
    history = await operator_api.command("gethistory", convoID=convo_id)
    assert [m["message"] for m in history["messages"]] == [
        "Hi there",
        "First reply",
        "Second reply",
        "Third reply",
        "Still there?",
        "Did you get this?",
    ]
    await expect(banner).to_be_hidden()
    assert window.errors == []
