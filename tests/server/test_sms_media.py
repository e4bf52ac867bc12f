"""Inbound MMS pictures (issue 14): recorded by the webhook, fetched in the background from
the provider's hosts only, with the channel's credentials, through redirects, under a size
cap and a type allow-list, stored like uploaded images and shown as the message's image.

The provider here is a local HTTP server that is the channel's ``api_url`` origin; a second
local server on another host name (``localhost`` against ``127.0.0.1``) stands for a foreign
host and must never receive a request. The background worker is off in these tests: each
drives a MediaWorker's ``run_once`` itself, so nothing waits on time.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from PIL import Image

from server.api.webhooks_twilio import MEDIA_NOTE
from server.services import Services
from server.settings import Settings
from server.sms_media import MediaWorker
from storage.models import Attachment, Conversation, Message, SmsMedia
from tests.conftest import TEST_PASSWORD, Tenant, assert_error
from tests.outbound.servers import SMS_SID, SMS_TOKEN
from tests.server.realtime_clients import free_port, serve, sse
from tests.server.test_webhooks_twilio import Line, _line, assert_twiml, inbound
from tests.storage.conftest import (
    BACKENDS,
    backend_settings,
    postgres_url,  # noqa: F401 (a fixture used by name)
)

MAX_IMAGE_BYTES = 50_000
MEDIA_PATH = f"/2010-04-01/Accounts/{SMS_SID}/Messages/MM{'1' * 32}/Media/ME{'2' * 32}"
BASIC = "Basic " + base64.b64encode(f"{SMS_SID}:{SMS_TOKEN}".encode()).decode()
WAIT_S = 10.0


def picture(red: int = 200) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (40, 30), (red, 30, 30)).save(out, format="PNG")
    return out.getvalue()


@dataclass
class Host:
    """A local HTTP server: what it answers on each path, and every request it got."""

    port: int
    # path -> (status, headers, body)
    routes: dict[str, tuple[int, dict[str, str], bytes]] = field(default_factory=dict)
    # (path, Authorization header)
    seen: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handler(host: Host) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            authorization = self.headers.get("Authorization")
            with host.lock:
                host.seen.append((self.path, authorization))
                status, headers, body = host.routes.get(self.path, (404, {}, b"not found"))
            if self.path == MEDIA_PATH and authorization != BASIC:
                status, headers, body = 401, {}, b'{"code": 20003}'
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests read ``seen``."""

    return Handler


@contextmanager
def _host() -> Iterator[Host]:
    host = Host(free_port())
    server = ThreadingHTTPServer(("127.0.0.1", host.port), _handler(host))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def provider() -> Iterator[Host]:
    with _host() as host:
        yield host


@pytest.fixture
def foreign() -> Iterator[Host]:
    with _host() as host:
        yield host


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    # These tests run the media worker themselves (MediaWorker.run_once).
    return backend_settings(
        request, tmp_path, LIVEOP_MAX_IMAGE_BYTES=str(MAX_IMAGE_BYTES), LIVEOP_OUTBOUND_WORKER="0"
    )


@pytest.fixture
async def line(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: Host
) -> Line:
    return await _line(client, services, tenant, api_url=f"http://127.0.0.1:{provider.port}")


def worker(services: Services, worker_id: str = "test-worker") -> MediaWorker:
    return MediaWorker(
        services.store, services.feed, services.channels, services.images,
        public_url=services.settings.public_url, worker_id=worker_id,
    )  # fmt: skip


async def run(services: Services, worker_id: str = "test-worker") -> int:
    found = worker(services, worker_id)
    try:
        return await found.run_once()
    finally:
        await found.stop()


def mms(n: int, *media: tuple[str, str], body: str = "") -> dict[str, str]:
    fields: dict[str, str] = {"NumMedia": str(len(media))}
    for i, (url, content_type) in enumerate(media):
        fields |= {f"MediaUrl{i}": url, f"MediaContentType{i}": content_type}
    return inbound(n, body, **fields)


