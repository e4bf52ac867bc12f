"""SMS and email replies sent with their conversation's channel (issues 14, 15), or the
installation's, and a bot platform's events (issue 16).

A conversation bound to an SMS channel is answered from that channel's number with that
channel's credentials, opened from the store for each delivery (a changed auth token applies
to the next reply), and the outcome goes on the channel's health line. A conversation with no
channel (from before channels, or opened through the App Command API) is answered with the
installation-wide ``LIVEOP_SMS_*`` settings, as before.

A phone that opted out of SMS on the channel (server/sms_opt_outs.py) gets nothing: the reply
fails at once, for good, with the reason; a provider that refuses a send with error 21610
(the phone opted out at the provider) fails it for good too and records the opt-out.
"""

from __future__ import annotations

import base64
import time

from server import sms_opt_outs
from server.adapters.bot_platform import BotWebhook
from server.adapters.delivery import ChannelAdapter, DeliveryFailed
from server.adapters.email import SmtpEmail, Threading
from server.adapters.sms import TwilioSms, phone_number
from server.channels import UNREADABLE, Channels
from server.crypto import UnreadableSecret
from server.errors import NotFound
from server.events import EventFeed
from storage.base import Store
from storage.models import Channel, EmailRecord
from storage.outbound import OutboundJob


class ChannelSms:
    def __init__(
        self,
        store: Store,
        feed: EventFeed,
        channels: Channels,
        unbound: ChannelAdapter | None,
        timeout_s: float,
    ) -> None:
        self._store = store
        self._feed = feed
        self._channels = channels
        self._unbound = unbound
        self._timeout_s = timeout_s

    async def send(self, job: OutboundJob) -> str:
        if job.channel_id is None:
            if self._unbound is None:  # not claimed (see Store.claim_outbound's unbound)
                raise DeliveryFailed("no SMS settings for this conversation", retryable=True)
            return await self._unbound.send(job)
        phone = phone_number(job.contact.phone)
        if await sms_opt_outs.opted_out(self._store, job.account_id, job.channel_id, phone):
            raise DeliveryFailed(sms_opt_outs.REFUSED, retryable=False)
        adapter = await self._adapter(job.account_id, job.channel_id)
        try:
            sid = await adapter.send(job)
        except DeliveryFailed as exc:
            now = time.time()
            if exc.code == sms_opt_outs.UNSUBSCRIBED_ERROR:
                await sms_opt_outs.record(
                    self._store, self._feed, job.account_id, job.channel_id, phone, True, now
                )
            await self._store.record_channel_outbound(
                job.account_id, job.channel_id, now, exc.reason
            )
            raise
        finally:
            await adapter.aclose()
        await self._store.record_channel_outbound(job.account_id, job.channel_id, time.time(), None)
        return sid

    async def _adapter(self, account_id: str, channel_id: int) -> TwilioSms:
        try:
            return self._channels.sms_adapter(
                await self._channels.get(account_id, channel_id), self._timeout_s
            )
        except NotFound:
            raise DeliveryFailed(
                "the conversation's channel was deleted", retryable=False
            ) from None
        except UnreadableSecret:
            # Retried: the operator of the installation may still add the key that opens it.
            raise DeliveryFailed(UNREADABLE, retryable=True) from None

    async def aclose(self) -> None:
        """Nothing of its own stays open; the unbound adapter is closed by its owner."""


