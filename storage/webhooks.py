"""Signed outgoing webhooks per account (issue 16): what the Store keeps of them.

An account's webhooks each ask for some events. The engine names, with every change, which of
its events a webhook may hear (``Change.hooks``); the Store queues one delivery per matching
enabled webhook in the transaction of the change, so a committed change is never left
untold and a rolled-back one never told. Deliveries are claimed, attempted and finished like
the outbound rows (storage/outbound.py), in order per webhook.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

DeliveryState = Literal["queued", "sent", "failed"]


@dataclass(frozen=True, slots=True)
class HookEvent:
    """An event webhooks may hear: its public name, and the change's event (by index in
    ``Change.events``) whose operator payload is its ``data``."""

    name: str
    index: int


@dataclass(frozen=True, slots=True)
class Webhook:
    account_id: str
    id: int
    url: str
    events: tuple[str, ...]
    # Sealed with the installation's keys (server/crypto.py); only the sender opens it.
    secret: str
    enabled: bool
    disabled_reason: str | None
    created: float


@dataclass(frozen=True, slots=True)
class WebhookJob:
    """One claimed delivery: the body to post, where, with which (sealed) secret."""

    id: str
    account_id: str
    webhook_id: int
    url: str
    secret: str
    event: str
    body: str
    # Claims so far, this one included: the fencing token of finish_webhook_delivery.
    attempt: int
    # Claims since the delivery was queued or last replayed: what the retry budget counts.
    tries: int


@dataclass(frozen=True, slots=True)
class WebhookAttempt:
    attempt: int
    at: float
    status_code: int | None
    error: str | None


@dataclass(frozen=True, slots=True)
class WebhookDelivery:
    id: str
    webhook_id: int
    event: str
    state: DeliveryState
    created: float
    last_error: str | None
    # Newest first.
    attempts: tuple[WebhookAttempt, ...]
