"""Inbound email (issue 15): one pipeline for every source (raw MIME webhooks, Mailgun, IMAP).

A mail is parsed with the standard library's modern API (``email.policy.default``), kept once
per channel under its Message-ID (the digest of its bytes when it has none), classified (a
customer's message; automatic mail, a bounce or our own mail, which never open or reopen a
conversation and are never answered; or refused, with the reason), threaded, and handed to the
engine as the customer's new text only. The original stays for operators
(``GET /api/v1/operator/message/{id}/original``). Attachments are stored (an image that
decodes in the image store, any other file in the file store, each within its size limit)
and travel on the message for operators; the kept HTML's ``cid:`` images point at the stored
copies.

Threading, in this order (docs/api.md): a ``reply+TOKEN@`` recipient we issued; then
``In-Reply-To``/``References`` against Message-IDs the channel sent or received; then the
``[#TAG]`` in our subjects; else a new conversation. Headers and tags are public, so they
thread only mail from the conversation's own contact: a newsletter answered by many people
does not merge them. The token is 128 random bits, so it threads whoever holds it.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage, Message, MIMEPart
from html import escape
from typing import Literal
from urllib.parse import unquote

import nh3
import quotequail
from inscriptis import get_text
from mailparser_reply import EmailReplyParser

from server.channels import public_url, settings_of
from server.contacts import normalized
from server.conversations import USER_INFO_LIMITS, ConversationEngine, Origin, check_user_info
from server.errors import Invalid, NotFound, TooLarge, UnsupportedMediaType
from server.text import is_email
from server.uploads import FILES, SERVE_ROOT, FileStore, ImageStore
from storage.base import Store
from storage.models import (
    Attachment,
    Channel,
    EmailOutcome,
    EmailRecord,
    EmailThread,
    Identity,
    UserInfo,
)

# Beyond this a mail is refused whole: a 25 MB message is what the big providers accept.
MAX_MAIL_BYTES = 25 * 1024 * 1024
# A Message-ID longer than this is no id any mailer writes; such a mail is keyed by its bytes.
MESSAGE_ID_MAX = 250
# The reply+TOKEN local part: 32 lower-case hex digits (mail systems may fold case).
TOKEN_BYTES = 16
_TOKEN = re.compile(r"^[^@+]+\+([0-9a-f]{32})@", re.IGNORECASE)
# Our subject tag: [#TAG], 8 characters of Crockford-free base32, lower-cased on lookup.
TAG_BYTES = 5
_TAG = re.compile(r"\[#([a-z2-7]{8})\]", re.IGNORECASE)
_ANGLE_IDS = re.compile(r"<([^<>\s]{1,250})>")
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd|wg|tr)(\[\d+\])?\s*:\s*)+", re.IGNORECASE)
# The languages whose reply headers ("On ... wrote:") the quote stripper knows.
_LANGUAGES = ["en", "de", "fr", "es", "it", "nl", "pl", "sv", "da", "cs", "ja", "ko", "zh"]
# RFC 3834 and what mailers use instead: mail that any of these mark is automatic.
_AUTOMATIC_PRECEDENCE = frozenset({"bulk", "junk", "list"})
_DAEMONS = frozenset({"mailer-daemon", "postmaster"})
SUBJECT_MAX = 200
NAME_MAX = USER_INFO_LIMITS["fname"]
NO_TEXT = "[The customer sent an email with no text.]"
# One attachment beyond this is listed but not kept; the mail itself is at most 25 MB.
MAX_ATTACHMENT_BYTES = 10 * 1024 * 1024
# Attachments kept of one mail; the rest are listed, not stored.
MAX_ATTACHMENTS = 20
ATTACHMENT_NAME_MAX = 100
# What the kept HTML's inline images are found by, once nh3 has written its attributes.
_CID_SRC = re.compile(r'src="cid:([^"]*)"', re.IGNORECASE)
# nh3's usual URL schemes, and cid: so inline images survive until they point at our copies.
_HTML_SCHEMES = nh3.ALLOWED_URL_SCHEMES | {"cid"}

Kind = Literal["message", "automatic", "bounce"]


class Refused(Exception):
    """A mail that cannot become a message; recorded with the reason, never retried."""


@dataclass(frozen=True, slots=True)
class Parsed:
    message_id: str | None
    sender: str
    sender_name: str
    recipients: tuple[str, ...]
    subject: str
    parents: tuple[str, ...]
    kind: Kind
    # Addresses a delivery-status report says failed, with the reason.
    failed: tuple[tuple[str, str], ...]
    text: str
    html: str | None
    parts: tuple[Part, ...]


@dataclass(frozen=True, slots=True)
class Part:
    """An attachment as the mail carries it; ``cid`` is its Content-ID, without angle brackets."""

    name: str
    content_type: str
    data: bytes
    cid: str | None


@dataclass(frozen=True, slots=True)
class Ingested:
    outcome: EmailOutcome
    convo_id: str | None
    duplicate: bool
    reason: str | None = None


def normalised(address: str) -> str:
    return address.strip().lower()


def message_ids(value: str | None) -> list[str]:
    return _ANGLE_IDS.findall(value or "")


def _header(message: Message, name: str) -> str:
    """A header as text; a header the parser cannot read is as good as absent."""
    try:
        value = message.get(name)
    except (ValueError, LookupError, TypeError, IndexError, AttributeError):
        return ""
    return str(value or "").strip()


def _addresses(message: EmailMessage, name: str) -> list[Address]:
    try:
        header = message.get(name)
        found = list(getattr(header, "addresses", ()))
    except (ValueError, LookupError, TypeError, IndexError, AttributeError):
        return []
    return [a for a in found if is_email(a.addr_spec)]


def _content(part: Message) -> str:
    """A text part's content; an unknown or wrong charset is read as UTF-8 with
    replacements rather than refused."""
    try:
        found = part.get_content()  # type: ignore[attr-defined]
        if isinstance(found, str):
            return found
    except (LookupError, UnicodeError, ValueError, AssertionError):
        pass
    raw = part.get_payload(decode=True)
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else ""


def _body(message: EmailMessage, subtype: str) -> str | None:
    try:
        part = message.get_body(preferencelist=(subtype,))
    except (ValueError, LookupError, TypeError, AttributeError):
        return None
    return _content(part) if part is not None else None


def _kind(message: EmailMessage, sender: str) -> Kind:
    report = message.get_content_type() == "multipart/report"
    report_type = str(message.get_param("report-type", "") or "")
    if report and report_type.lower() == "delivery-status":
        return "bounce"
    if sender.split("@")[0].lower() in _DAEMONS and report:
        return "bounce"
    submitted = _header(message, "Auto-Submitted").lower()
    if (
        (submitted and submitted != "no")
        or _header(message, "X-Autoreply")
        or _header(message, "X-Autorespond")
        or _header(message, "Precedence").lower() in _AUTOMATIC_PRECEDENCE
        or _header(message, "List-Id")
        or _header(message, "X-Loop")
        or _header(message, "Return-Path") == "<>"
        or sender.split("@")[0].lower() in _DAEMONS
    ):
        return "automatic"
    return "message"


def _failed_recipients(message: EmailMessage) -> tuple[tuple[str, str], ...]:
    """The Final-Recipient of each failed block of a delivery-status report."""
    failed: list[tuple[str, str]] = []
    for part in message.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        payload = part.get_payload()
        blocks = payload if isinstance(payload, list) else []
        for block in (b for b in blocks if isinstance(b, Message)):
            if _header(block, "Action").lower() != "failed":
                continue
            recipient = _header(block, "Final-Recipient").rpartition(";")[2].strip()
            if is_email(recipient):
                status = _header(block, "Diagnostic-Code") or _header(block, "Status")
                failed.append((normalised(recipient), status[:300] or "failed"))
    return tuple(failed)


def _parts(message: EmailMessage) -> tuple[Part, ...]:
    """The attachments, and the images an HTML body shows inline (the other parts of its
    multipart/related, which iter_attachments leaves inside it)."""
    related = message.get_body(preferencelist=("related",))
    parts: list[MIMEPart] = [*message.iter_attachments()]
    if related is not None and related is not message:
        parts[:0] = related.iter_attachments()
    found = []
    for part in parts:
        data = _payload(part)
        name = (part.get_filename() or "unnamed").replace("\n", " ")[:ATTACHMENT_NAME_MAX]
        cid = _header(part, "Content-ID").strip().strip("<>")
        found.append(Part(name, part.get_content_type(), data, cid or None))
    return tuple(found)


def _payload(part: MIMEPart) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    # A forwarded mail (message/rfc822) has no payload of its own: keep the mail, unless its
    # headers cannot be written back out (then it is listed with no bytes).
    try:
        return b"".join(p.as_bytes() for p in part.iter_parts())
    except (ValueError, LookupError, TypeError):
        return b""


def _inline(html: str, urls: dict[str, str]) -> str:
    """The kept HTML with each ``cid:`` image we stored pointing at its copy."""

    def swap(found: re.Match[str]) -> str:
        url = urls.get(unquote(found.group(1)))
        return f'src="{escape(url)}"' if url else found.group(0)

    return _CID_SRC.sub(swap, html)


def new_text(text: str | None, html: str | None) -> str:
    """The customer's new words: the plain part without its quoted history, or the HTML part's
    unquoted head as text."""
    if text is not None and text.strip():
        reply = EmailReplyParser(languages=_LANGUAGES).parse_reply(text=text)
        return (reply or text).strip()
    if html:
        pieces = quotequail.quote_html(html, quote_intro_line=True)
        fresh = "".join(piece for is_new, piece in pieces if is_new) or html
        return str(get_text(fresh)).strip()
    return ""


def parse(raw: bytes) -> Parsed:
    """Raises Refused when the mail has no usable sender."""
    if b"\x00" in raw:
        raise Refused("the mail contains NUL bytes")
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    senders = _addresses(message, "From")
    if not senders:
        raise Refused("the mail has no valid From address")
    sender = normalised(senders[0].addr_spec)
    ids = message_ids(_header(message, "Message-ID"))
    recipients = [
        normalised(a.addr_spec)
        for name in ("To", "Cc", "Delivered-To", "X-Original-To", "Envelope-To")
        for a in _addresses(message, name)
    ]
    parents = [*message_ids(_header(message, "In-Reply-To"))]
    parents += reversed(message_ids(_header(message, "References")))
    html = _body(message, "html")
    kind = _kind(message, sender)
    text = (new_text(_body(message, "plain"), html) if kind == "message" else "") or NO_TEXT
    return Parsed(
        message_id=ids[0] if ids and len(ids[0]) <= MESSAGE_ID_MAX else None,
        sender=sender,
        sender_name=senders[0].display_name.strip(),
        recipients=tuple(recipients),
        subject=_header(message, "Subject").replace("\n", " ")[:SUBJECT_MAX],
        parents=tuple(dict.fromkeys(parents)),
        kind=kind,
        failed=_failed_recipients(message) if kind == "bounce" else (),
        text=text.replace("\x00", ""),
        html=nh3.clean(html, url_schemes=_HTML_SCHEMES) if html else None,
        parts=_parts(message) if kind == "message" else (),
    )


def _contact(parsed: Parsed) -> UserInfo:
    """The sender as the conversation's contact. The display name is kept whole ("Doe, Jane"
    splits into no first and last name), or dropped when the engine would refuse it."""
    named = UserInfo(fname=parsed.sender_name[:NAME_MAX], email=parsed.sender)
    try:
        check_user_info(named)
    except Invalid:
        return UserInfo(email=parsed.sender)
    return named


def bare_subject(subject: str) -> str:
    """The subject without reply prefixes and our tag: what a new thread is called."""
    return _TAG.sub("", _REPLY_PREFIX.sub("", subject)).strip()


def new_thread(channel: Channel, convo_id: str, customer: str, subject: str) -> EmailThread:
    return EmailThread(
        convo_id=convo_id,
        account_id=channel.account_id,
        channel_id=channel.id,
        token=secrets.token_hex(TOKEN_BYTES),
        tag=base64.b32encode(secrets.token_bytes(TAG_BYTES)).decode("ascii").lower(),
        customer=customer,
        subject=bare_subject(subject) or "Your message",
        created=time.time(),
    )


def source_key(parsed_id: str | None, raw: bytes) -> str:
    """What names this mail: its Message-ID, else the digest of its bytes. Not the IMAP UID:
    a UIDVALIDITY change voids every UID, and the mail fetched again must be known again
    (a retried webhook, too, sends the same bytes)."""
    if parsed_id is not None:
        return f"mid:{parsed_id}"
    return f"sha256:{hashlib.sha256(raw).hexdigest()}"


class EmailIngest:
    def __init__(
        self,
        store: Store,
        engine: ConversationEngine,
        max_message_chars: int,
        images: ImageStore,
        files: FileStore,
    ) -> None:
        self._store = store
        self._engine = engine
        self._max_chars = max_message_chars
        self._images = images
        self._files = files

    async def ingest(self, channel: Channel, raw: bytes) -> Ingested:
        """Takes one mail into the channel; the same mail again changes nothing."""
        if len(raw) > MAX_MAIL_BYTES:
            too_large = f"the mail is larger than {MAX_MAIL_BYTES} bytes"
            return await self._refused(channel, raw, too_large, keep=False)
        try:
            parsed = parse(raw)
        except Refused as exc:
            return await self._refused(channel, raw, str(exc))
        key = source_key(parsed.message_id, raw)
        seen = await self._store.get_email(channel.account_id, channel.id, key)
        if seen is not None:
            return Ingested(seen.outcome, seen.convo_id, True, seen.reason)
        outcome, reason = self._classify(channel, parsed)
        if outcome == "bounce":
            for address, why in parsed.failed:
                await self._store.mark_undeliverable(channel.account_id, address, why, time.time())
        if outcome != "message":
            record = self._record(channel, key, parsed, raw, outcome, reason, None, None)
            kept = await self._store.record_email(record, None)
            return Ingested(outcome, None, not kept, reason)
        return await self._message(channel, key, parsed, raw)

    async def original(self, account_id: str, msg_id: str) -> EmailRecord:
        """The mail a message of the account came from or went out as."""
        found = await self._store.email_of_message(account_id, msg_id)
        if found is None or found.original is None:
            raise NotFound("original_not_found", "this message did not come from an email")
        return found

    @staticmethod
    def _classify(channel: Channel, parsed: Parsed) -> tuple[EmailOutcome, str | None]:
        if parsed.sender == normalised(settings_of(channel)["address"]):
            return "own", "the mail is from the channel's own address"
        if parsed.kind == "bounce":
            return "bounce", "a delivery-status report"
        if parsed.kind == "automatic":
            return "automatic", "an automatic reply or bulk mail"
        return "message", None

    async def _thread(self, channel: Channel, parsed: Parsed) -> EmailThread | None:
        for recipient in parsed.recipients:
            token = _TOKEN.match(recipient)
            if token is None:
                continue
            thread = await self._store.email_thread_by_token(token.group(1).lower())
            # A token of another channel or account is as good as a forged one.
            if thread is not None and (thread.account_id, thread.channel_id) == (
                channel.account_id,
                channel.id,
            ):
                return thread
        thread = await self._store.email_thread_by_message_ids(
            channel.account_id, channel.id, parsed.parents
        )
        if thread is None and (tag := _TAG.search(parsed.subject)):
            thread = await self._store.email_thread_by_tag(
                channel.account_id, channel.id, tag.group(1).lower()
            )
        return thread if thread is not None and thread.customer == parsed.sender else None

    async def _stored(self, channel: Channel, part: Part, index: int) -> Attachment:
        """``part`` kept: an image that decodes where pictures live (shown inline), any other
        file in the file store (for download); too large or past the count, listed only."""
        url = None
        base = f"{public_url(channel)}{SERVE_ROOT}/{channel.account_id}"
        if index < MAX_ATTACHMENTS:
            try:
                url = f"{base}/{await self._images.save(channel.account_id, part.data)}"
            except (UnsupportedMediaType, TooLarge):
                try:
                    url = f"{base}/{FILES}/{await self._files.save(channel.account_id, part.data)}"
                except TooLarge:
                    url = None
        return Attachment(part.name, part.content_type, len(part.data), url)

    async def _message(self, channel: Channel, key: str, parsed: Parsed, raw: bytes) -> Ingested:
        thread = await self._thread(channel, parsed)
        attachments = tuple(
            [await self._stored(channel, part, i) for i, part in enumerate(parsed.parts)]
        )
        if parsed.html is not None:
            urls = zip(parsed.parts, attachments, strict=True)
            inline = {p.cid: a.url for p, a in urls if p.cid and a.url}
            parsed = dataclasses.replace(parsed, html=_inline(parsed.html, inline))
        text = parsed.text
        if len(text) > self._max_chars:
            text = text[: self._max_chars - 1] + "…"
        committed = await self._engine.send(
            channel.account_id,
            convo_id=thread.convo_id if thread is not None else None,
            text=text,
            user_info=_contact(parsed) if thread is None else None,
            origin=Origin(
                source_app="emailbroadcast",
                channel_id=channel.id,
                identity=normalized(Identity("email", parsed.sender)),
            ),
            client_msg_id="email:" + hashlib.sha256(f"{channel.id}:{key}".encode()).hexdigest(),
            account_key=True,
            attachments=attachments,
            # The new text only (quotes stripped): "5" under the quoted question is a score.
            may_answer_rating=not attachments,
        )
        convo_id = committed.conversation.id
        message = committed.messages[0]
        record = self._record(channel, key, parsed, raw, "message", None, convo_id, message.id)
        fresh = (
            new_thread(channel, convo_id, parsed.sender, parsed.subject) if thread is None else None
        )
        kept = await self._store.record_email(record, fresh)
        await self._store.record_channel_inbound(channel.account_id, channel.id, time.time())
        return Ingested("message", convo_id, committed.duplicate and not kept)

    async def _refused(
        self, channel: Channel, raw: bytes, reason: str, *, keep: bool = True
    ) -> Ingested:
        """Records why the mail is no message; ``keep``: with its bytes, for a person to read."""
        key = source_key(None, raw)
        original = base64.b64encode(raw).decode("ascii") if keep else None
        record = EmailRecord(
            channel.account_id, channel.id, key, "in", None, "refused", reason, "", None, None,
            original, None, time.time(),
        )  # fmt: skip
        kept = await self._store.record_email(record, None)
        return Ingested("refused", None, not kept, reason)

    @staticmethod
    def _record(
        channel: Channel,
        key: str,
        parsed: Parsed,
        raw: bytes,
        outcome: EmailOutcome,
        reason: str | None,
        convo_id: str | None,
        msg_id: str | None,
    ) -> EmailRecord:
        return EmailRecord(
            channel.account_id, channel.id, key, "in", parsed.message_id, outcome, reason,
            parsed.sender, convo_id, msg_id, base64.b64encode(raw).decode("ascii"), parsed.html,
            time.time(),
        )  # fmt: skip
