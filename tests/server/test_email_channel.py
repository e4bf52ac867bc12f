"""Two-way email (issue 15): an email channel's admin contract, the raw MIME webhook, the one
ingest pipeline (threading, quote stripping, automatic mail, bounces, bad mail) and threaded
replies through the channel's own SMTP, against a real SMTP server (aiosmtpd) on loopback.

The mails are real-world fixtures in tests/fixtures/email/, written as Gmail, Outlook and
Apple Mail write them; a reply's %PLACEHOLDERS% take the headers of the mail it answers.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from server.email_ingest import MAX_ATTACHMENT_BYTES, MAX_MAIL_BYTES
from server.render import camel_case
from server.services import Services
from storage.base import InboxQuery
from storage.models import Conversation
from tests.conftest import TEST_PASSWORD, Tenant, assert_error, bearer
from tests.outbound.servers import SMTP_PASSWORD, SMTP_USER, SmtpServer, smtp_server
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import operator_token

FIXTURES = Path(__file__).parent.parent / "fixtures" / "email"
PUBLIC = "https://chat.example.test"
ADDRESS = "support@example.com"
CUSTOMER = "jane.doe@customer.test"
OPERATOR = "/api/v1/operator"
ROOT = "/api/v1/admin/channels"
IMAP_PASSWORD = "imap-secret-9"
SIGNING_KEY = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0"
DELIVERED_WITHIN_S = 10.0


def fixture(name: str, **values: str) -> bytes:
    raw = (FIXTURES / name).read_bytes()
    for placeholder, value in values.items():
        raw = raw.replace(f"%{placeholder.upper()}%".encode(), value.encode())
    return raw


@pytest.fixture
def sink() -> Iterator[SmtpServer]:
    with smtp_server(auth=True) as server:
        yield server


def email_channel(sink: SmtpServer, **fields: Any) -> dict[str, Any]:
    return {
        "kind": "email",
        "name": "Support mail",
        "address": ADDRESS,
        "smtp_url": f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{sink.port}",
        # Port 1 refuses at once: the app's IMAP follower never leaves loopback.
        "imap_url": f"imaps://support%40example.com:{IMAP_PASSWORD}@127.0.0.1:1/INBOX",
        "public_url": PUBLIC + "/",
        "mailgun_signing_key": SIGNING_KEY,
        **fields,
    }


class Mailbox:
    """The tenant's email channel, a customer who mails it, and what the sink received."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        services: Services,
        tenant: Tenant,
        sink: SmtpServer,
        channel: dict[str, Any],
    ) -> None:
        self.client = client
        self.services = services
        self.tenant = tenant
        self.sink = sink
        self.channel = channel
        self.path = channel["webhooks"]["mime"].removeprefix(PUBLIC)

    async def mail(self, raw: bytes) -> dict[str, Any]:
        response = await self.client.post(self.path, content=raw)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def conversations(self) -> list[Conversation]:
        query = InboxQuery(viewer=0, every_team=True)
        return await self.services.store.list_conversations(self.tenant.account_id, query)

    async def texts(self, convo_id: str) -> list[str]:
        messages = await self.services.store.list_messages(self.tenant.account_id, convo_id)
        return [m.text for m in messages]

    async def reply(self, convo_id: str, text: str) -> EmailMessage:
        """An operator's reply, as the customer receives it."""
        before = len(self.sink.mailbox.messages())
        token = bearer(await operator_token(self.client, self.tenant))
        body = {"conversation_id": convo_id, "content": text}
        response = await self.client.post(f"{OPERATOR}/message", json=body, headers=token)
        assert response.status_code == 200, response.text
        deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
        while len(self.sink.mailbox.messages()) == before:
            assert asyncio.get_running_loop().time() < deadline, "the reply never left"
            await asyncio.sleep(0.05)
        return self.sink.mailbox.messages()[-1]


@pytest.fixture
async def mailbox(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, sink: SmtpServer
) -> Mailbox:
    response = await client.post(
        ROOT, headers={"X-Api-Key": tenant.api_key}, json=email_channel(sink)
    )
    assert response.status_code == 201, response.text
    return Mailbox(client, services, tenant, sink, response.json()["channel"])


