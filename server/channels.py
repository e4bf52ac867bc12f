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
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from server.adapters.delivery import DeliveryFailed
from server.adapters.sms import TWILIO_URL, TwilioSms
from server.crypto import Sealer, UnreadableSecret
from server.directory import NAME_MAX, _name
from server.errors import Conflict, Invalid, NotFound
from server.text import has_control_characters
from storage.base import ChannelPatch, DuplicateKey, Store
from storage.models import Channel, ChannelKind

# 24 random bytes (192 bits) as url-safe base64: the key is all that names a channel in its
# webhook URLs, so it must not be guessable; the signature check is the second lock.
KEY_BYTES = 24
# The kinds an admin can create today; email's inbound side and bots are later issues.
CREATABLE_KINDS: tuple[ChannelKind, ...] = ("sms",)
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


def after_resolved(channel: Channel) -> str:
    """The channel's ``after_resolved`` (channels created before the setting reopen)."""
    found: str = settings_of(channel).get("after_resolved", AFTER_RESOLVED[0])
    return found


def webhooks(channel: Channel) -> dict[str, str]:
    """The URLs to give the provider: the public base URL, which the signature covers."""
    base = f"{public_url(channel)}/webhooks/twilio/{channel.key}"
    return {"sms": f"{base}/sms", "status": f"{base}/status"}


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

    async def create(
        self,
        account_id: str,
        *,
        kind: str,
        name: str,
        account_sid: str,
        auth_token: str,
        sender: str,
        public_url: str,
        api_url: str | None = None,
        after_resolved: str | None = None,
    ) -> Channel:
        known = [k for k in CREATABLE_KINDS if k == kind]
        if not known:
            raise Invalid("invalid_field", f"kind must be one of {', '.join(CREATABLE_KINDS)}")
        settings = {
            "account_sid": _account_sid(account_sid),
            "from": _sender(sender),
            "api_url": _url(api_url or TWILIO_URL, "api_url"),
            "public_url": _url(public_url, "public_url"),
            "after_resolved": _after_resolved(after_resolved or AFTER_RESOLVED[0]),
        }
        sealed = self._sealer.seal({"auth_token": _token(auth_token)})
        try:
            return await self._store.create_channel(
                account_id,
                known[0],
                _name(name, "name"),
                secrets.token_urlsafe(KEY_BYTES),
                json.dumps(settings, sort_keys=True),
                sealed,
            )
        except DuplicateKey:  # 192 random bits: only a broken random source gets here
            raise RuntimeError("a fresh channel key collided") from None

    async def update(
        self,
        account_id: str,
        channel_id: int,
        *,
        name: str | None = None,
        account_sid: str | None = None,
        auth_token: str | None = None,
        sender: str | None = None,
        public_url: str | None = None,
        api_url: str | None = None,
        after_resolved: str | None = None,
    ) -> Channel:
        """Changes what is given; a new auth_token replaces the sealed one."""
        settings = settings_of(await self.get(account_id, channel_id))
        if account_sid is not None:
            settings["account_sid"] = _account_sid(account_sid)
        if sender is not None:
            settings["from"] = _sender(sender)
        if api_url is not None:
            settings["api_url"] = _url(api_url, "api_url")
        if public_url is not None:
            settings["public_url"] = _url(public_url, "public_url")
        if after_resolved is not None:
            settings["after_resolved"] = _after_resolved(after_resolved)
        patch = ChannelPatch(
            name=_name(name, "name") if name is not None else None,
            settings=json.dumps(settings, sort_keys=True),
            credentials=(
                self._sealer.seal({"auth_token": _token(auth_token)})
                if auth_token is not None
                else None
            ),
        )
        channel = await self._store.update_channel(account_id, channel_id, patch)
        if channel is None:
            raise NotFound("channel_not_found", f"no channel {channel_id}")
        return channel

    async def delete(self, account_id: str, channel_id: int) -> None:
        if not await self._store.delete_channel(account_id, channel_id):
            raise NotFound("channel_not_found", f"no channel {channel_id}")
