"""Email replies over SMTP.

``LIVEOP_SMTP_URL`` says how to reach the server: ``smtps://`` is TLS from the first byte
(port 465 unless given), ``smtp://...?starttls=1`` upgrades with STARTTLS and refuses to go on
without it (port 587), plain ``smtp://`` sends in the clear (port 25: a relay on a trusted
network). A user and password in the URL log in with AUTH.

Every message carries a Message-ID made from the message's own id, so a message sent again
after a worker died mid-delivery is recognisably the same message.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, parseaddr
from urllib.parse import parse_qsl, unquote, urlsplit

import aiosmtplib

from server.adapters.delivery import DeliveryFailed
from storage.outbound import OutboundJob

_DEFAULT_PORTS = {"smtps": 465, "starttls": 587, "smtp": 25}
_FLAGS = {"1": True, "true": True, "yes": True, "0": False, "false": False, "no": False}


@dataclass(frozen=True, slots=True)
class SmtpServer:
    host: str
    port: int
    # TLS from the first byte (smtps://), or upgraded by STARTTLS; neither means plain text.
    implicit_tls: bool
    starttls: bool
    username: str | None
    password: str | None


def parse_smtp_url(url: str) -> SmtpServer:
    """Raises ValueError naming what is wrong with ``url``."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps"):
        raise ValueError(f"an SMTP URL starts with smtp:// or smtps://, not {url.split(':')[0]!r}")
    if not parts.hostname:
        raise ValueError("the SMTP URL names no host")
    starttls = False
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "starttls" or value.lower() not in _FLAGS:
            raise ValueError(f"the SMTP URL takes only ?starttls=1 or 0, not {name}={value}")
        starttls = _FLAGS[value.lower()]
    if starttls and parts.scheme == "smtps":
        raise ValueError("smtps:// is already TLS: starttls=1 applies to smtp:// only")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("the SMTP URL's port is not a number between 0 and 65535") from None
    default_port = _DEFAULT_PORTS["starttls" if starttls else parts.scheme]
    return SmtpServer(
        host=parts.hostname,
        port=port or default_port,
        implicit_tls=parts.scheme == "smtps",
        starttls=starttls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
    )


def parse_sender(sender: str) -> tuple[str, str]:
    """``LIVEOP_EMAIL_FROM`` as (display name, address); raises ValueError when it holds no
    address."""
    name, address = parseaddr(sender)
    if "@" not in address or not address.split("@", 1)[1]:
        raise ValueError(f"LIVEOP_EMAIL_FROM must be an email address, not {sender!r}")
    return name, address


@dataclass(frozen=True, slots=True)
class Threading:
    """What makes the customer's mail client thread a reply, and their answer find its
    conversation: the subject with our tag, our reply+TOKEN address, the customer's last
    mail and every mail of the conversation, oldest first (Message-IDs without brackets)."""

    subject: str
    reply_to: str
    in_reply_to: str | None
    references: tuple[str, ...]


def message_id(job: OutboundJob, domain: str) -> str:
    """The same for every attempt at one message: ids are url-safe base64, valid atoms."""
    return f"<{job.message_id}.liveop@{domain}>"


class SmtpEmail:
    def __init__(
        self,
        url: str,
        sender: str,
        *,
        timeout_s: float,
        tls_context: ssl.SSLContext | None = None,
    ) -> None:
        self._server = parse_smtp_url(url)
        self._sender_name, self._sender = parse_sender(sender)
        self._domain = self._sender.split("@", 1)[1]
        self._timeout_s = timeout_s
        # None: the system's trusted CAs. Tests (or a private CA) pass their own.
        self._tls_context = tls_context

    def compose(self, job: OutboundJob, threading: Threading | None = None) -> EmailMessage:
        if not job.contact.email:
            raise DeliveryFailed("the conversation has no email address", retryable=False)
        # Without a name of its own, the From line says who wrote the reply, and for whom.
        author = job.account_name
        if job.operator_name:
            author = f"{job.operator_name} ({job.account_name})"
        customer = f"{job.contact.fname} {job.contact.lname}".strip()
        message = EmailMessage()
        try:
            message["From"] = formataddr((self._sender_name or author, self._sender))
            message["To"] = formataddr((customer, job.contact.email))
            # One subject per account, so mail clients keep the replies in one thread.
            message["Subject"] = f"Your conversation with {job.account_name}"
            message["Date"] = format_datetime(datetime.fromtimestamp(job.created, UTC))
            message["Message-ID"] = message_id(job, self._domain)
            if threading is not None:
                message.replace_header("Subject", threading.subject)
                message["Reply-To"] = threading.reply_to
                if threading.in_reply_to:
                    message["In-Reply-To"] = f"<{threading.in_reply_to}>"
                if threading.references:
                    message["References"] = " ".join(f"<{r}>" for r in threading.references)
            if job.sender in ("bot", "system"):
                # RFC 3834: nobody's auto-responder answers this, so no mail loop starts here.
                message["Auto-Submitted"] = "auto-generated"
                message["X-Auto-Response-Suppress"] = "All"
            message.set_content(job.text)
        except ValueError as exc:  # a header the email policy refuses: no retry fixes it
            raise DeliveryFailed(f"cannot compose the email: {exc}", retryable=False) from exc
        return message

    async def send(self, job: OutboundJob) -> str:
        return await self.deliver(self.compose(job))

    async def deliver(self, message: EmailMessage) -> str:
        """Sends a composed message; its Message-ID is the provider id."""
        server = self._server
        try:
            await aiosmtplib.send(
                message,
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.implicit_tls,
                start_tls=server.starttls,
                tls_context=self._tls_context,
                timeout=self._timeout_s,
            )
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _failure(exc) from exc
        return str(message["Message-ID"])

    async def check(self) -> None:
        """Connects and logs in as a send would, then quits: what an admin's test proves.
        DeliveryFailed says why not."""
        server = self._server
        client = aiosmtplib.SMTP(
            hostname=server.host,
            port=server.port,
            username=server.username,
            password=server.password,
            use_tls=server.implicit_tls,
            start_tls=server.starttls,
            tls_context=self._tls_context,
            timeout=self._timeout_s,
        )
        try:
            await client.connect()
            await client.quit()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _failure(exc) from exc
        finally:
            client.close()

    async def aclose(self) -> None:
        """Nothing held open: each message uses a connection of its own."""


def _failure(exc: aiosmtplib.SMTPException | OSError) -> DeliveryFailed:
    """What an SMTP error means for the message: its reason, and whether to try again."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        refusals = "; ".join(f"{r.code} {r.message}" for r in exc.recipients)
        retryable = any(r.code < 500 for r in exc.recipients)
        return DeliveryFailed(f"recipient refused: {refusals}", retryable=retryable)
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        # SMTP's own classes: 4xx is "try again later", 5xx is final.
        return DeliveryFailed(f"SMTP {exc.code} {exc.message}", retryable=exc.code < 500)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        # The server lacks what the URL demands (STARTTLS, AUTH): asking again won't help.
        return DeliveryFailed(f"SMTP server: {exc.message}", retryable=False)
    # Timeouts, refused or dropped connections, TLS handshakes that failed.
    return DeliveryFailed(f"SMTP server unreachable: {exc}", retryable=True)