def _parsed(raw: bytes) -> EmailMessage:
    parsed = message_from_bytes(raw, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def answering(sent: EmailMessage) -> dict[str, str]:
    """A reply fixture's placeholders, filled as the customer's mail client fills them."""
    references = f"{sent['References'] or ''} {sent['Message-ID']}".strip()
    return {
        "in_reply_to": str(sent["Message-ID"]),
        "references": references,
        "subject": str(sent["Subject"]).removeprefix("Re: "),
        "reply_to": str(sent["Reply-To"]),
    }


# the channel


async def test_an_email_channel_answers_its_key_and_webhooks_and_never_a_secret(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, sink: SmtpServer
) -> None:
    headers = {"X-Api-Key": tenant.api_key}
    response = await client.post(ROOT, headers=headers, json=email_channel(sink))
    assert response.status_code == 201, response.text
    channel = response.json()["channel"]
    key = channel["key"]
    assert channel["kind"] == "email"
    assert channel["address"] == ADDRESS
    assert channel["webhooks"] == {
        "mime": f"{PUBLIC}/webhooks/email/{key}",
        "mailgun": f"{PUBLIC}/webhooks/email/{key}/mailgun",
    }
    assert channel["smtp_url"] == f"smtp://{SMTP_USER}@127.0.0.1:{sink.port}"
    assert channel["imap_url"] == "imaps://support%40example.com@127.0.0.1:1/INBOX"
    assert channel["mailgun"] is True
    listed = await client.get(ROOT, headers=headers)
    stored = await services.store.get_channel(tenant.account_id, channel["id"])
    assert stored is not None
    for text in (response.text, listed.text, stored.settings, stored.credentials):
        for secret in (SMTP_PASSWORD, IMAP_PASSWORD, SIGNING_KEY):
            assert secret not in text
    opened = services.channels.email_credentials(stored)
    assert opened.smtp_url == f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{sink.port}"
    assert opened.imap_url is not None and IMAP_PASSWORD in opened.imap_url
    assert opened.mailgun_signing_key == SIGNING_KEY


async def test_an_email_channels_settings_change_and_a_removed_source_is_gone(
    client: httpx.AsyncClient, services: Services, mailbox: Mailbox
) -> None:
    headers = {"X-Api-Key": mailbox.tenant.api_key}
    path = f"{ROOT}/{mailbox.channel['id']}"
    response = await client.patch(
        path,
        headers=headers,
        json={"imap_url": "", "mailgun_signing_key": "", "smtp_url": "smtps://new:pw2@mx.test"},
    )
    assert response.status_code == 200, response.text
    changed = response.json()["channel"]
    assert (changed["imap_url"], changed["mailgun"]) == (None, False)
    assert changed["smtp_url"] == "smtps://new@mx.test"
    stored = await services.store.get_channel(mailbox.tenant.account_id, mailbox.channel["id"])
    assert stored is not None
    opened = services.channels.email_credentials(stored)
    assert (opened.smtp_url, opened.imap_url, opened.mailgun_signing_key) == (
        "smtps://new:pw2@mx.test", None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"address": None}, "missing_field"),
        ({"smtp_url": None}, "missing_field"),
        ({"address": "not an address"}, "invalid_field"),
        ({"address": ["a@b.test"]}, "invalid_field"),
        ({"smtp_url": "http://mx.test"}, "invalid_field"),
        ({"smtp_url": "smtp://mx.test:99999"}, "invalid_field"),
        ({"smtp_url": "smtp://mx.test?starttls=maybe"}, "invalid_field"),
        ({"imap_url": "pop3://mx.test"}, "invalid_field"),
        ({"imap_url": "imap://mx.test/INBOX?x=1"}, "invalid_field"),
        ({"imap_url": "imap://mx.test/IN\x00BOX"}, "invalid_field"),
        ({"mailgun_signing_key": "a b"}, "invalid_field"),
        ({"auth_token": "f00d"}, "invalid_field"),
        ({"public_url": "ftp://x.test"}, "invalid_field"),
    ],
)
async def test_bad_email_channel_fields_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient,
    services: Services,
    tenant: Tenant,
    sink: SmtpServer,
    fields: dict[str, Any],
    code: str,
) -> None:
    body = {k: v for k, v in email_channel(sink, **fields).items() if v is not None}
    response = await client.post(ROOT, headers={"X-Api-Key": tenant.api_key}, json=body)
    assert_error(response, 400, code)
    assert await services.store.list_channels(tenant.account_id) == []