async def media_rows(services: Services) -> list[dict[str, Any]]:
    return [r async for t, r in services.store.export_rows() if t == "sms_media"]


async def only_message(line: Line) -> tuple[Conversation, Any]:
    (convo,) = await line.conversations()
    (message,) = await line.services.store.list_messages(convo.account_id, convo.id)
    return convo, message


async def test_a_picture_is_fetched_with_the_channels_credentials_through_a_redirect(
    app: Any,
    client: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    line: Line,
    provider: Host,
) -> None:
    data = picture()
    provider.routes[MEDIA_PATH] = (307, {"Location": "/cdn/ME2.png?sig=abc"}, b"")
    provider.routes["/cdn/ME2.png?sig=abc"] = (200, {"Content-Type": "image/png"}, data)
    url = f"http://127.0.0.1:{provider.port}{MEDIA_PATH}"
    # The webhook answers without fetching anything.
    assert_twiml(await line.post(mms(1, (url, "image/png"))))
    assert provider.seen == []
    convo, message = await only_message(line)
    assert (message.text, message.image_url) == (MEDIA_NOTE.format(count=1), None)

    async with serve(app) as base:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            assert await run(services) == 1
            event = await stream.until("message:image", WAIT_S)
    _, message = await only_message(line)
    assert event.data == {
        "conversation_id": convo.id, "seq": 1, "image_url": message.image_url, "attachments": [],
    }  # fmt: skip
    assert message.image_url.startswith(f"/uploads/{tenant.account_id}/")
    served = await client.get(message.image_url)
    assert (served.status_code, served.content) == (200, data)
    # Both requests went to the channel's own API origin, with its credentials.
    assert provider.seen == [(MEDIA_PATH, BASIC), ("/cdn/ME2.png?sig=abc", BASIC)]
    (row,) = await media_rows(services)
    assert (row["state"], row["attempts"], row["last_error"]) == ("stored", 1, None)
    # The operator panel shows it as the message's image.
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    shown = await client.get(f"/api/v1/operator/conversation/{convo.id}", headers=token)
    assert shown.json()["messages"][0]["image_url"] == message.image_url
    # Nothing is left to fetch, and a retried webhook queues nothing again.
    assert_twiml(await line.post(mms(1, (url, "image/png"))))
    assert await run(services) == 0


async def test_foreign_hosts_get_no_request(
    services: Services, line: Line, provider: Host, foreign: Host
) -> None:
    provider.routes["/away"] = (302, {"Location": f"http://localhost:{foreign.port}/x.png"}, b"")
    foreign.routes["/x.png"] = (200, {"Content-Type": "image/png"}, picture())
    media = (
        (f"http://localhost:{foreign.port}/x.png", "image/png"),
        (f"http://127.0.0.1:{provider.port}/away", "image/png"),
        ("https://media.example.test/picture.png", "image/jpeg"),
        # The provider's own hosts, but in clear text: refused, never asked.
        ("http://api.twilio.com/2010-04-01/x", "image/png"),
        (f"https://127.0.0.1:{provider.port}/away", "image/png"),
    )
    assert_twiml(await line.post(mms(1, *media, body="Look")))
    assert await run(services) == 1  # only the redirecting URL was ever queued
    rows = sorted(await media_rows(services), key=lambda r: r["n"])
    assert [r["state"] for r in rows] == ["refused"] * 5
    assert "not the provider's host" in rows[0]["last_error"]
    assert "a redirect to localhost" in rows[1]["last_error"]
    assert foreign.seen == []
    assert provider.seen == [("/away", BASIC)]
    _, message = await only_message(line)
    assert (message.text, message.image_url) == ("Look", None)


