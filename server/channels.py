"""An account's channels: where conversations come in and replies go out (issue 14).

Validates what the admin surfaces hand in, seals the credentials with the installation's
encryption keys (server/crypto.py) and makes one Store call. Credentials are write-only: no
method here returns them except ``credentials``, which the senders and the webhook checks
use, and nothing renders or logs them.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from server.adapters.delivery import DeliveryFailed
from server.adapters.email import SmtpEmail, parse_smtp_url
from server.adapters.imap import ImapFailed, check_mailbox, parse_imap_url
from server.adapters.sms import TWILIO_URL, TwilioSms
from server.crypto import Sealer, UnreadableSecret
from server.directory import NAME_MAX, _name
from server.errors import Conflict, Invalid, NotFound, at_most
from server.text import has_control_characters, is_email
from storage.base import ChannelPatch, DuplicateKey, Store
from storage.models import Channel, ChannelKind

# 24 random bytes (192 bits) as url-safe base64: the key is all that names a channel in its
# webhook URLs, so it must not be guessable; the signature check is the second lock.
KEY_BYTES = 24
# The kinds an admin can create: web chat is a site's (admin/sites), not a channel row.
CREATABLE_KINDS: tuple[ChannelKind, ...] = ("sms", "email", "bot")
# Twilio's ids: "AC" or "MG" and 32 hex digits.
_ACCOUNT_SID = re.compile(r"^AC[0-9a-fA-F]{32}$")
_MESSAGING_SERVICE_SID = re.compile(r"^MG[0-9a-fA-F]{32}$")
# E.164: a plus, a country code that does not start with 0, at most 15 digits in all.
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# An auth token is 32 hex characters at Twilio; other providers' may be longer, never huge.
TOKEN_MAX = 256
URL_MAX = 500
# How long a test message may wait for the provider: an admin is watching the button.
TEST_SEND_TIMEOUT_S = 10.0
TEST_MESSAGE = "Test message from Live Operator Chat: this channel can send."
UNREADABLE = "the channel's credentials open with none of LIVEOP_ENCRYPTION_KEYS"
# Mailgun's signing keys are 32 to 50 characters; room for a provider's longer one.
SIGNING_KEY_MAX = 256
# How far back a mailbox's first connection imports, in days; a year is plenty.
BACKFILL_DAYS_MAX = 365
# Channels an account may have (server.errors.at_most): every SMS number and mailbox it
# answers, with room; each email channel with IMAP is a connection a process keeps open.
CHANNELS_MAX = 100
# What each kind's settings are called, for refusing one kind's field on another kind.
_FIELDS: dict[ChannelKind, tuple[str, ...]] = {
    "sms": ("account_sid", "auth_token", "from", "api_url", "after_resolved", "ask_rating"),
    "email": (
        "address",
        "smtp_url",
        "imap_url",
        "imap_backfill_days",
        "mailgun_signing_key",
        "ask_rating",
    ),
    # A bot platform's channel has a name and a public URL; setWebhook gives the rest.
    "bot": (),
}
# What a customer's SMS after their conversation was resolved does: reopen it (the default:
# the customer's phone shows one thread, and the operator sees what was said before) or start
# a new conversation (for teams that count each resolved conversation as one case).
AFTER_RESOLVED = ("reopen", "new")


@dataclass(frozen=True, slots=True)
class SmsCredentials:
    account_sid: str
    auth_token: str
    sender: str
    api_url: str


def settings_of(channel: Channel) -> dict[str, Any]:
    """The channel's public settings."""
    found: dict[str, Any] = json.loads(channel.settings)
    return found


def public_url(channel: Channel) -> str:
    """The base URL the provider calls this channel at (what its signatures cover)."""
    found: str = settings_of(channel)["public_url"]
    return found


@dataclass(frozen=True, slots=True)
class EmailCredentials:
    """An email channel's settings with its secrets put back: the URLs as the admin gave them."""

    address: str
    smtp_url: str
    imap_url: str | None
    mailgun_signing_key: str | None


def after_resolved(channel: Channel) -> str:
    """The channel's ``after_resolved`` (channels created before the setting reopen)."""
    found: str = settings_of(channel).get("after_resolved", AFTER_RESOLVED[0])
    return found


def asks_rating(channel: Channel) -> bool:
    """Whether the channel's resolved conversations get the rating question as a message
    (issue 19). Off unless an admin turns it on: each question is a text the account pays
    for, or a mail the customer did not ask for, and channels from before the setting must
    not start sending either on an upgrade."""
    return bool(settings_of(channel).get("ask_rating", False))


