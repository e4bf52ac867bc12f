"""The outbound-delivery worker: replies in SMS and email conversations leave through the
channel the customer used.

Every process runs one worker for the channels it has settings for. A worker claims a batch
of due messages from the store for a lease, delivers them concurrently through the channel
adapters, and records each outcome; claims never overlap, across processes too (see
``Store.claim_outbound``), so each message is delivered by one worker at a time.

Delivery is at least once. A worker that dies after the provider accepted a message but
before recording it leaves the claim to lapse; once the lease has passed, another worker
claims the message and sends it again. Only messages in flight at the moment of the crash
(one batch at most) can be sent twice, and an email sent twice carries the same Message-ID.

Nothing renews a lease: each delivery is cut off after a third of it, so the outcome is
recorded well before the lease runs out, with room for a slow store and clock skew between
hosts. A channel without settings is never claimed: its replies stay queued and go out once
a process that has them starts.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import secrets
import socket
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import orjson

from server import metrics
from server.adapters.delivery import ChannelAdapter, DeliveryFailed
from server.adapters.email import SmtpEmail
from server.adapters.sms import TwilioSms
from server.channel_delivery import ChannelBot, ChannelEmail, ChannelSms
from server.channels import Channels
from server.claim_loop import ClaimLoop
from server.event_catalogue import DELIVERY
from server.events import EventFeed
from server.settings import Settings
from storage.base import Store
from storage.outbound import CHANNEL_OF_SOURCE, OutboundChannel, OutboundJob

log = logging.getLogger(__name__)

# Messages claimed at once, and so delivered concurrently by one process.
BATCH = 10
# How long an idle worker waits before looking for due messages again: the most a reply
# waits in the queue when nothing else is going out.
POLL_S = 1.0
# Attempts at one message before it is failed: with the backoff below, about half an hour
# of trying, which outlasts a greylisting mail server and most provider outages.
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 15.0
BACKOFF_MAX_S = 3600.0
# A delivery may last this fraction of the lease (see the module docstring).
DELIVERY_SHARE_OF_LEASE = 1 / 3
# How long releasing one claim may take on the way out; past it the claim lapses with its
# lease instead (a store that slow would not record the release anyway).
RELEASE_TIMEOUT_S = 2.0
RELEASED = "interrupted: the process delivering it shut down"

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Outcome:
    sent: bool
    error: str | None = None
    retry_at: float | None = None
    # The provider's id for a sent message, which its status callbacks name.
    provider_id: str | None = None

    @property
    def final(self) -> bool:
        return self.retry_at is None


def backoff_s(attempt: int, *, base_s: float, jitter: float) -> float:
    """The wait after failed attempt number ``attempt``: doubling from ``base_s``, capped, and
    then up to half of it dropped by ``jitter`` (0 to 1), so that messages which failed
    together (an outage) do not all come back at the same moment."""
    delay = min(BACKOFF_MAX_S, base_s * 2.0 ** (attempt - 1))
    return delay * (0.5 + 0.5 * jitter)


def new_worker_id() -> str:
    """Unique per process start, and telling an operator which host holds a claim."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class OutboundWorker(ClaimLoop):
    def __init__(
        self,
        store: Store,
        feed: EventFeed,
        adapters: Mapping[OutboundChannel, ChannelAdapter],
        *,
        lease_s: float,
        worker_id: str | None = None,
        batch: int = BATCH,
        poll_s: float = POLL_S,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
        unbound: Collection[OutboundChannel] | None = None,
    ) -> None:
        super().__init__("liveop-outbound", poll_s)
        self.worker_id = worker_id or new_worker_id()
        self._store = store
        self._feed = feed
        self._adapters = dict(adapters)
        # What it delivers for conversations without a channel of their own (default: all).
        self._unbound = tuple(adapters) if unbound is None else tuple(unbound)
        self._lease_s = lease_s
        self._delivery_timeout_s = lease_s * DELIVERY_SHARE_OF_LEASE
        self._batch = batch
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._clock = clock
        self._jitter = jitter

    async def run_once(self) -> int:
        """Claims one batch, delivers and records it; returns how many were claimed. A
        claim that finds work is followed at once by another: the next message of a
        conversation becomes due only when the one before it is done."""
        queued = await self._store.queued_outbound()
        for channel in self._adapters:
            metrics.outbound_queued.labels(channel).set(queued.get(channel, 0))
        jobs = await self._store.claim_outbound(
            self.worker_id,
            channels=tuple(self._adapters),
            now=self._clock(),
            lease_s=self._lease_s,
            limit=self._batch,
            unbound=self._unbound,
        )
        await asyncio.gather(*(self._deliver(job) for job in jobs))
        return len(jobs)

    async def _deliver(self, job: OutboundJob) -> None:
        in_flight = metrics.outbound_in_flight.labels(job.channel)
        in_flight.inc()
        try:
            outcome = await self._attempt(job)
        except asyncio.CancelledError:
            await self._release(job)
            raise
        finally:
            in_flight.dec()
        try:
            held = await self._store.finish_outbound(
                job, self.worker_id, sent=outcome.sent, error=outcome.error,
                retry_at=outcome.retry_at, provider_id=outcome.provider_id,
            )  # fmt: skip
        except Exception:
            # The claim lapses and the message is attempted again after the lease.
            log.exception("recording the delivery of %s/%s failed", job.convo_id, job.seq)
            return
        result = "sent" if outcome.sent else "failed" if outcome.final else "retry"
        metrics.outbound_attempts.labels(job.channel, result if held else "lost").inc()
        if not held:
            log.warning(
                "delivery of %s/%s took longer than the lease; another worker has it",
                job.convo_id, job.seq,
            )  # fmt: skip
            return
        if not outcome.sent:
            then = "given up" if outcome.retry_at is None else f"retry at {outcome.retry_at:.0f}"
            log.warning(
                "%s delivery of %s/%s failed (attempt %d): %s; %s", job.channel, job.convo_id,
                job.seq, job.attempt, outcome.error, then,
            )  # fmt: skip
        if outcome.final:
            await self._announce(job, outcome)

    async def _release(self, job: OutboundJob) -> None:
        """Gives a delivery cut off by shutdown back to the queue, due now. The provider may
        have accepted it already: delivery stays at least once, as after a crash."""
        try:
            async with asyncio.timeout(RELEASE_TIMEOUT_S):
                await self._store.finish_outbound(
                    job, self.worker_id, sent=False, error=RELEASED, retry_at=self._clock()
                )
        except Exception:
            log.exception("releasing %s/%s failed; it goes out after the lease", job.convo_id,
                          job.seq)  # fmt: skip
            return
        metrics.outbound_attempts.labels(job.channel, "released").inc()

    async def _attempt(self, job: OutboundJob) -> Outcome:
        if job.attempt > self._max_attempts:
            # Claimed this often without an outcome: workers died delivering it.
            return Outcome(False, f"gave up after {self._max_attempts} attempts")
        try:
            async with asyncio.timeout(self._delivery_timeout_s):
                provider_id = await self._adapters[job.channel].send(job)
        except DeliveryFailed as exc:
            return self._failed(job, exc.reason, retryable=exc.retryable)
        except TimeoutError:
            reason = f"no answer within {self._delivery_timeout_s:g} s"
            return self._failed(job, reason, retryable=True)
        except Exception as exc:
            log.exception("delivering %s/%s failed unexpectedly", job.convo_id, job.seq)
            return self._failed(job, f"unexpected error: {exc!r}", retryable=True)
        return Outcome(True, provider_id=provider_id or None)

    def _failed(self, job: OutboundJob, reason: str, *, retryable: bool) -> Outcome:
        if not retryable:
            return Outcome(False, reason)
        if job.attempt >= self._max_attempts:
            return Outcome(False, f"{reason} (gave up after {job.attempt} attempts)")
        delay = backoff_s(job.attempt, base_s=self._backoff_base_s, jitter=self._jitter())
        return Outcome(False, reason, self._clock() + delay)

    async def _announce(self, job: OutboundJob, outcome: Outcome) -> None:
        data = {
            "conversation_id": job.convo_id,
            "seq": job.seq,
            "delivery": "sent" if outcome.sent else "failed",
            "error": outcome.error,
        }
        await self._feed.ephemeral(job.account_id, DELIVERY, orjson.dumps(data))