async def test_pictures_over_the_cap_or_not_pictures_are_refused(
    services: Services, line: Line, provider: Host
) -> None:
    base = f"http://127.0.0.1:{provider.port}"
    too_big = b"\0" * (MAX_IMAGE_BYTES + 1)
    provider.routes["/big.png"] = (200, {"Content-Type": "image/png"}, too_big)
    provider.routes["/page.png"] = (200, {"Content-Type": "text/html"}, b"<script>1</script>")
    provider.routes["/fake.png"] = (200, {"Content-Type": "image/png"}, b"not a png at all")
    provider.routes["/gone.png"] = (404, {}, b"")
    media = (
        (f"{base}/big.png", "image/png"),
        (f"{base}/page.png", "image/png"),
        (f"{base}/fake.png", "image/png"),
        (f"{base}/gone.png", "image/png"),
        (f"{base}/clip.mp4", "video/mp4"),
    )
    assert_twiml(await line.post(mms(1, *media)))
    assert await run(services) == 4
    rows = sorted(await media_rows(services), key=lambda r: r["n"])
    assert [r["state"] for r in rows] == ["refused"] * 5
    errors = [r["last_error"] for r in rows]
    assert f"larger than {MAX_IMAGE_BYTES} bytes" in errors[0]
    assert "text/html is not a picture" in errors[1]
    assert "not a PNG, JPEG, GIF or WebP" in errors[2]
    assert "HTTP 404" in errors[3]
    assert "video/mp4 is not a picture" in errors[4]
    assert "/clip.mp4" not in [path for path, _ in provider.seen]
    _, message = await only_message(line)
    assert message.image_url is None
    folder = services.settings.data_dir / "uploads" / line.tenant.account_id
    assert not folder.exists() or list(folder.iterdir()) == []


async def test_a_failing_provider_is_asked_again_later(
    services: Services, line: Line, provider: Host
) -> None:
    provider.routes["/busy.png"] = (503, {}, b"")
    busy = f"http://127.0.0.1:{provider.port}/busy.png"
    assert_twiml(await line.post(mms(1, (busy, "image/png"))))
    assert await run(services) == 1
    (row,) = await media_rows(services)
    assert (row["state"], row["attempts"], row["last_error"]) == (
        "queued", 1, "the provider answered HTTP 503",
    )  # fmt: skip
    assert row["next_attempt_at"] > row["created"]
    # Not due again before its backoff is over.
    assert await run(services) == 0


async def test_a_fetch_whose_worker_died_is_done_by_the_next_one(
    services: Services, line: Line, provider: Host
) -> None:
    """Durable: a claim whose worker died lapses with its lease, the next worker fetches the
    picture, and the dead worker's late outcome is refused by the fence."""
    data = picture()
    provider.routes["/p.png"] = (200, {"Content-Type": "image/png"}, data)
    url = f"http://127.0.0.1:{provider.port}/p.png"
    assert_twiml(await line.post(mms(1, (url, "image/png"))))
    (dead,) = await services.store.claim_sms_media("dead", now=time.time(), lease_s=0.0, limit=5)
    assert dead.attempts == 1
    assert await run(services, "alive") == 1
    late = await services.store.finish_sms_media(dead, "dead", state="failed", error="late")
    assert late is None
    (row,) = await media_rows(services)
    assert (row["state"], row["attempts"], row["claimed_by"]) == ("stored", 2, None)
    _, message = await only_message(line)
    assert message.image_url is not None