# a mail in, a reply out, the answer in


@pytest.mark.parametrize(
    ("client_fixture", "new_text"),
    [
        ("gmail_reply.eml", "Great, thank you! I will be home on Wednesday."),
        (
            "outlook_reply.eml",
            "Could you send it to my office instead? The address is 4 Mill Lane.",
        ),
        ("apple_mail_reply.eml", "Perfect — thanks for the quick help.\n\nJane"),
    ],
)
async def test_a_mail_opens_a_conversation_the_reply_threads_and_the_answer_joins_it(
    mailbox: Mailbox, client_fixture: str, new_text: str
) -> None:
    first = await mailbox.mail(fixture("new_mail.eml"))
    assert (first["outcome"], first["duplicate"]) == ("message", False)
    (convo,) = await mailbox.conversations()
    assert convo.id == first["conversation_id"]
    assert (convo.source_app, convo.channel_id) == ("emailbroadcast", mailbox.channel["id"])
    assert (convo.user_info.email, convo.user_info.fname) == (CUSTOMER, "Jane Doe")
    # The conversation joins the contact holding the sender's address (issue 14's contacts).
    assert convo.contact_id is not None
    contact = await mailbox.services.store.get_contact(mailbox.tenant.account_id, convo.contact_id)
    assert contact is not None
    assert [(i.identity.kind, i.identity.value) for i in contact.identities] == [
        ("email", CUSTOMER)
    ]
    assert (await mailbox.texts(convo.id))[0].startswith("Hello,\n\nI ordered a blue kettle")

    sent = await mailbox.reply(convo.id, "It arrives on Wednesday.")
    incoming = "<CAJx8kQ3b7Yv2Yw1n0m6X+2u8cW9q=Kp1fZ4@mail.gmail.com>"
    assert sent["From"] == f'"Alex (Acme)" <{ADDRESS}>'
    assert sent["To"] == f"Jane Doe <{CUSTOMER}>"
    assert sent["In-Reply-To"] == incoming
    assert sent["References"] == incoming
    assert str(sent["Message-ID"]).endswith("@example.com>")
    assert str(sent["Subject"]).startswith("Re: My order has not arrived [#")
    assert str(sent["Reply-To"]).startswith("support+")
    assert sent["Auto-Submitted"] is None
    assert sent.get_content().strip() == "It arrives on Wednesday."

    answer = await mailbox.mail(fixture(client_fixture, **answering(sent)))
    assert (answer["outcome"], answer["conversation_id"]) == ("message", convo.id)
    assert await mailbox.texts(convo.id) == [
        (await mailbox.texts(convo.id))[0],
        "It arrives on Wednesday.",
        new_text,
    ]

    # The next reply answers the customer's last mail and carries the whole chain.
    again = await mailbox.reply(convo.id, "Noted.")
    assert again["In-Reply-To"] != incoming
    assert str(again["References"]).split() == [
        incoming, str(sent["Message-ID"]), str(again["In-Reply-To"]),
    ]  # fmt: skip


