"""An email channel's IMAP source (issue 15) against a real Dovecot on loopback: only new mail
on the first connection unless a backfill window is set, (UIDVALIDITY, UID) bookkeeping,
BODY.PEEK[] and a keyword instead of deletion, one follower per mailbox, and connections cut
mid-fetch or mid-import, or a UIDVALIDITY change, losing and duplicating nothing."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.channels import settings_of
from server.email_imap import PROCESSED_FLAG, ImapSources, Mailbox
from server.services import Services
from server.settings import Settings, load_settings
from storage.base import InboxQuery
from storage.models import Channel, ImapCursor
from tests.conftest import Tenant, make_tenant
from tests.dovecot_server import Dovecot
from tests.outbound.servers import SMTP_PASSWORD, SMTP_USER, SmtpServer, smtp_server
from tests.server.test_admin import operator_token

ADDRESS = "support@example.com"
ARRIVES_WITHIN_S = 20.0
# Short command timeouts: a cut connection must fail the test's sync fast, not in 30 s.
TIMEOUT_S = 5.0
IMAP_WRONG = "not-the-password"


def mail(n: int, *, message_id: bool = True) -> bytes:
    message = EmailMessage()
    message["From"] = f"Customer {n} <customer{n}@customer.test>"
    message["To"] = ADDRESS
    message["Subject"] = f"Question {n}"
    if message_id:
        message["Message-ID"] = f"<question-{n}@customer.test>"
    message.set_content(f"Question number {n}.")
    return bytes(message)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The tests below drive the mailbox themselves; one test runs the app's follower.
    return load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_IMAP_SOURCES": "0"})


@pytest.fixture
def sink() -> Iterator[SmtpServer]:
    with smtp_server(auth=True) as server:
        yield server


async def email_channel(
    services: Services, tenant: Tenant, imap_url: str, sink_port: int = 1, **extra: str
) -> Channel:
    return await services.channels.create(
        tenant.account_id,
        kind="email",
        name="Support",
        public_url="https://chat.example.test",
        address=ADDRESS,
        smtp_url=f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{sink_port}",
        imap_url=imap_url,
        **extra,
    )


class Follower:
    """One holder following one channel's mailbox, a step at a time."""

    def __init__(self, services: Services, channel: Channel, holder: str = "test-holder") -> None:
        self.services = services
        self.channel = channel
        self.holder = holder

    @contextlib.asynccontextmanager
    async def connected(self) -> AsyncIterator[Mailbox]:
        url = self.services.channels.email_credentials(self.channel).imap_url
        assert url is not None
        backfill = int(settings_of(self.channel).get("imap_backfill_days") or 0)
        mailbox = Mailbox(
            self.services.store, self.services.email, self.channel, url, self.holder,
            backfill_days=backfill, timeout_s=TIMEOUT_S,
        )  # fmt: skip
        try:
            await mailbox.connect()
            yield mailbox
        finally:
            await mailbox.close()

    async def claim(self) -> ImapCursor | None:
        now = time.time()
        return await self.services.store.claim_mailbox(
            self.channel.account_id, self.channel.id, self.holder, now, now + 60
        )

    async def sync(self) -> ImapCursor | None:
        cursor = await self.claim()
        assert cursor is not None
        async with self.connected() as mailbox:
            return await mailbox.sync(cursor)

    async def texts(self) -> list[str]:
        store = self.services.store
        query = InboxQuery(viewer=0, every_team=True)
        found = []
        for convo in await store.list_conversations(self.channel.account_id, query):
            found += [m.text for m in await store.list_messages(self.channel.account_id, convo.id)]
        return sorted(found)


async def test_the_first_connection_imports_only_new_mail_and_flags_without_deleting(
    services: Services, tenant: Tenant, dovecot: Dovecot
) -> None:
    dovecot.deliver(mail(1))
    follower = Follower(services, await email_channel(services, tenant, dovecot.url()))
    first = await follower.sync()
    assert first is not None and first.last_uid == 1
    assert await follower.texts() == []
    dovecot.deliver(mail(2))
    dovecot.deliver(mail(3, message_id=False))
    assert await follower.sync() == ImapCursor(first.uidvalidity, 3)
    assert await follower.texts() == ["Question number 2.", "Question number 3."]
    flags = dovecot.flags()
    assert len(flags) == 3  # nothing deleted
    assert PROCESSED_FLAG not in flags[0]
    for taken in flags[1:]:
        assert PROCESSED_FLAG in taken and "\\Seen" not in taken
    # Nothing new: nothing happens.
    assert await follower.sync() == ImapCursor(first.uidvalidity, 3)
    assert len(await follower.texts()) == 2


async def test_a_backfill_window_imports_the_mail_already_there(
    services: Services, tenant: Tenant, dovecot: Dovecot
) -> None:
    dovecot.deliver(mail(1))
    dovecot.deliver(mail(2))
    channel = await email_channel(services, tenant, dovecot.url(), imap_backfill_days="3")
    follower = Follower(services, channel)
    cursor = await follower.sync()
    assert cursor is not None and cursor.last_uid == 2
    assert await follower.texts() == ["Question number 1.", "Question number 2."]


