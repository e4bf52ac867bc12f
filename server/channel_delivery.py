"""SMS replies sent with their conversation's channel (issue 14), or the installation's.

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

import time

from server import sms_opt_outs
from server.adapters.delivery import ChannelAdapter, DeliveryFailed
from server.adapters.sms import TwilioSms, phone_number
from server.channels import UNREADABLE, Channels
from server.crypto import UnreadableSecret
from server.errors import NotFound
from server.events import EventFeed
from storage.base import Store
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
