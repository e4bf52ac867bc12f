"""A bot platform on loopback, as seed 004 describes one: it calls our Operator API at the
``api_url`` a bot channel was given, and serves the webhook it sets there, recording every
event we post (or refusing them while told to fail)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

WEBHOOK_PATH = "/chatadapter/chatapi/webhook/operatorapi/"


@dataclass
class Inbox:
    """What the platform's webhook received, and how it answers."""

    events: list[dict[str, Any]] = field(default_factory=list)
    # Answer this status (and record nothing) while set: the platform is down.
    failing_with: int | None = None
    refused: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def of_type(self, kind: str) -> list[dict[str, Any]]:
        with self.lock:
            return [e for e in self.events if e["type"] == kind]


def _handler(inbox: Inbox) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with inbox.lock:
                status = inbox.failing_with
                if status is None and self.path.startswith(WEBHOOK_PATH):
                    assert self.headers.get("Content-Type") == "application/json"
                    inbox.events.append(orjson.loads(body))
                    status = 200
                elif status is None:
                    status = 404
                else:
                    inbox.refused += 1
            answer = b"{}" if status == 200 else b'{"error": "unavailable"}'
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@dataclass
class Platform:
    """The platform's side of one bot channel: ``client`` reaches our server, ``api_url`` is
    the channel's, and ``webhook`` is where the platform asks us to post."""

    client: httpx.AsyncClient
    api_url: str
    webhook: str
    inbox: Inbox

    def _path(self, method: str) -> str:
        return f"{urlsplit(self.api_url).path}/{method}"

    async def call(self, method: str, body: Any) -> httpx.Response:
        return await self.client.post(self._path(method), json=body)

    async def ok(self, method: str, **body: Any) -> dict[str, Any]:
        response = await self.call(method, body)
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def set_webhook(self) -> None:
        await self.ok("setWebhook", url=self.webhook)

    async def destinations(self) -> list[dict[str, Any]]:
        response = await self.client.get(self._path("getDestinations"))
        assert response.status_code == 200, response.text
        found: list[dict[str, Any]] = response.json()["destinations"]
        return found


@contextmanager
def bot_platform(client: httpx.AsyncClient, api_url: str, api_key: str) -> Iterator[Platform]:
    inbox = Inbox()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(inbox))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    webhook = f"http://127.0.0.1:{server.server_address[1]}{WEBHOOK_PATH}{api_key}"
    try:
        yield Platform(client, api_url, webhook, inbox)
    finally:
        server.shutdown()
        server.server_close()