class Cutter:
    """A loopback proxy in front of Dovecot that, once armed, cuts the connection as soon as
    the client sends ``trigger`` (a few bytes of the answer pass first)."""

    def __init__(self, target_port: int, trigger: bytes) -> None:
        self.target_port = target_port
        self.trigger = trigger
        self.armed = True
        self.cuts = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(
            "127.0.0.1", self.target_port
        )
        cut = asyncio.Event()

        async def to_server() -> None:
            while data := await reader.read(65536):
                upstream_writer.write(data)
                await upstream_writer.drain()
                if self.armed and self.trigger in data.upper():
                    self.armed = False
                    cut.set()
                    return

        async def to_client() -> None:
            while data := await upstream_reader.read(65536):
                writer.write(data[:20] if cut.is_set() else data)
                await writer.drain()
                if cut.is_set():
                    return

        pumps = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        if cut.is_set():
            await asyncio.wait(pumps, timeout=TIMEOUT_S)
            self.cuts += 1
        for task in pumps:
            task.cancel()
        await asyncio.gather(*pumps, return_exceptions=True)
        for closing in (writer, upstream_writer):
            closing.close()
            with contextlib.suppress(OSError):
                await closing.wait_closed()


@pytest.mark.parametrize("trigger", [b"UID FETCH", b"UID STORE"])
async def test_a_connection_cut_mid_fetch_or_mid_import_loses_and_duplicates_nothing(
    services: Services, tenant: Tenant, dovecot: Dovecot, trigger: bytes
) -> None:
    """Cut at FETCH: the message never arrived. Cut at STORE: it was taken in, but neither
    flagged nor counted, as when a process dies mid-import; fetched again, it is known."""
    cutter = Cutter(dovecot.port, trigger)
    await cutter.start()
    try:
        follower = Follower(
            services, await email_channel(services, tenant, dovecot.url(port=cutter.port))
        )
        start = await follower.sync()
        assert start is not None
        for n in (1, 2, 3):
            dovecot.deliver(mail(n))
        with pytest.raises(Exception, match="closed the connection"):
            await follower.sync()
        assert cutter.cuts == 1
        cursor = await follower.claim()
        assert cursor == start  # nothing counted past the cut message
        assert await follower.sync() == ImapCursor(start.uidvalidity, 3)
    finally:
        await cutter.stop()
    assert await follower.texts() == [
        "Question number 1.", "Question number 2.", "Question number 3.",
    ]  # fmt: skip


async def test_a_changed_uidvalidity_fetches_again_and_keeps_each_mail_once(
    services: Services, tenant: Tenant, dovecot: Dovecot
) -> None:
    with dovecot.session() as client:
        assert client.create("Support")[0] == "OK"
    channel = await email_channel(services, tenant, dovecot.url("Support"))
    follower = Follower(services, channel)
    before = await follower.sync()
    assert before is not None
    for n in (1, 2):
        dovecot.deliver(mail(n), "Support")
    assert await follower.sync() == ImapCursor(before.uidvalidity, 2)
    # The folder is rebuilt (a restore, a server move): same mail, new UIDs, new UIDVALIDITY.
    with dovecot.session() as client:
        assert client.delete("Support")[0] == "OK"
        assert client.create("Support")[0] == "OK"
    for n in (1, 2, 3):
        dovecot.deliver(mail(n), "Support")
    after = await follower.sync()
    assert after is not None and after.uidvalidity != before.uidvalidity
    assert after.last_uid == 3
    assert await follower.texts() == [
        "Question number 1.", "Question number 2.", "Question number 3.",
    ]  # fmt: skip


async def test_one_holder_follows_a_mailbox_at_a_time(
    services: Services, tenant: Tenant, dovecot: Dovecot
) -> None:
    channel = await email_channel(services, tenant, dovecot.url())
    store, account = services.store, tenant.account_id
    now = time.time()
    assert await store.claim_mailbox(account, channel.id, "a", now, now + 60) is not None
    assert await store.claim_mailbox(account, channel.id, "b", now, now + 60) is None
    assert await store.claim_mailbox(account, channel.id, "a", now, now + 60) is not None
    # A's lease ran out: B takes over, and A, waking up late, moves nothing.
    later = now + 120
    assert await store.claim_mailbox(account, channel.id, "b", later, later + 60) is not None
    assert not await store.advance_mailbox(account, channel.id, "a", ImapCursor(7, 99))
    assert await store.advance_mailbox(account, channel.id, "b", ImapCursor(7, 1))
    await store.release_mailbox(account, channel.id, "b")
    assert await store.claim_mailbox(account, channel.id, "a", later, later + 60) == (
        ImapCursor(7, 1)
    )