async def test_a_mail_reaches_the_operators_stream_live(app: Any, mailbox: Mailbox) -> None:
    """The inbox hears a customer's mail as it hears a chat: conversation:new, then the
    mail's text as message:new, on the operator SSE stream while it is open."""
    async with serve(app) as base:
        login = await mailbox.client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{mailbox.tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            convo_id = (await mailbox.mail(fixture("new_mail.eml")))["conversation_id"]
            opened = await stream.until("conversation:new", DELIVERED_WITHIN_S)
            said = await stream.until("message:new", DELIVERED_WITHIN_S)
    assert (opened.data["id"], opened.data["channel"]) == (convo_id, "email")
    assert said.data["conversation_id"] == convo_id
    assert said.data["message"]["sender"] == "visitor"
    assert said.data["message"]["content"].startswith("Hello,\n\nI ordered a blue kettle")
    assert said.data["conversation"]["channel"] == "email"


async def test_the_original_mail_is_kept_for_operators(
    client: httpx.AsyncClient, mailbox: Mailbox, other_tenant: Tenant
) -> None:
    raw = fixture("html_only.eml")
    convo_id = (await mailbox.mail(raw))["conversation_id"]
    (message,) = await mailbox.services.store.list_messages(mailbox.tenant.account_id, convo_id)
    assert message.text == (
        "Hi there,\n\nMy invoice INV-2291 shows the wrong VAT number.\n\nCould you correct it?"
    )
    path = f"{OPERATOR}/message/{message.id}/original"
    token = bearer(await operator_token(client, mailbox.tenant))
    response = await client.get(path, headers=token)
    assert response.status_code == 200, response.text
    original = response.json()
    assert original["raw"] == raw.decode()
    assert original["message_id"] == "20261207100000.1f2e3d4c@mailer.customer.test"
    assert "<b>INV-2291</b>" in original["html"]
    for unsafe in ("<script", "onclick", "alert("):
        assert unsafe not in original["html"]
    # Another account's operators, and the API key, get nothing.
    assert_error(
        await client.get(path, headers=bearer(await operator_token(client, other_tenant))),
        404,
        "original_not_found",
    )
    response = await client.get(path, headers={"X-Api-Key": mailbox.tenant.api_key})
    assert_error(response, 400, "operator_required")


async def test_a_chat_message_has_no_original(client: httpx.AsyncClient, mailbox: Mailbox) -> None:
    convo_id = await mailbox.tenant.visitor_says("hello from the web")
    (message,) = await mailbox.services.store.list_messages(mailbox.tenant.account_id, convo_id)
    token = bearer(await operator_token(client, mailbox.tenant))
    path = f"{OPERATOR}/message/{message.id}/original"
    assert_error(await client.get(path, headers=token), 404, "original_not_found")
    bad = f"{OPERATOR}/message/{'x' * 500}/original"
    assert (await client.get(bad, headers=token)).status_code in (400, 404)


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("latin1.eml", "Grüße, ich möchte meine Rückerstattung für Bestellung 10442."),
        ("attachment.eml", "The box came crushed, see below:"),
    ],
)
async def test_charsets_and_attachments_reach_the_operator(
    mailbox: Mailbox, name: str, text: str
) -> None:
    convo_id = (await mailbox.mail(fixture(name)))["conversation_id"]
    assert await mailbox.texts(convo_id) == [text]


async def _shown(mailbox: Mailbox, convo_id: str) -> list[dict[str, Any]]:
    token = bearer(await operator_token(mailbox.client, mailbox.tenant))
    response = await mailbox.client.get(f"{OPERATOR}/conversation/{convo_id}", headers=token)
    assert response.status_code == 200, response.text
    messages: list[dict[str, Any]] = response.json()["messages"]
    return messages


def described(attachment: dict[str, Any]) -> tuple[str, str, int]:
    return attachment["name"], attachment["content_type"], attachment["size"]


async def _served(mailbox: Mailbox, url: str) -> httpx.Response:
    response = await mailbox.client.get(url.removeprefix(PUBLIC))
    assert response.status_code == 200, response.text
    return response