def channel_adapters(
    settings: Settings, stack: AsyncExitStack, timeout_s: float
) -> dict[OutboundChannel, ChannelAdapter]:
    """An adapter for each channel the settings configure, closed with ``stack``."""
    adapters: dict[OutboundChannel, ChannelAdapter] = {}
    if settings.smtp_url and settings.email_from:
        adapters["email"] = SmtpEmail(settings.smtp_url, settings.email_from, timeout_s=timeout_s)
    if settings.sms_account_sid and settings.sms_auth_token and settings.sms_from:
        adapters["sms"] = TwilioSms(
            account_sid=settings.sms_account_sid,
            auth_token=settings.sms_auth_token,
            sender=settings.sms_from,
            timeout_s=timeout_s,
            base_url=settings.sms_url,
        )
    for adapter in adapters.values():
        stack.push_async_callback(adapter.aclose)
    return adapters


@asynccontextmanager
async def outbound_worker(
    settings: Settings, store: Store, feed: EventFeed, channels: Channels | None = None
) -> AsyncIterator[OutboundWorker | None]:
    """The process's worker, running while the context is open; None when it is turned off
    or no channel is configured. With ``channels`` (the app's), it also sends the SMS replies
    of conversations bound to an account's SMS or email channel, whatever the settings say."""
    if not settings.outbound_worker:
        yield None
        return
    async with AsyncExitStack() as stack:
        timeout_s = settings.outbound_lease_s * DELIVERY_SHARE_OF_LEASE
        adapters: dict[OutboundChannel, ChannelAdapter] = {
            **channel_adapters(settings, stack, timeout_s)
        }
        unbound = tuple(adapters)
        if channels is not None:
            adapters["sms"] = ChannelSms(store, feed, channels, adapters.get("sms"), timeout_s)
            bots = ChannelBot(store, channels, timeout_s)
            stack.push_async_callback(bots.aclose)
            adapters["bot"] = bots
            adapters["email"] = ChannelEmail(store, channels, adapters.get("email"), timeout_s)
        if not adapters:
            yield None
            return
        worker = OutboundWorker(
            store, feed, adapters, lease_s=settings.outbound_lease_s, unbound=unbound
        )
        idle = sorted(set(CHANNEL_OF_SOURCE.values()) - set(adapters))
        log.info(
            "outbound worker %s delivering %s%s", worker.worker_id, ", ".join(sorted(adapters)),
            f"; {', '.join(idle)} replies stay queued until configured" if idle else "",
        )  # fmt: skip
        worker.start()
        try:
            yield worker
        finally:
            await worker.stop()
