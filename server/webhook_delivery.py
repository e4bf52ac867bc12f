"""The webhook worker: posts each queued webhook delivery, signed, to its endpoint.

Like the outbound worker (server/outbound.py), every process runs one under
LIVEOP_OUTBOUND_WORKER: it claims due deliveries for a lease, posts them concurrently, and
records every attempt in the delivery log. A webhook's deliveries go one at a time, in the
order their events committed (Store.claim_webhook_deliveries), so a receiver that fails for a
while gets them late but in order. Delivery is at least once: a worker that dies after the
receiver answered but before recording it leaves the claim to lapse, and the same delivery
(same ``id`` and body, freshly signed) is posted again.

A delivery that fails ``max_attempts`` times in a row is failed for good and its webhook is
disabled with the reason, so an endpoint that is gone stops costing every change a row; the
admin re-enables it (PATCH ``enabled``) and replays what it missed.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import httpx

from server.claim_loop import ClaimLoop
from server.crypto import UnreadableSecret
from server.outbound import (
    BACKOFF_BASE_S,
    BATCH,
    DELIVERY_SHARE_OF_LEASE,
    MAX_ATTEMPTS,
    POLL_S,
    Clock,
    backoff_s,
    new_worker_id,
)
from server.settings import Settings
from server.webhooks import Webhooks
from storage.base import Store
from storage.webhooks import WebhookAttempt, WebhookJob

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Liveop-Signature"
# How much of a refusing receiver's answer the log keeps.
ANSWER_CHARS = 200


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`` (docs/api.md)."""
    signed = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


class WebhookWorker(ClaimLoop):
    def __init__(
        self,
        store: Store,
        webhooks: Webhooks,
        *,
        lease_s: float,
        worker_id: str | None = None,
        batch: int = BATCH,
        poll_s: float = POLL_S,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_s: float = BACKOFF_BASE_S,
        clock: Clock = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        super().__init__("liveop-webhooks", poll_s)
        self.worker_id = worker_id or new_worker_id()
        self._store = store
        self._webhooks = webhooks
        self._lease_s = lease_s
        self._batch = batch
        self._max_attempts = max_attempts
        self._backoff_base_s = backoff_base_s
        self._clock = clock
        self._jitter = jitter
        # Redirects are not followed: the admin registered this URL, not the one it points to.
        self._client = httpx.AsyncClient(
            timeout=lease_s * DELIVERY_SHARE_OF_LEASE, follow_redirects=False
        )

    async def stop(self) -> None:
        """Lets the batch in flight finish (see ClaimLoop.stop); a delivery cut off is posted
        again once its lease has passed."""
        await super().stop()
        await self._client.aclose()

    async def run_once(self) -> int:
        """Claims one batch, posts and records it; returns how many were claimed."""
        jobs = await self._store.claim_webhook_deliveries(
            self.worker_id, now=self._clock(), lease_s=self._lease_s, limit=self._batch
        )
        await asyncio.gather(*(self._deliver(job) for job in jobs))
        return len(jobs)

    async def _deliver(self, job: WebhookJob) -> None:
        status, error = await self._post(job)
        sent = error is None
        retry_at: float | None = None
        disable: str | None = None
        if not sent and job.tries < self._max_attempts:
            delay = backoff_s(job.tries, base_s=self._backoff_base_s, jitter=self._jitter())
            retry_at = self._clock() + delay
        elif not sent:
            disable = f"delivery {job.id} ({job.event}) failed {job.tries} times: {error}"
        attempt = WebhookAttempt(job.attempt, self._clock(), status, error)
        try:
            held = await self._store.finish_webhook_delivery(
                job, self.worker_id, sent=sent, retry_at=retry_at, attempt=attempt,
                disable=disable,
            )  # fmt: skip
        except Exception:
            log.exception("recording webhook delivery %s failed; it is posted again", job.id)
            return
        if not held:
            log.warning("webhook delivery %s outlived its lease; another worker has it", job.id)
        elif disable is not None:
            log.warning("webhook %s of %s disabled: %s", job.webhook_id, job.account_id, disable)

    async def _post(self, job: WebhookJob) -> tuple[int | None, str | None]:
        """The receiver's status code (None: no answer) and why the attempt failed (None: a
        2xx). Never the secret, in the error or the log."""
        try:
            secret = self._webhooks.secret(job.secret)
        except UnreadableSecret:
            return None, "the webhook's secret opens with none of LIVEOP_ENCRYPTION_KEYS"
        body = job.body.encode()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: signature(secret, int(self._clock()), body),
            "X-Liveop-Event": job.event,
            "X-Liveop-Delivery": job.id,
        }
        try:
            response = await self._client.post(job.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return None, f"the endpoint could not be reached: {type(exc).__name__}"
        if response.is_success:
            return response.status_code, None
        return (
            response.status_code,
            f"answered {response.status_code}: {response.text[:ANSWER_CHARS]}",
        )


@asynccontextmanager
async def webhook_worker(
    settings: Settings, store: Store, webhooks: Webhooks
) -> AsyncIterator[WebhookWorker | None]:
    """The process's webhook worker, running while the context is open; None when
    LIVEOP_OUTBOUND_WORKER turns the background workers off."""
    if not settings.outbound_worker:
        yield None
        return
    worker = WebhookWorker(store, webhooks, lease_s=settings.outbound_lease_s)
    worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