def webhooks(channel: Channel) -> dict[str, str]:
    """The URLs to give the provider: the public base URL, which the signature covers."""
    if channel.kind == "email":
        mime = f"{public_url(channel)}/webhooks/email/{channel.key}"
        return {"mime": mime, "mailgun": f"{mime}/mailgun"}
    base = f"{public_url(channel)}/webhooks/twilio/{channel.key}"
    return {"sms": f"{base}/sms", "status": f"{base}/status"}


def _without_password(url: str) -> tuple[str, str | None]:
    """``url`` with the password taken out of its user part, and the password (unquoted)."""
    parts = urlsplit(url)
    userinfo, at, hostport = parts.netloc.rpartition("@")
    if not at or ":" not in userinfo:
        return url, None
    user, _, password = userinfo.partition(":")
    return urlunsplit(parts._replace(netloc=f"{user}@{hostport}")), unquote(password)


def _with_password(url: str, password: str | None) -> str:
    if password is None:
        return url
    parts = urlsplit(url)
    user, _, hostport = parts.netloc.rpartition("@")
    netloc = f"{user}:{quote(password, safe='')}@{hostport}"
    return urlunsplit(parts._replace(netloc=netloc))


def _visible(value: str, field: str, limit: int) -> str:
    if not 0 < len(value) <= limit or has_control_characters(value) or " " in value:
        raise Invalid("invalid_field", f"{field} must be 1 to {limit} visible characters")
    return value


def _address(value: str) -> str:
    value = value.strip()
    if not is_email(value):
        raise Invalid("invalid_field", "address must be an email address")
    local, _, domain = value.rpartition("@")
    return f"{local}@{domain.lower()}"


def _smtp_url(value: str) -> tuple[str, str | None]:
    _visible(value, "smtp_url", URL_MAX)
    try:
        parse_smtp_url(value)
    except ValueError as exc:
        raise Invalid("invalid_field", f"smtp_url: {exc}") from None
    return _without_password(value)


def _imap_url(value: str) -> tuple[str, str | None]:
    _visible(value, "imap_url", URL_MAX)
    try:
        parse_imap_url(value)
    except ValueError as exc:
        raise Invalid("invalid_field", f"imap_url: {exc}") from None
    return _without_password(value)


def _backfill_days(value: str) -> int:
    if not value.isascii() or not value.isdigit() or int(value) > BACKFILL_DAYS_MAX:
        raise Invalid(
            "invalid_field",
            f"imap_backfill_days must be a whole number from 0 to {BACKFILL_DAYS_MAX}",
        )
    return int(value)


def _other_kinds_fields(kind: ChannelKind, given: Mapping[str, object]) -> None:
    for name, value in given.items():
        if value is not None and name not in _FIELDS[kind]:
            raise Invalid("invalid_field", f"{name} does not apply to a {kind} channel")


def _required(value: str | None, name: str) -> str:
    if not value:
        raise Invalid("missing_field", f"{name} is required")
    return value


def operator_api_url(channel: Channel) -> str:
    """A bot channel's ``{apiUrl}`` (seed 004): what the bot platform is configured with. Its
    key is the only credential the contract has, so rotating the key revokes it."""
    return f"{public_url(channel)}/operator-api/{channel.key}"


def _url(value: str, field: str) -> str:
    value = value.strip()
    parts = urlsplit(value)
    if (
        len(value) > URL_MAX
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.query
        or parts.fragment
        or parts.username
        or has_control_characters(value)
        or " " in value
    ):
        raise Invalid("invalid_field", f"{field} must be an http:// or https:// URL without query")
    return value.rstrip("/")


def _webhook_url(value: str) -> str:
    """A bot platform's webhook: an http(s) URL, query allowed (platforms put keys there)."""
    parts = urlsplit(value)
    if (
        len(value) > URL_MAX
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.fragment
        or has_control_characters(value)
        or " " in value
    ):
        raise Invalid(
            "invalid_field",
            f"url must be an http:// or https:// URL of {URL_MAX} characters at most",
        )
    return value


def _account_sid(value: str) -> str:
    if not _ACCOUNT_SID.fullmatch(value):
        raise Invalid("invalid_field", "account_sid must be AC followed by 32 hex digits")
    return value


def _sender(value: str) -> str:
    value = value.strip()
    if not (_E164.fullmatch(value) or _MESSAGING_SERVICE_SID.fullmatch(value)):
        raise Invalid(
            "invalid_field",
            "from must be a phone number in E.164 (+15550100100) or a messaging service SID",
        )
    return value