async def test_a_refused_login_is_on_the_health_line(
    services: Services, tenant: Tenant, dovecot: Dovecot
) -> None:
    wrong = dovecot.url().replace(":imap-pass-1@", f":{IMAP_WRONG}@")
    channel = await email_channel(services, tenant, wrong)
    sources = ImapSources(services.store, services.channels, services.email, poll_s=1)
    await sources.follow(channel)  # returns once the login is refused
    health = await services.channels.get(tenant.account_id, channel.id)
    assert health.last_error is not None and health.last_error.startswith("IMAP INBOX: LOGIN")
    assert health.last_error_at is not None
    assert IMAP_WRONG not in health.last_error


# the app's follower, end to end


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[tuple[Starlette, Services]]:
    settings = load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "live"), "LIVEOP_IMAP_POLL_S": "1"})
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        found = app.state.services
        assert isinstance(found, Services)
        yield app, found


async def _until(check: Any, what: str) -> Any:
    deadline = asyncio.get_running_loop().time() + ARRIVES_WITHIN_S
    while not (found := await check()):
        assert asyncio.get_running_loop().time() < deadline, what
        await asyncio.sleep(0.1)
    return found


async def test_a_mailed_customer_is_answered_and_their_answer_joins_the_conversation(
    live: tuple[Starlette, Services], dovecot: Dovecot, sink: SmtpServer
) -> None:
    app, services = live
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liveop.test") as client:
        tenant = await make_tenant(client, services)
        # A day's backfill: the mail is taken in whether or not the app connected first.
        channel = await email_channel(
            services, tenant, dovecot.url(), sink.port, imap_backfill_days="1"
        )
        follower = Follower(services, channel)
        fixtures = Path(__file__).parent.parent / "fixtures" / "email"
        dovecot.deliver((fixtures / "new_mail.eml").read_bytes())
        texts = await _until(follower.texts, "the mail never reached the inbox")
        assert texts[0].startswith("Hello,\n\nI ordered a blue kettle")
        query = InboxQuery(viewer=0, every_team=True)
        (convo,) = await services.store.list_conversations(tenant.account_id, query)
        token = await operator_token(client, tenant)
        response = await client.post(
            "/api/v1/operator/message",
            json={"conversation_id": convo.id, "content": "It left yesterday."},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200, response.text
        sent = await _until(
            lambda: _sent(sink), "the reply never reached the customer's mail server"
        )
        assert sent["In-Reply-To"] == "<CAJx8kQ3b7Yv2Yw1n0m6X+2u8cW9q=Kp1fZ4@mail.gmail.com>"
        answer = (fixtures / "gmail_reply.eml").read_bytes()
        for placeholder, value in {
            "%IN_REPLY_TO%": str(sent["Message-ID"]),
            "%REFERENCES%": f"{sent['References']} {sent['Message-ID']}",
            "%SUBJECT%": str(sent["Subject"]).removeprefix("Re: "),
            "%REPLY_TO%": str(sent["Reply-To"]),
        }.items():
            answer = answer.replace(placeholder.encode(), value.encode())
        dovecot.deliver(answer)

        async def answered() -> list[str]:
            messages = await services.store.list_messages(tenant.account_id, convo.id)
            return [m.text for m in messages] if len(messages) == 3 else []

        texts = await _until(answered, "the answer never joined the conversation")
        assert texts[1:] == ["It left yesterday.", "Great, thank you! I will be home on Wednesday."]


async def _sent(sink: SmtpServer) -> EmailMessage | None:
    messages = sink.mailbox.messages()
    return messages[-1] if messages else None


# the admin's test of the channel


async def test_the_channel_test_logs_in_to_smtp_and_imap_and_says_why_not(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, dovecot: Dovecot,
    sink: SmtpServer,
) -> None:  # fmt: skip
    headers = {"X-Api-Key": tenant.api_key}
    good = await email_channel(services, tenant, dovecot.url(), sink.port)
    response = await client.post(f"/api/v1/admin/channels/{good.id}/test", headers=headers)
    assert response.status_code == 200, response.text
    assert response.json() == {"success": True, "smtp": "ok", "imap": "ok"}
    assert sink.mailbox.messages() == []  # a login, not a mail
    health = await services.channels.get(tenant.account_id, good.id)
    assert health.last_outbound is not None and health.last_error is None

    wrong = dovecot.url().replace(":imap-pass-1@", f":{IMAP_WRONG}@")
    refused = await email_channel(services, tenant, wrong, sink.port)
    response = await client.post(f"/api/v1/admin/channels/{refused.id}/test", headers=headers)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "channel_test_failed"
    assert "LOGIN" in response.json()["error"]["message"]
    assert IMAP_WRONG not in response.text
    health = await services.channels.get(tenant.account_id, refused.id)
    assert health.last_error is not None and "LOGIN" in health.last_error

    no_smtp = await email_channel(services, tenant, dovecot.url(), sink_port=1)
    response = await client.post(f"/api/v1/admin/channels/{no_smtp.id}/test", headers=headers)
    assert response.status_code == 409, response.text
    assert "SMTP server unreachable" in response.json()["error"]["message"]
