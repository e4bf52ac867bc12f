"""Real local providers for the outbound tests: an SMTP server (aiosmtpd) and an HTTP server
speaking Twilio's Messages API, both on 127.0.0.1, each in a thread of its own so that they
answer whatever the test's event loop is doing (and serve other processes too)."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import orjson
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.server.realtime_clients import free_port

SMS_SID = "AC0123456789abcdef0123456789abcdef"
SMS_TOKEN = "sms-auth-token-1"
SMS_FROM = "+15550001111"
SMTP_USER = "mailer"
SMTP_PASSWORD = "smtp-pass-1"


@dataclass
class Certificate:
    """A self-signed certificate for 127.0.0.1, and a client context that trusts only it."""

    cert_file: Path
    key_file: Path
    client_context: ssl.SSLContext

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_certificate(folder: Path) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificate(cert_file, key_file, ssl.create_default_context(cadata=pem.decode()))


@dataclass
class Received:
    """One message as the provider got it, with when its request arrived (time.monotonic()),
    before the provider's delay: a sender killed during that delay still sent it."""

    at: float
    message: EmailMessage | None = None
    form: dict[str, str] = field(default_factory=dict)
    # The provider account an SMS was sent with (its basic-auth user).
    account_sid: str = ""


class Mailbox:
    """aiosmtpd's handler: keeps what arrives, or refuses as told."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        # "550 5.1.1 ..." refuses every recipient; "451 ..." every DATA; None accepts.
        self.refuse_rcpt: str | None = None
        self.refuse_data: str | None = None
        self.delay_s = 0.0
        self.tls_seen: list[bool] = []

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.refuse_rcpt is not None:
            return self.refuse_rcpt
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.refuse_data is not None:
            return self.refuse_data
        arrived = time.monotonic()
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        raw = envelope.original_content or b""
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        with self.lock:
            self.received.append(Received(arrived, message=parsed))
            self.tls_seen.append(server.transport.get_extra_info("ssl_object") is not None)
        return "250 OK"

    def messages(self) -> list[EmailMessage]:
        with self.lock:
            return [r.message for r in self.received if r.message is not None]


def _authenticate(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
) -> AuthResult:
    ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
        SMTP_USER.encode(),
        SMTP_PASSWORD.encode(),
    )
    # handled=False: the server answers the refusal itself (535).
    return AuthResult(success=ok, handled=False)


@dataclass
class SmtpServer:
    port: int
    mailbox: Mailbox


@contextmanager
def smtp_server(
    *,
    auth: bool = False,
    starttls: Certificate | None = None,
    implicit_tls: Certificate | None = None,
) -> Iterator[SmtpServer]:
    mailbox = Mailbox()
    port = free_port()
    kwargs: dict[str, Any] = {}
    if auth:
        kwargs.update(authenticator=_authenticate, auth_require_tls=starttls is not None)
    if starttls is not None:
        kwargs.update(tls_context=starttls.server_context(), require_starttls=True)
    controller = Controller(
        mailbox,
        hostname="127.0.0.1",
        port=port,
        ssl_context=implicit_tls.server_context() if implicit_tls else None,
        ident="liveop-test",
        **kwargs,
    )
    controller.start()
    try:
        yield SmtpServer(port, mailbox)
    finally:
        controller.stop()


class Twilio:
    """What the fake provider got, and how it answers next."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.lock = threading.Lock()
        # (status, JSON body or raw bytes) answered to the next requests instead of a 201.
        self.scripted: list[tuple[int, Any]] = []
        self.delay_s = 0.0
        # The provider accounts it knows, by SID: each one's auth token.
        self.accounts = {SMS_SID: SMS_TOKEN}
        # Phones that texted STOP to the provider: a send to them is refused with 21610.
        self.unsubscribed: set[str] = set()
        # MMS pictures, by media SID: (content type, bytes). Their Media URL answers the
        # account's credentials with a redirect to a short-lived /cdn/ URL, as Twilio does
        # with "Enforce HTTP Auth on Media URLs" on.
        self.media: dict[str, tuple[str, bytes]] = {}
        # Every GET of a picture: (path, whether it carried credentials).
        self.media_requests: list[tuple[str, bool]] = []

    def media_url(self, base: str, media_sid: str, account_sid: str = SMS_SID) -> str:
        return f"{base}/2010-04-01/Accounts/{account_sid}/Messages/MM{'0' * 32}/Media/{media_sid}"

    def bodies(self) -> list[str]:
        with self.lock:
            return [r.form["Body"] for r in self.received]