def _after_resolved(value: str) -> str:
    if value not in AFTER_RESOLVED:
        raise Invalid("invalid_field", f"after_resolved must be one of {', '.join(AFTER_RESOLVED)}")
    return value


def _token(value: str) -> str:
    if not 0 < len(value) <= TOKEN_MAX or has_control_characters(value) or " " in value:
        raise Invalid("invalid_field", f"auth_token must be 1 to {TOKEN_MAX} visible characters")
    return value


class Channels:
    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def list(self, account_id: str) -> list[Channel]:
        return await self._store.list_channels(account_id)

    async def get(self, account_id: str, channel_id: int) -> Channel:
        channel = await self._store.get_channel(account_id, channel_id)
        if channel is None:
            raise NotFound("channel_not_found", f"no channel {channel_id}")
        return channel

    async def by_key(self, key: str) -> Channel:
        """The channel a webhook names; a deleted or unknown key is 404."""
        channel = await self._store.get_channel_by_key(key) if len(key) <= NAME_MAX else None
        if channel is None:
            raise NotFound("channel_not_found", "no such channel")
        return channel

    def credentials(self, channel: Channel) -> SmsCredentials:
        """The SMS channel's sending credentials, opened with the installation's keys."""
        opened = self._sealer.open(channel.credentials)
        public = settings_of(channel)
        return SmsCredentials(
            public["account_sid"], opened["auth_token"], public["from"], public["api_url"]
        )

    def sms_adapter(self, channel: Channel, timeout_s: float) -> TwilioSms:
        """A sender with the channel's number and credentials; the caller closes it."""
        credentials = self.credentials(channel)
        return TwilioSms(
            account_sid=credentials.account_sid,
            auth_token=credentials.auth_token,
            sender=credentials.sender,
            timeout_s=timeout_s,
            base_url=credentials.api_url,
        )

    async def test(
        self, account_id: str, channel_id: int, to: str | None, text: str | None = None
    ) -> dict[str, str]:
        """An admin's test of a channel: a test SMS to ``to`` (``{"sid"}``), or, for email,
        logging in to its SMTP server and its IMAP mailbox (``{"smtp", "imap"}``)."""
        channel = await self.get(account_id, channel_id)
        if channel.kind == "email":
            return await self._check_email(channel)
        if channel.kind == "bot":
            raise Conflict("channel_send_failed", "a bot channel sends no test message")
        return {"sid": await self.send_test(account_id, channel_id, _required(to, "to"), text)}

    async def _check_email(self, channel: Channel) -> dict[str, str]:
        """Each configured server, as its follower and its sender would reach it; the first
        refusal is ``409 channel_test_failed`` with the server's words, and the outcome goes
        on the health line."""
        try:
            credentials = self.email_credentials(channel)
        except UnreadableSecret:
            raise Conflict("channel_test_failed", UNREADABLE) from None
        result = {"smtp": "ok", "imap": "not set"}
        try:
            smtp = SmtpEmail(
                credentials.smtp_url, credentials.address, timeout_s=TEST_SEND_TIMEOUT_S
            )
            await smtp.check()
            if credentials.imap_url is not None:
                await check_mailbox(credentials.imap_url, TEST_SEND_TIMEOUT_S)
                result["imap"] = "ok"
        except DeliveryFailed as exc:
            await self._tested(channel, exc.reason)
        except (ImapFailed, OSError, TimeoutError) as exc:
            await self._tested(channel, f"IMAP: {exc or type(exc).__name__}")
        await self._store.record_channel_outbound(channel.account_id, channel.id, time.time(), None)
        return result

    async def _tested(self, channel: Channel, reason: str) -> None:
        await self._store.record_channel_outbound(
            channel.account_id, channel.id, time.time(), reason[:300]
        )
        raise Conflict("channel_test_failed", reason)

    async def send_test(
        self, account_id: str, channel_id: int, to: str, text: str | None = None
    ) -> str:
        """Sends a test SMS from the channel and returns the provider's id for it; the
        outcome goes on the health line. A refusal is ``409 channel_send_failed`` with the
        provider's reason."""
        if not _E164.fullmatch(to):
            raise Invalid("invalid_field", "to must be a phone number in E.164 (+15550100100)")
        channel = await self.get(account_id, channel_id)
        try:
            adapter = self.sms_adapter(channel, TEST_SEND_TIMEOUT_S)
        except UnreadableSecret:
            raise Conflict("channel_send_failed", UNREADABLE) from None
        try:
            sid = await adapter.send_text(to, text or TEST_MESSAGE)
        except DeliveryFailed as exc:
            await self._store.record_channel_outbound(
                account_id, channel_id, time.time(), exc.reason
            )
            raise Conflict("channel_send_failed", exc.reason) from None
        finally:
            await adapter.aclose()
        await self._store.record_channel_outbound(account_id, channel_id, time.time(), None)
        return sid

    def email_credentials(self, channel: Channel) -> EmailCredentials:
        """The email channel's URLs with their passwords, and its signing key."""
        opened = self._sealer.open(channel.credentials)
        public = settings_of(channel)
        imap = public.get("imap_url")
        return EmailCredentials(
            public["address"],
            _with_password(public["smtp_url"], opened.get("smtp_password")),
            _with_password(imap, opened.get("imap_password")) if imap else None,
            opened.get("mailgun_signing_key"),
        )

    async def create(
        self,
        account_id: str,
        *,
        kind: str,
        name: str,
        public_url: str,
        account_sid: str | None = None,
        auth_token: str | None = None,
        sender: str | None = None,
        api_url: str | None = None,
        address: str | None = None,
        smtp_url: str | None = None,
        imap_url: str | None = None,
        imap_backfill_days: str | None = None,
        mailgun_signing_key: str | None = None,
        after_resolved: str | None = None,
        ask_rating: bool | None = None,
    ) -> Channel:
        known = [k for k in CREATABLE_KINDS if k == kind]
        if not known:
            raise Invalid("invalid_field", f"kind must be one of {', '.join(CREATABLE_KINDS)}")
        at_most(len(await self._store.list_channels(account_id)), CHANNELS_MAX, "channels")
        given = {
            "account_sid": account_sid, "auth_token": auth_token, "from": sender,
            "api_url": api_url, "address": address, "smtp_url": smtp_url, "imap_url": imap_url,
            "imap_backfill_days": imap_backfill_days, "mailgun_signing_key": mailgun_signing_key,
            "after_resolved": after_resolved, "ask_rating": ask_rating,
        }  # fmt: skip
        _other_kinds_fields(known[0], given)
        settings: dict[str, Any] = {"public_url": _url(public_url, "public_url")}
        if known[0] != "bot":
            settings["ask_rating"] = bool(ask_rating)
        secret: dict[str, str] = {}
        if known[0] == "sms":
            settings |= {
                "account_sid": _account_sid(_required(account_sid, "account_sid")),
                "from": _sender(_required(sender, "from")),
                "api_url": _url(api_url or TWILIO_URL, "api_url"),
                "after_resolved": _after_resolved(after_resolved or AFTER_RESOLVED[0]),
            }
            secret["auth_token"] = _token(_required(auth_token, "auth_token"))
        elif known[0] == "email":
            settings["address"] = _address(_required(address, "address"))
            settings["imap_backfill_days"] = _backfill_days(imap_backfill_days or "0")
            self._email_sources(
                settings, secret, _required(smtp_url, "smtp_url"), imap_url, mailgun_signing_key
            )
        try:
            return await self._store.create_channel(
                account_id,
                known[0],
                _name(name, "name"),
                secrets.token_urlsafe(KEY_BYTES),
                json.dumps(settings, sort_keys=True),
                self._sealer.seal(secret),
            )
        except DuplicateKey:  # 192 random bits: only a broken random source gets here
            raise RuntimeError("a fresh channel key collided") from None

    async def rotate_key(self, account_id: str, channel_id: int) -> Channel:
        """A new key: URLs with the old one answer 404 from now on."""
        await self.get(account_id, channel_id)
        patch = ChannelPatch(key=secrets.token_urlsafe(KEY_BYTES))
        channel = await self._store.update_channel(account_id, channel_id, patch)
        if channel is None:
            raise NotFound("channel_not_found", f"no channel {channel_id}")
        return channel

    async def set_bot_webhook(self, channel: Channel, url: str) -> Channel:
        """Where the bot platform wants its events (setWebhook). The URL is sealed; the
        public settings keep only its host, for the admin screen."""
        url = _webhook_url(url)
        settings = {**settings_of(channel), "webhook_host": urlsplit(url).hostname}
        patch = ChannelPatch(
            settings=json.dumps(settings, sort_keys=True),
            credentials=self._sealer.seal({"webhook_url": url}),
        )
        updated = await self._store.update_channel(channel.account_id, channel.id, patch)
        if updated is None:
            raise NotFound("channel_not_found", "no such channel")
        return updated

    def bot_webhook(self, channel: Channel) -> str | None:
        """The URL setWebhook gave, opened with the installation's keys; None before."""
        found: str | None = self._sealer.open(channel.credentials).get("webhook_url")
        return found

    @staticmethod
    def _email_sources(
        settings: dict[str, Any],
        secret: dict[str, str],
        smtp_url: str | None,
        imap_url: str | None,
        mailgun_signing_key: str | None,
    ) -> None:
        """Puts what is given into the public settings and the secrets: a URL's password goes
        to the secrets, an empty imap_url or signing key removes that source."""
        if smtp_url is not None:
            settings["smtp_url"], password = _smtp_url(smtp_url)
            secret.pop("smtp_password", None)
            if password is not None:
                secret["smtp_password"] = password
        if imap_url is not None:
            settings["imap_url"], password = _imap_url(imap_url) if imap_url else (None, None)
            secret.pop("imap_password", None)
            if password is not None:
                secret["imap_password"] = password
        if mailgun_signing_key is not None:
            secret.pop("mailgun_signing_key", None)
            if mailgun_signing_key:
                secret["mailgun_signing_key"] = _visible(
                    mailgun_signing_key, "mailgun_signing_key", SIGNING_KEY_MAX
                )
            settings["mailgun"] = bool(mailgun_signing_key)
        settings.setdefault("imap_url", None)
        settings.setdefault("mailgun", False)

    async def update(
        self,
        account_id: str,
        channel_id: int,
        *,
        name: str | None = None,
        public_url: str | None = None,
        account_sid: str | None = None,
        auth_token: str | None = None,
        sender: str | None = None,
        api_url: str | None = None,
        address: str | None = None,
        smtp_url: str | None = None,
        imap_url: str | None = None,
        imap_backfill_days: str | None = None,
        mailgun_signing_key: str | None = None,
        after_resolved: str | None = None,
        ask_rating: bool | None = None,
    ) -> Channel:
        """Changes what is given; a new secret replaces the sealed one."""
        channel = await self.get(account_id, channel_id)
        given = {
            "account_sid": account_sid, "auth_token": auth_token, "from": sender,
            "api_url": api_url, "address": address, "smtp_url": smtp_url, "imap_url": imap_url,
            "imap_backfill_days": imap_backfill_days, "mailgun_signing_key": mailgun_signing_key,
            "after_resolved": after_resolved, "ask_rating": ask_rating,
        }  # fmt: skip
        _other_kinds_fields(channel.kind, given)
        settings = settings_of(channel)
        if public_url is not None:
            settings["public_url"] = _url(public_url, "public_url")
        if ask_rating is not None:
            settings["ask_rating"] = ask_rating
        sealed: str | None = None
        if channel.kind == "sms":
            if account_sid is not None:
                settings["account_sid"] = _account_sid(account_sid)
            if sender is not None:
                settings["from"] = _sender(sender)
            if api_url is not None:
                settings["api_url"] = _url(api_url, "api_url")
            if auth_token is not None:
                sealed = self._sealer.seal({"auth_token": _token(auth_token)})
            if after_resolved is not None:
                settings["after_resolved"] = _after_resolved(after_resolved)
        elif channel.kind == "email":
            if address is not None:
                settings["address"] = _address(address)
            if imap_backfill_days is not None:
                settings["imap_backfill_days"] = _backfill_days(imap_backfill_days)
            if (smtp_url, imap_url, mailgun_signing_key) != (None, None, None):
                try:
                    secret = self._sealer.open(channel.credentials)
                except UnreadableSecret:
                    raise Conflict("channel_credentials_unreadable", UNREADABLE) from None
                self._email_sources(settings, secret, smtp_url, imap_url, mailgun_signing_key)
                sealed = self._sealer.seal(secret)
        patch = ChannelPatch(
            name=_name(name, "name") if name is not None else None,
            settings=json.dumps(settings, sort_keys=True),
            credentials=sealed,
        )
        updated = await self._store.update_channel(account_id, channel_id, patch)
        if updated is None:
            raise NotFound("channel_not_found", f"no channel {channel_id}")
        return updated

    async def delete(self, account_id: str, channel_id: int) -> None:
        if not await self._store.delete_channel(account_id, channel_id):
            raise NotFound("channel_not_found", f"no channel {channel_id}")