async def test_attachments_are_stored_and_the_inline_image_points_at_its_copy(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    raw = fixture("attachment.eml")
    parts = {p.get_filename(): p.get_content() for p in _parsed(raw).walk() if p.get_filename()}
    convo_id = (await mailbox.mail(raw))["conversation_id"]
    (message,) = await _shown(mailbox, convo_id)
    picture, receipt = message["attachments"]
    uploads = f"{PUBLIC}/uploads/{mailbox.tenant.account_id}/"
    assert described(picture) == ("box.png", "image/png", 70)
    assert picture["url"].startswith(uploads) and picture["url"].endswith(".png")
    assert described(receipt) == ("receipt.pdf", "application/pdf", 82)
    assert receipt["url"].startswith(uploads + "files/")
    # The picture is served as the image it decoded as; the other file only as bytes to save.
    shown = await _served(mailbox, picture["url"])
    assert (shown.headers["content-type"], shown.content) == ("image/png", parts["box.png"])
    saved = await _served(mailbox, receipt["url"])
    assert saved.headers["content-type"] == "application/octet-stream"
    assert saved.headers["content-disposition"] == "attachment"
    assert saved.headers["x-content-type-options"] == "nosniff"
    assert saved.content == parts["receipt.pdf"]
    # The kept HTML shows the inline image from the stored copy.
    token = bearer(await operator_token(client, mailbox.tenant))
    original = await client.get(f"{OPERATOR}/message/{message['id']}/original", headers=token)
    assert f'<img src="{picture["url"]}" alt="box.png">' in original.json()["html"]
    assert "cid:" not in original.json()["html"]
    # Visitors' surfaces never carry them.
    visitor = await mailbox.services.store.list_messages(mailbox.tenant.account_id, convo_id)
    assert camel_case.message_json(visitor[0]).keys().isdisjoint({"attachments"})


async def test_a_picture_that_does_not_decode_is_a_download_and_a_huge_file_is_listed_only(
    mailbox: Mailbox,
) -> None:
    mail = EmailMessage()
    mail["From"], mail["To"], mail["Subject"] = CUSTOMER, ADDRESS, "Files"
    mail["Message-ID"] = "<files-1@customer.test>"
    mail.set_content("Two files.")
    mail.add_attachment(b"not a png at all", "image", "png", filename="fake.png")
    huge = secrets.token_bytes(MAX_ATTACHMENT_BYTES + 1)
    mail.add_attachment(huge, "application", "zip", filename="huge.zip")
    convo_id = (await mailbox.mail(mail.as_bytes()))["conversation_id"]
    (message,) = await _shown(mailbox, convo_id)
    fake, big = message["attachments"]
    assert "/files/" in fake["url"]
    assert (await _served(mailbox, fake["url"])).content == b"not a png at all"
    assert big == {
        "name": "huge.zip", "content_type": "application/zip", "size": len(huge), "url": None,
    }  # fmt: skip
    assert message["content"] == "Two files."
    # Names no store could have made are 404, never a path outside it.
    for bad in ("../../secret", "files/..", "files/%2e%2e", "files/" + "x" * 300, "a.exe"):
        path = f"/uploads/{mailbox.tenant.account_id}/{bad}"
        assert (await mailbox.client.get(path)).status_code == 404


# threading


async def _opened(mailbox: Mailbox) -> tuple[str, EmailMessage]:
    convo_id = (await mailbox.mail(fixture("new_mail.eml")))["conversation_id"]
    return convo_id, await mailbox.reply(convo_id, "Which colour was it?")


def _plain(sender: str, to: str, subject: str, body: str, **headers: str) -> bytes:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    for name, value in headers.items():
        message[name.replace("_", "-")] = value
    message.set_content(body)
    return bytes(message)


async def test_each_threading_rule_finds_the_conversation_on_its_own(mailbox: Mailbox) -> None:
    convo_id, sent = await _opened(mailbox)
    reply_to, subject = str(sent["Reply-To"]), str(sent["Subject"])
    # The token alone: another subject, no headers, even from another address of theirs.
    by_token = _plain("jane@home.test", reply_to, "blue", "Blue.", Message_ID="<t1@home.test>")
    # In-Reply-To alone, to the plain address.
    by_header = _plain(
        CUSTOMER, ADDRESS, "x", "Header.", In_Reply_To=str(sent["Message-ID"]),
        Message_ID="<t2@c.test>",
    )  # fmt: skip
    # The subject tag alone.
    by_tag = _plain(CUSTOMER, ADDRESS, f"Fwd: {subject}", "Tag.", Message_ID="<t3@c.test>")
    for raw in (by_token, by_header, by_tag):
        assert (await mailbox.mail(raw))["conversation_id"] == convo_id
    assert (await mailbox.texts(convo_id))[-3:] == ["Blue.", "Header.", "Tag."]


async def test_headers_and_tags_thread_only_the_conversations_contact(mailbox: Mailbox) -> None:
    convo_id, sent = await _opened(mailbox)
    stranger = "someone.else@elsewhere.test"
    by_header = _plain(
        stranger, ADDRESS, str(sent["Subject"]), "Me too!", In_Reply_To=str(sent["Message-ID"]),
        References=str(sent["Message-ID"]), Message_ID="<s1@elsewhere.test>",
    )  # fmt: skip
    answer = await mailbox.mail(by_header)
    assert answer["conversation_id"] not in (None, convo_id)
    assert len(await mailbox.conversations()) == 2


async def test_a_forged_reply_token_threads_nothing(mailbox: Mailbox) -> None:
    convo_id, _ = await _opened(mailbox)
    forged = _plain(
        "attacker@evil.test", f"support+{'0' * 32}@example.com", "hi", "Let me in.",
        Message_ID="<f1@evil.test>",
    )  # fmt: skip
    answer = await mailbox.mail(forged)
    assert answer["conversation_id"] not in (None, convo_id)
    assert len(await mailbox.texts(convo_id)) == 2


# automatic mail, bounces, our own mail


async def test_an_auto_reply_neither_reopens_nor_is_answered(mailbox: Mailbox) -> None:
    convo_id, sent = await _opened(mailbox)
    token = bearer(await operator_token(mailbox.client, mailbox.tenant))
    closed = await mailbox.client.post(f"{OPERATOR}/close/{convo_id}", headers=token)
    assert closed.status_code == 200, closed.text
    answer = await mailbox.mail(fixture("auto_reply.eml", **answering(sent)))
    assert (answer["outcome"], answer["conversation_id"]) == ("automatic", None)
    (convo,) = await mailbox.conversations()
    assert convo.status == "resolved"
    assert len(await mailbox.texts(convo_id)) == 2


async def test_a_bounce_marks_the_address_and_the_next_reply_fails_at_once(
    mailbox: Mailbox,
) -> None:
    opening = _plain("gone@customer.test", ADDRESS, "Hi", "Hello?", Message_ID="<g1@c.test>")
    convo_id = (await mailbox.mail(opening))["conversation_id"]
    bounce = await mailbox.mail(fixture("bounce.eml"))
    assert (bounce["outcome"], bounce["conversation_id"]) == ("bounce", None)
    reason = await mailbox.services.store.undeliverable(
        mailbox.tenant.account_id, "gone@customer.test"
    )
    assert reason is not None and "550 5.1.1" in reason
    token = bearer(await operator_token(mailbox.client, mailbox.tenant))
    body = {"conversation_id": convo_id, "content": "Are you there?"}
    response = await mailbox.client.post(f"{OPERATOR}/message", json=body, headers=token)
    assert response.status_code == 200, response.text
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while (await _delivery(mailbox, convo_id, 2)) == "queued":
        assert asyncio.get_running_loop().time() < deadline, "the reply never finished"
        await asyncio.sleep(0.05)
    assert await _delivery(mailbox, convo_id, 2) == "failed"
    assert mailbox.sink.mailbox.messages() == []
    assert len(await mailbox.conversations()) == 1


async def _delivery(mailbox: Mailbox, convo_id: str, seq: int) -> str | None:
    messages = await mailbox.services.store.list_messages(mailbox.tenant.account_id, convo_id)
    return next(m.delivery for m in messages if m.seq == seq)


async def test_mail_from_our_own_address_opens_nothing(mailbox: Mailbox) -> None:
    own = _plain(f"Acme <{ADDRESS}>", ADDRESS, "Loop?", "Our own.", Message_ID="<o1@e.test>")
    answer = await mailbox.mail(own)
    assert (answer["outcome"], answer["conversation_id"]) == ("own", None)
    assert await mailbox.conversations() == []


@pytest.mark.parametrize(
    "headers",
    [
        {"Precedence": "bulk"},
        {"List_Id": "<news.customer.test>"},
        {"X_Autoreply": "yes"},
        {"Auto_Submitted": "auto-generated"},
    ],
)
async def test_bulk_and_automatic_mail_opens_nothing(
    mailbox: Mailbox, headers: dict[str, str]
) -> None:
    raw = _plain(CUSTOMER, ADDRESS, "News", "Our news.", Message_ID="<n1@c.test>", **headers)
    assert (await mailbox.mail(raw))["outcome"] == "automatic"
    assert await mailbox.conversations() == []


# the same mail twice, and bad mail


async def test_a_mail_delivered_twice_is_one_message(mailbox: Mailbox) -> None:
    raw = fixture("new_mail.eml")
    first, again = await mailbox.mail(raw), await mailbox.mail(raw)
    assert again == {**first, "duplicate": True}
    (convo,) = await mailbox.conversations()
    assert len(await mailbox.texts(convo.id)) == 1


async def test_a_mail_without_message_id_is_kept_once_by_its_bytes(mailbox: Mailbox) -> None:
    raw = _plain(CUSTOMER, ADDRESS, "No id", "First.")
    other = _plain(CUSTOMER, ADDRESS, "No id", "Second.")
    first, again = await mailbox.mail(raw), await mailbox.mail(raw)
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert (await mailbox.mail(other))["duplicate"] is False
    texts = [await mailbox.texts(c.id) for c in await mailbox.conversations()]
    assert sorted(texts) == [["First."], ["Second."]]


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x00\x01\x02 not a mail at all \xff\xfe", "NUL"),
        (b"Subject: no sender\r\n\r\nHello?\r\n", "From"),
        (b"From: not-an-address\r\nSubject: x\r\n\r\nbody\r\n", "From"),
        (b"From: =?utf-8?q?Br=FFoken?= <unclosed@\r\n\r\nx", "From"),
        (b"\xff\xfe\xfd garbage\r\n\r\n\xfa", "From"),
    ],
)
async def test_mail_that_cannot_be_a_message_is_recorded_as_refused(
    mailbox: Mailbox, raw: bytes, reason: str
) -> None:
    answer = await mailbox.mail(raw)
    assert answer["outcome"] == "refused"
    assert reason in answer["reason"]
    assert (await mailbox.mail(raw))["duplicate"] is True
    assert await mailbox.conversations() == []


