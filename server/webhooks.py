"""Signed outgoing webhooks per account (issue 16): which events they hear, and their admin.

An account registers endpoints with the events it wants; every committed change queues one
delivery per matching endpoint in its own transaction (storage/webhooks.py), and the webhook
worker (server/webhook_delivery.py) posts them signed. The secret is made here, shown once in
the answer that created it, and kept sealed with the installation's keys (server/crypto.py)
like channel credentials: nothing else renders or logs it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from server.crypto import Sealer
from server.errors import Invalid, NotFound, at_most
from server.event_catalogue import (
    CONTROL_CHANGED,
    CONVERSATION_NEW,
    CONVERSATION_UPDATED,
    MESSAGE_NEW,
)
from server.text import has_control_characters
from storage.base import Store
from storage.models import Conversation, NewEvent
from storage.webhooks import HookEvent, Webhook, WebhookDelivery

CREATED = "conversation.created"
UPDATED = "conversation.updated"
STATUS_CHANGED = "conversation.status_changed"
MESSAGE_CREATED = "message.created"
CONTROL = "conversation.control_changed"
EVENTS = (CREATED, UPDATED, STATUS_CHANGED, MESSAGE_CREATED, CONTROL)
# The public name of each catalogue kind webhooks hear (a status change is a second name for
# some conversation:updated events, see ``hooks_of``).
_NAMES = {
    CONVERSATION_NEW.name: CREATED,
    CONVERSATION_UPDATED.name: UPDATED,
    MESSAGE_NEW.name: MESSAGE_CREATED,
    CONTROL_CHANGED.name: CONTROL,
}
URL_MAX = 500
# An account's endpoints: enough for every integration, few enough that each change's
# deliveries stay a handful of rows.
WEBHOOKS_MAX = 20
# Deliveries the log shows at once, newest first.
LOG_MAX = 50
SECRET_BYTES = 32
SECRET_FIELD = "secret"
DISABLED_BY_ADMIN = "disabled by an admin"


def hooks_of(
    before: Conversation | None, after: Conversation, events: Sequence[NewEvent]
) -> tuple[HookEvent, ...]:
    """The events of a change that webhooks may hear: a private note is no message.created
    (its event has no visitor payload), and a conversation:updated that moved the status is
    also a conversation.status_changed."""
    hooks: list[HookEvent] = []
    for index, event in enumerate(events):
        name = _NAMES.get(event.kind)
        if name is None or (name == MESSAGE_CREATED and event.visitor_data is None):
            continue
        hooks.append(HookEvent(name, index))
        if name == UPDATED and before is not None and before.status != after.status:
            hooks.append(HookEvent(STATUS_CHANGED, index))
    return tuple(hooks)


@dataclass(frozen=True, slots=True)
class NewWebhook:
    """A webhook just created, with its secret: the one answer that shows it."""

    webhook: Webhook
    secret: str


def webhook_json(item: Webhook | NewWebhook) -> dict[str, Any]:
    """The secret only in the answer that created the webhook."""
    if isinstance(item, NewWebhook):
        return {**webhook_json(item.webhook), "secret": item.secret}
    hook = item
    return {
        "id": hook.id,
        "url": hook.url,
        "events": list(hook.events),
        "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason,
        "created": hook.created,
    }


def delivery_json(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event": delivery.event,
        "state": delivery.state,
        "created": delivery.created,
        "last_error": delivery.last_error,
        "attempts": [
            {"attempt": a.attempt, "at": a.at, "status_code": a.status_code, "error": a.error}
            for a in delivery.attempts
        ],
    }


def _url(value: str) -> str:
    parts = urlsplit(value)
    if (
        len(value) > URL_MAX
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.fragment
        or has_control_characters(value)
        or " " in value
    ):
        raise Invalid(
            "invalid_field",
            f"url must be an http:// or https:// URL of {URL_MAX} characters at most,"
            " without credentials or fragment",
        )
    return value


def _events(names: Sequence[str]) -> tuple[str, ...]:
    unknown = [n for n in names if n not in EVENTS]
    if unknown or not names:
        raise Invalid("invalid_field", f"events must be a non-empty list of: {', '.join(EVENTS)}")
    return tuple(n for n in EVENTS if n in names)


class Webhooks:
    def __init__(self, store: Store, sealer: Sealer) -> None:
        self._store = store
        self._sealer = sealer

    async def of_account(self, account_id: str) -> list[Webhook]:
        return await self._store.list_webhooks(account_id)

    async def create(self, account_id: str, url: str, events: Sequence[str]) -> NewWebhook:
        """The new webhook and its secret, which nothing shows again."""
        checked_url, checked_events = _url(url), _events(events)
        at_most(len(await self._store.list_webhooks(account_id)), WEBHOOKS_MAX, "webhooks")
        secret = "whsec_" + secrets.token_urlsafe(SECRET_BYTES)
        sealed = self._sealer.seal({SECRET_FIELD: secret})
        hook = await self._store.create_webhook(account_id, checked_url, checked_events, sealed)
        return NewWebhook(hook, secret)

    async def update(
        self,
        account_id: str,
        webhook_id: int,
        *,
        url: str | None,
        events: Sequence[str] | None,
        enabled: bool | None,
    ) -> Webhook:
        hook = await self._store.update_webhook(
            account_id,
            webhook_id,
            url=None if url is None else _url(url),
            events=None if events is None else _events(events),
            enabled=enabled,
            disabled_reason=None if enabled is None or enabled else DISABLED_BY_ADMIN,
        )
        if hook is None:
            raise _missing()
        return hook

    async def delete(self, account_id: str, webhook_id: int) -> None:
        if not await self._store.delete_webhook(account_id, webhook_id):
            raise _missing()

    async def deliveries(self, account_id: str, webhook_id: int) -> list[WebhookDelivery]:
        if await self._store.get_webhook(account_id, webhook_id) is None:
            raise _missing()
        return await self._store.webhook_deliveries(account_id, webhook_id, LOG_MAX)

    async def replay(self, account_id: str, webhook_id: int, delivery_id: str) -> None:
        """Queues the delivery again (same id and body), due now."""
        if not await self._store.replay_webhook_delivery(
            account_id, webhook_id, delivery_id, time.time()
        ):
            raise NotFound("delivery_not_found", "no such delivery of this webhook")

    def secret(self, sealed: str) -> str:
        """The signing secret, for the sender only."""
        return self._sealer.open(sealed)[SECRET_FIELD]


def _missing() -> NotFound:
    return NotFound("webhook_not_found", "no such webhook")