class ChannelBot:
    """Posts a bot platform's events to the webhook its channel was given (setWebhook), read
    from the store for each delivery, so a new webhook applies to the next event. Until the
    platform sets one, its events wait (retried), as they do while it fails; each outcome goes
    on the channel's health line."""

    def __init__(self, store: Store, channels: Channels, timeout_s: float) -> None:
        self._store = store
        self._channels = channels
        self._webhook = BotWebhook(timeout_s)

    async def send(self, job: OutboundJob) -> str:
        if job.channel_id is None or job.payload is None:
            raise DeliveryFailed("not a bot platform's event", retryable=False)
        try:
            channel = await self._channels.get(job.account_id, job.channel_id)
            url = self._channels.bot_webhook(channel)
        except NotFound:
            raise DeliveryFailed(
                "the conversation's channel was deleted", retryable=False
            ) from None
        except UnreadableSecret:
            raise DeliveryFailed(UNREADABLE, retryable=True) from None
        try:
            if url is None:
                raise DeliveryFailed("the bot platform has not called setWebhook", retryable=True)
            await self._webhook.post(url, job.payload)
        except DeliveryFailed as exc:
            await self._store.record_channel_outbound(
                job.account_id, job.channel_id, time.time(), exc.reason
            )
            raise
        await self._store.record_channel_outbound(job.account_id, job.channel_id, time.time(), None)
        return ""

    async def aclose(self) -> None:
        await self._webhook.aclose()


class ChannelEmail:
    """Email replies of conversations bound to an email channel, through that channel's SMTP
    with its address, threaded (issue 15): the thread's subject and tag, ``Reply-To`` with its
    reply+TOKEN, ``In-Reply-To`` the customer's last mail and ``References`` the whole chain.
    Each sent mail is kept (its Message-ID threads the customer's answer). A conversation with
    no channel is answered with the installation's ``LIVEOP_SMTP_URL``, as before."""

    def __init__(
        self, store: Store, channels: Channels, unbound: ChannelAdapter | None, timeout_s: float
    ) -> None:
        self._store = store
        self._channels = channels
        self._unbound = unbound
        self._timeout_s = timeout_s

    async def send(self, job: OutboundJob) -> str:
        if job.channel_id is None:
            if self._unbound is None:  # not claimed (see Store.claim_outbound's unbound)
                raise DeliveryFailed("no SMTP settings for this conversation", retryable=True)
            return await self._unbound.send(job)
        channel = await self._channel(job.account_id, job.channel_id)
        try:
            credentials = self._channels.email_credentials(channel)
        except UnreadableSecret:
            raise DeliveryFailed(UNREADABLE, retryable=True) from None
        refused = await self._store.undeliverable(job.account_id, job.contact.email.lower())
        if refused is not None:
            raise DeliveryFailed(f"the address bounced: {refused}", retryable=False)
        adapter = SmtpEmail(credentials.smtp_url, credentials.address, timeout_s=self._timeout_s)
        message = adapter.compose(job, await self._threading(job, credentials.address))
        try:
            sent_id = await adapter.deliver(message)
        except DeliveryFailed as exc:
            await self._store.record_channel_outbound(
                job.account_id, job.channel_id, time.time(), exc.reason
            )
            raise
        bare = sent_id.strip("<>")
        record = EmailRecord(
            job.account_id, job.channel_id, f"mid:{bare}", "out", bare, "sent", None,
            credentials.address, job.convo_id, job.message_id,
            base64.b64encode(bytes(message)).decode("ascii"), None, time.time(),
        )  # fmt: skip
        await self._store.record_email(record, None)
        await self._store.record_channel_outbound(job.account_id, job.channel_id, time.time(), None)
        return sent_id

    async def _channel(self, account_id: str, channel_id: int) -> Channel:
        try:
            return await self._channels.get(account_id, channel_id)
        except NotFound:
            raise DeliveryFailed(
                "the conversation's channel was deleted", retryable=False
            ) from None

    async def _threading(self, job: OutboundJob, address: str) -> Threading:
        thread = await self._store.email_thread(job.account_id, job.convo_id)
        local, _, domain = address.rpartition("@")
        if thread is None:  # an operator's first word, before the customer wrote
            return Threading(f"Your conversation with {job.account_name}", address, None, ())
        chain = await self._store.email_message_ids(job.account_id, job.convo_id)
        theirs = [m for m, direction in chain if direction == "in"]
        return Threading(
            subject=f"Re: {thread.subject} [#{thread.tag}]",
            reply_to=f"{local}+{thread.token}@{domain}",
            in_reply_to=theirs[-1] if theirs else None,
            references=tuple(m for m, _ in chain),
        )

    async def aclose(self) -> None:
        """Each message uses a connection of its own; the unbound adapter is closed by its
        owner."""