async def test_malformed_mime_and_unknown_charsets_still_reach_the_operator(
    mailbox: Mailbox,
) -> None:
    broken = (
        b"From: Jane Doe <jane.doe@customer.test>\r\nMessage-ID: <b1@c.test>\r\n"
        b'Content-Type: multipart/mixed; boundary="never-closed"\r\n\r\n'
        b"--never-closed\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\n"
        b"Caf\xc3\xa9 au lait\r\n"
    )
    answer = await mailbox.mail(broken)
    assert answer["outcome"] == "message"
    assert await mailbox.texts(answer["conversation_id"]) == ["Café au lait"]


async def test_an_oversized_mail_is_413_and_writes_nothing(mailbox: Mailbox) -> None:
    attachment = base64.b64encode(b"\xff" * (30 * 1024 * 1024 // 4 * 3)).decode()
    raw = fixture("new_mail.eml") + attachment.encode()
    assert len(raw) > MAX_MAIL_BYTES
    response = await mailbox.client.post(mailbox.path, content=raw)
    assert_error(response, 413, "mail_too_large")
    assert await mailbox.conversations() == []


async def test_unknown_keys_and_empty_bodies_are_refused(
    client: httpx.AsyncClient, mailbox: Mailbox
) -> None:
    assert_error(await client.post("/webhooks/email/nope", content=b"x"), 404, "channel_not_found")
    assert_error(
        await client.post("/webhooks/email/" + "k" * 5000, content=b"x"), 404, "channel_not_found"
    )
    assert_error(await client.post(mailbox.path, content=b""), 400, "empty_body")


# Mailgun's routes


def mailgun_form(key: str = SIGNING_KEY, *, age_s: float = 0.0, **fields: str) -> dict[str, str]:
    """A form signed as Mailgun signs it: hex HMAC-SHA256 of timestamp + token."""
    timestamp = str(int(time.time() - age_s))
    token = secrets.token_hex(25)
    signature = hmac.new(key.encode(), (timestamp + token).encode(), hashlib.sha256).hexdigest()
    return {"timestamp": timestamp, "token": token, "signature": signature, **fields}


def parsed_fields() -> dict[str, str]:
    """What Mailgun posts for a route that forwards parsed mail."""
    headers = [
        ["From", "Jane Doe <jane.doe@customer.test>"],
        ["To", ADDRESS],
        ["Subject", "Parsed by Mailgun"],
        ["Message-Id", "<mg-1@customer.test>"],
        ["Content-Type", 'multipart/alternative; boundary="x"'],
    ]
    return {
        "recipient": ADDRESS,
        "sender": CUSTOMER,
        "from": "Jane Doe <jane.doe@customer.test>",
        "subject": "Parsed by Mailgun",
        "message-headers": orjson.dumps(headers).decode(),
        "body-plain": "Sent through Mailgun.\n\nOn Mon, Support wrote:\n> earlier\n",
        "body-html": "<p>Sent through Mailgun.</p>",
    }


async def test_mailgun_raw_and_parsed_mail_become_messages(mailbox: Mailbox) -> None:
    path = mailbox.channel["webhooks"]["mailgun"].removeprefix(PUBLIC)
    raw = fixture("new_mail.eml").decode()
    response = await mailbox.client.post(path, data=mailgun_form(**{"body-mime": raw}))
    assert response.status_code == 200, response.text
    assert response.json()["outcome"] == "message"
    files = {"attachment-1": ("label.pdf", b"%PDF-1.4 label", "application/pdf")}
    response = await mailbox.client.post(path, data=mailgun_form(**parsed_fields()), files=files)
    assert response.status_code == 200, response.text
    parsed = response.json()["conversation_id"]
    assert await mailbox.texts(parsed) == ["Sent through Mailgun."]
    ((label,),) = [m["attachments"] for m in await _shown(mailbox, parsed)]
    assert (label["name"], label["content_type"], label["size"]) == (
        "label.pdf",
        "application/pdf",
        14,
    )
    assert (await _served(mailbox, label["url"])).content == b"%PDF-1.4 label"
    assert len(await mailbox.conversations()) == 2


async def test_mailgun_refuses_bad_stale_and_replayed_signatures(
    client: httpx.AsyncClient, mailbox: Mailbox, sink: SmtpServer
) -> None:
    path = mailbox.channel["webhooks"]["mailgun"].removeprefix(PUBLIC)
    body = parsed_fields()
    wrong = mailgun_form("another-key", **body)
    assert_error(await client.post(path, data=wrong), 403, "invalid_signature")
    tampered = {**mailgun_form(**body), "timestamp": str(int(time.time()) + 1)}
    assert_error(await client.post(path, data=tampered), 403, "invalid_signature")
    unsigned = {k: v for k, v in mailgun_form(**body).items() if k != "signature"}
    assert_error(await client.post(path, data=unsigned), 403, "invalid_signature")
    stale = mailgun_form(age_s=600, **body)
    assert_error(await client.post(path, data=stale), 403, "stale_signature")
    signed = mailgun_form(**body)
    assert (await client.post(path, data=signed)).status_code == 200
    assert_error(await client.post(path, data=signed), 403, "replayed_signature")
    assert_error(await client.post(path, content=b"{}"), 415, "unsupported_media_type")
    assert_error(
        await client.post("/webhooks/email/nope/mailgun", data=signed), 404, "channel_not_found"
    )
    # A channel without a signing key takes no Mailgun mail at all.
    response = await client.post(
        ROOT,
        headers={"X-Api-Key": mailbox.tenant.api_key},
        json=email_channel(sink, mailgun_signing_key=None),
    )
    keyless = response.json()["channel"]["webhooks"]["mailgun"].removeprefix(PUBLIC)
    assert_error(await client.post(keyless, data=mailgun_form(**body)), 403, "invalid_signature")
    (convo,) = await mailbox.conversations()
    assert len(await mailbox.texts(convo.id)) == 1


async def test_mailgun_bad_fields_are_400_and_write_nothing(mailbox: Mailbox) -> None:
    path = mailbox.channel["webhooks"]["mailgun"].removeprefix(PUBLIC)
    for headers in ("not json", '{"From": "x"}', '[["From"]]', "[[1, 2]]"):
        body = {**parsed_fields(), "message-headers": headers}
        response = await mailbox.client.post(path, data=mailgun_form(**body))
        assert_error(response, 400, "invalid_field")
    assert await mailbox.conversations() == []