def _twilio_handler(twilio: Twilio) -> type[BaseHTTPRequestHandler]:
    def authorized(sid: str, header: str | None) -> bool:
        token = twilio.accounts.get(sid)
        expected = "Basic " + base64.b64encode(f"{sid}:{token}".encode()).decode()
        return token is not None and header == expected

    def account_of(path: str, suffix: str) -> str | None:
        prefix = "/2010-04-01/Accounts/"
        if not (path.startswith(prefix) and path.endswith(suffix)):
            return None
        sid = path[len(prefix) : -len(suffix)]
        return sid if sid in twilio.accounts else None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            """The account resource, which `liveop doctor` reads to test the credentials;
            and MMS pictures."""
            if "/Media/" in self.path or self.path.startswith("/cdn/"):
                return self._picture()
            sid = account_of(self.path, ".json")
            if sid is None:
                return self._answer(404, {"code": 20404, "message": "not found", "status": 404})
            if not authorized(sid, self.headers.get("Authorization")):
                return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            return self._answer(200, {"sid": sid, "status": "active"})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length).decode()
            sid = account_of(self.path, "/Messages.json")
            if sid is None:
                return self._answer(404, {"code": 20404, "message": "not found", "status": 404})
            if not authorized(sid, self.headers.get("Authorization")):
                return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            with twilio.lock:
                scripted = twilio.scripted.pop(0) if twilio.scripted else None
            if scripted is not None:
                return self._answer(*scripted)
            form = {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}
            to = form.get("To", "")
            if not (to.startswith("+") and to[1:].isdigit()):
                message = f"The 'To' number {to} is not a valid phone number."
                return self._answer(400, {"code": 21211, "message": message, "status": 400})
            if to in twilio.unsubscribed:
                message = "Attempt to send to unsubscribed recipient"
                return self._answer(400, {"code": 21610, "message": message, "status": 400})
            arrived = time.monotonic()
            if twilio.delay_s:
                time.sleep(twilio.delay_s)
            with twilio.lock:
                twilio.received.append(Received(arrived, form=form, account_sid=sid))
                sid = f"SM{len(twilio.received):032x}"
            return self._answer(201, {"sid": sid, "status": "queued", "to": to, "body": ""})

        def _picture(self) -> None:
            header = self.headers.get("Authorization")
            with twilio.lock:
                twilio.media_requests.append((self.path, header is not None))
            media_sid = self.path.rsplit("/", 1)[-1].split("?")[0]
            if self.path.startswith("/cdn/"):
                found = twilio.media.get(media_sid)
                if found is None:
                    return self._answer(404, {"code": 20404, "message": "not found"})
                with suppress(ConnectionError):
                    self.send_response(200)
                    self.send_header("Content-Type", found[0])
                    self.send_header("Content-Length", str(len(found[1])))
                    self.end_headers()
                    self.wfile.write(found[1])
                return None
            sid = self.path.removeprefix("/2010-04-01/Accounts/").split("/", 1)[0]
            if sid not in twilio.accounts or not authorized(sid, header):
                return self._answer(401, {"code": 20003, "message": "Authenticate", "status": 401})
            with suppress(ConnectionError):
                self.send_response(307)
                self.send_header("Location", f"/cdn/{media_sid}?Expires=14400")
                self.send_header("Content-Length", "0")
                self.end_headers()
            return None

        def _answer(self, status: int, body: Any) -> None:
            data = body if isinstance(body, bytes) else orjson.dumps(body)
            # A client killed mid-request (the multi-process test) is gone: nothing to tell it.
            with suppress(ConnectionError):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: the tests assert on what arrived instead."""

    return Handler


@dataclass
class SmsServer:
    base: str
    twilio: Twilio


@contextmanager
def sms_server() -> Iterator[SmsServer]:
    twilio = Twilio()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _twilio_handler(twilio))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield SmsServer(f"http://127.0.0.1:{server.server_address[1]}", twilio)
    finally:
        server.shutdown()
        server.server_close()