async def test_every_picture_of_an_mms_is_shown_live_and_after_a_reload(
    app: Any,
    client: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    line: Line,
    provider: Host,
) -> None:
    """The first picture stored is the message's image; the others are its attachments, and
    each stored picture is announced with all the message shows by then."""
    base = f"http://127.0.0.1:{provider.port}"
    data = {f"/p{n}.png": picture(100 + n) for n in range(3)}
    for path, body in data.items():
        provider.routes[path] = (200, {"Content-Type": "image/png"}, body)
    assert_twiml(await line.post(mms(1, *((base + path, "image/png") for path in data))))
    convo, _ = await only_message(line)
    async with serve(app) as base_url:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base_url, login.json()["token"]) as stream:
            assert await run(services) == 3
            # Announced as each one is stored; the three may finish in any order.
            shown = [(await stream.until("message:image", WAIT_S)).data for _ in range(3)]
    assert sorted(len(e["attachments"]) for e in shown) == [0, 1, 2]
    token = {"Authorization": f"Bearer {login.json()['token']}"}
    reloaded = await client.get(f"/api/v1/operator/conversation/{convo.id}", headers=token)
    (message,) = reloaded.json()["messages"]
    assert max(shown, key=lambda e: len(e["attachments"])) == {
        "conversation_id": convo.id, "seq": 1, "image_url": message["image_url"],
        "attachments": message["attachments"],
    }  # fmt: skip
    urls = [message["image_url"], *(a["url"] for a in message["attachments"])]
    served = [(await client.get(url)).content for url in urls]
    assert sorted(served) == sorted(data.values())
    rows = sorted(await media_rows(services), key=lambda r: r["n"])
    assert sorted(urls) == sorted(r["image_url"] for r in rows)
    for attachment in message["attachments"]:
        (row,) = [r for r in rows if r["image_url"] == attachment["url"]]
        assert attachment == {
            "name": f"picture-{row['n'] + 1}.png", "content_type": "image/png",
            "size": len(data[f"/p{row['n']}.png"]), "url": row["image_url"],
        }  # fmt: skip


async def test_pictures_of_one_message_finishing_at_once_are_all_kept(
    services: Services, line: Line, provider: Host
) -> None:
    """Several workers finish pictures of the same messages at the same moment: on PostgreSQL
    these are concurrent transactions, and none may overwrite another's picture."""
    store = services.store
    count, messages = 6, 4
    for seq in range(1, messages + 1):
        media = [(f"https://api.twilio.com/m{seq}/{n}", "image/png") for n in range(count)]
        assert_twiml(await line.post(mms(seq, *media)))
    claimed = await store.claim_sms_media("w", now=time.time(), lease_s=60.0, limit=100)
    assert len(claimed) == count * messages

    def finish(m: SmsMedia) -> Awaitable[Message | Literal[False] | None]:
        picture = Attachment(f"picture-{m.n + 1}.png", "image/png", 1, f"/u/{m.n}")
        return store.finish_sms_media(m, "w", state="stored", error=None, picture=picture)

    done = await asyncio.gather(*(finish(m) for m in claimed))
    assert all(isinstance(d, Message) for d in done)
    (convo,) = await line.conversations()
    found = await store.list_messages(convo.account_id, convo.id)
    assert len(found) == messages
    for message in found:
        assert message.image_url is not None
        shown = sorted([message.image_url, *(a.url or "" for a in message.attachments)])
        assert shown == sorted(f"/u/{n}" for n in range(count))
        assert len(message.attachments) == count - 1


TWILIO_MEDIA = "https://api.twilio.com/x"


def one(url: str | None, content_type: str | None) -> dict[str, str]:
    given = {"MediaUrl0": url, "MediaContentType0": content_type}
    return {"NumMedia": "1", **{k: v for k, v in given.items() if v is not None}}


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"NumMedia": "11"}, "invalid_field"),
        ({"NumMedia": "-1"}, "invalid_field"),
        (one(None, None), "missing_field"),
        (one("ftp://127.0.0.1/x.png", "image/png"), "invalid_field"),
        (one("javascript:alert(1)", "image/png"), "invalid_field"),
        (one("https://api.twilio.com/\u0000", "image/png"), "invalid_field"),
        (one("https://api.twilio.com/ x", "image/png"), "invalid_field"),
        (one(TWILIO_MEDIA + "x" * 2000, "image/png"), "invalid_field"),
        (one(TWILIO_MEDIA, None), "missing_field"),
        (one(TWILIO_MEDIA, "png"), "invalid_field"),
        (one(TWILIO_MEDIA, "image/png\r\nX: y"), "invalid_field"),
    ],
)
async def test_bad_media_fields_are_refused_and_nothing_is_written(
    services: Services, line: Line, change: dict[str, str], code: str
) -> None:
    params = {**inbound(1, "hello"), **change}
    assert_error(await line.post(params), 400, code)
    assert await line.conversations() == []
    assert await media_rows(services) == []
