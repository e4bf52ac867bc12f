"""The SQL of signed outgoing webhooks (storage/webhooks.py), on SQLite and PostgreSQL alike.

Functions over one connection, run inside the SqlStore's transactions (storage/sql.py).
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

import orjson

from storage import rows
from storage.base import TABLES_BY_NAME
from storage.models import Event
from storage.webhooks import (
    HookEvent,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookJob,
)

if TYPE_CHECKING:
    # Only types: storage.sql imports this module.
    from storage.rows import Row
    from storage.sql import Conn, Dialect, Op

T = TypeVar("T")

WEBHOOKS = TABLES_BY_NAME["webhooks"]
DELIVERIES = TABLES_BY_NAME["webhook_deliveries"]
ATTEMPTS = TABLES_BY_NAME["webhook_attempts"]

SELECT_WEBHOOK = (
    f"SELECT {rows.select_list(WEBHOOKS)} FROM webhooks WHERE account_id = $1 AND id = $2"
)
LIST_WEBHOOKS = (
    f"SELECT {rows.select_list(WEBHOOKS)} FROM webhooks WHERE account_id = $1 ORDER BY id"
)
INSERT_WEBHOOK = rows.insert_sql(WEBHOOKS)
UPDATE_WEBHOOK = (
    "UPDATE webhooks SET url = $3, events = $4, enabled = $5, disabled_reason = $6"
    " WHERE account_id = $1 AND id = $2"
)
DELETE_WEBHOOK = "DELETE FROM webhooks WHERE account_id = $1 AND id = $2 RETURNING id"
INSERT_DELIVERY = rows.insert_sql(DELIVERIES)
INSERT_ATTEMPT = rows.insert_sql(ATTEMPTS)
_LISTENING = "SELECT id, events FROM webhooks WHERE account_id = $1 AND enabled"

# Due: queued, its backoff over, no live lease, its webhook enabled, and no earlier delivery
# of the same webhook still queued (a receiver hears a webhook's events in the order they
# committed). ``{lock}`` is the dialect's row lock for a claim.
DUE_SQL = (
    "SELECT d.id FROM webhook_deliveries d WHERE d.state = 'queued'"
    " AND d.next_attempt_at <= $1 AND (d.lease_until IS NULL OR d.lease_until <= $1)"
    " AND EXISTS (SELECT 1 FROM webhooks w WHERE w.account_id = d.account_id"
    " AND w.id = d.webhook_id AND w.enabled)"
    " AND NOT EXISTS (SELECT 1 FROM webhook_deliveries p WHERE p.account_id = d.account_id"
    " AND p.webhook_id = d.webhook_id AND p.state = 'queued'"
    " AND (p.event_seq < d.event_seq OR (p.event_seq = d.event_seq AND p.event < d.event)))"
    " ORDER BY d.next_attempt_at, d.event_seq, d.event LIMIT $2{lock}"
)
CLAIM_SQL = (
    "UPDATE webhook_deliveries SET claimed_by = $1, lease_until = $2, attempts = attempts + 1"
    " WHERE id = $3 AND state = 'queued'"
    " RETURNING id, account_id, webhook_id, event, body, attempts, budget_from"
)
_JOB_TARGET = "SELECT url, secret FROM webhooks WHERE account_id = $1 AND id = $2"
# Refuses a worker that no longer holds the claim (see storage/outbound.py's FINISH_SQL).
FINISH_SQL = (
    "UPDATE webhook_deliveries SET state = $1, claimed_by = NULL, lease_until = NULL,"
    " next_attempt_at = coalesce($2, next_attempt_at), last_error = $3"
    " WHERE id = $4 AND claimed_by = $5 AND attempts = $6 AND state = 'queued' RETURNING id"
)
DISABLE_SQL = (
    "UPDATE webhooks SET enabled = $3, disabled_reason = $4 WHERE account_id = $1 AND id = $2"
)
# The log an admin reads: the newest deliveries of the webhook, at most $3, each with its
# attempts (newest first).
LOG_SQL = (
    "SELECT d.id, d.webhook_id, d.event, d.state, d.created, d.last_error, a.attempt, a.at,"
    " a.status_code, a.error FROM (SELECT * FROM webhook_deliveries WHERE account_id = $1"
    " AND webhook_id = $2 ORDER BY event_seq DESC, event DESC LIMIT $3) d"
    " LEFT JOIN webhook_attempts a ON a.delivery_id = d.id"
    " ORDER BY d.event_seq DESC, d.event DESC, a.attempt DESC"
)
REPLAY_SQL = (
    "UPDATE webhook_deliveries SET state = 'queued', next_attempt_at = $4, last_error = NULL,"
    " claimed_by = NULL, lease_until = NULL, budget_from = attempts"
    " WHERE account_id = $1 AND webhook_id = $2 AND id = $3 RETURNING id"
)


def webhook(r: Row) -> Webhook:
    return Webhook(
        account_id=r["account_id"], id=r["id"], url=r["url"],
        events=tuple(json.loads(r["events"])), secret=r["secret"], enabled=bool(r["enabled"]),
        disabled_reason=r["disabled_reason"], created=r["created"],
    )  # fmt: skip


def webhook_row(hook: Webhook) -> dict[str, Any]:
    return {
        "account_id": hook.account_id, "id": hook.id, "url": hook.url,
        "events": json.dumps(list(hook.events)), "secret": hook.secret, "enabled": hook.enabled,
        "disabled_reason": hook.disabled_reason, "created": hook.created,
    }  # fmt: skip


def new_delivery_id() -> str:
    """Stable across retries and replays: a receiver dedupes at-least-once deliveries by it."""
    return "whd_" + secrets.token_hex(12)


def body(delivery_id: str, name: str, account_id: str, event: Event) -> str:
    """``{"id", "event", "created", "account_id", "data"}``, ``data`` being the event's
    operator payload exactly as committed."""
    head = orjson.dumps(
        {"id": delivery_id, "event": name, "created": event.created, "account_id": account_id}
    )
    data = (event.data or "null").encode()
    return (head[:-1] + b',"data":' + data + b"}").decode()


async def enqueue(
    conn: Conn, account_id: str, events: Sequence[Event], hooks: Sequence[HookEvent]
) -> None:
    """Queues, for each event webhooks may hear, a delivery to every enabled webhook of the
    account that asked for it. ``events`` are the change's as numbered (``hooks`` index them)."""
    if not hooks:
        return
    listening = [
        (int(r["id"]), set(json.loads(r["events"])))
        for r in await conn.fetch(_LISTENING, account_id)
    ]
    queued: list[dict[str, Any]] = []
    for hook in hooks:
        event = events[hook.index]
        for webhook_id, wanted in listening:
            if hook.name not in wanted:
                continue
            delivery_id = new_delivery_id()
            queued.append({
                "id": delivery_id, "account_id": account_id, "webhook_id": webhook_id,
                "event_seq": event.seq, "event": hook.name,
                "body": body(delivery_id, hook.name, account_id, event), "state": "queued",
                "attempts": 0, "budget_from": 0, "claimed_by": None, "lease_until": None,
                "next_attempt_at": event.created, "last_error": None, "created": event.created,
            })  # fmt: skip
    if queued:
        await conn.executemany(INSERT_DELIVERY, [rows.values(DELIVERIES, q) for q in queued])


async def claim(
    conn: Conn, lock: str, worker_id: str, now: float, lease_until: float, limit: int
) -> list[WebhookJob]:
    due = await conn.fetch(DUE_SQL.format(lock=lock), now, limit)
    jobs: list[WebhookJob] = []
    for found in due:
        row = await conn.fetchrow(CLAIM_SQL, worker_id, lease_until, found["id"])
        if row is None:
            continue
        target = await conn.fetchrow(_JOB_TARGET, row["account_id"], row["webhook_id"])
        assert target is not None, "a delivery is deleted with its webhook"
        jobs.append(
            WebhookJob(
                id=row["id"],
                account_id=row["account_id"],
                webhook_id=row["webhook_id"],
                url=target["url"],
                secret=target["secret"],
                event=row["event"],
                body=row["body"],
                attempt=row["attempts"],
                tries=row["attempts"] - row["budget_from"],
            )
        )
    return jobs


async def finish(
    conn: Conn,
    job: WebhookJob,
    worker_id: str,
    *,
    state: str,
    retry_at: float | None,
    attempt: WebhookAttempt,
    disable: str | None,
) -> bool:
    """Records the attempt and the delivery's state; ``disable`` turns the webhook off with
    that reason. False (nothing recorded) when the worker no longer held the claim."""
    finished = await conn.fetchrow(
        FINISH_SQL, state, retry_at, attempt.error, job.id, worker_id, job.attempt
    )
    if finished is None:
        return False
    await conn.execute(
        INSERT_ATTEMPT, job.id, attempt.attempt, job.account_id, attempt.at,
        attempt.status_code, attempt.error,
    )  # fmt: skip
    if disable is not None:
        await conn.execute(DISABLE_SQL, job.account_id, job.webhook_id, False, disable)
    return True


async def delivery_log(
    conn: Conn, account_id: str, webhook_id: int, limit: int
) -> list[WebhookDelivery]:
    found: dict[str, WebhookDelivery] = {}
    for r in await conn.fetch(LOG_SQL, account_id, webhook_id, limit):
        delivery = found.get(r["id"]) or WebhookDelivery(
            id=r["id"], webhook_id=r["webhook_id"], event=r["event"], state=r["state"],
            created=r["created"], last_error=r["last_error"], attempts=(),
        )  # fmt: skip
        if r["attempt"] is not None:
            attempt = WebhookAttempt(r["attempt"], r["at"], r["status_code"], r["error"])
            delivery = dataclasses.replace(delivery, attempts=(*delivery.attempts, attempt))
        found[r["id"]] = delivery
    return list(found.values())


class WebhooksSql:
    """SqlStore's webhook methods (see Store), kept apart from storage/sql.py."""

    _dialect: Dialect

    async def _read(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _write(self, op: Op[T]) -> T:
        raise NotImplementedError

    async def _numbered(self, conn: Conn, account_id: str, kind: str) -> int:
        """The account's next number of ``kind`` (storage/sql.py's counters)."""
        raise NotImplementedError

    async def create_webhook(
        self, account_id: str, url: str, events: Sequence[str], secret: str
    ) -> Webhook:
        async def op(conn: Conn) -> Webhook:
            webhook_id = await self._numbered(conn, account_id, "webhook")
            hook = Webhook(account_id, webhook_id, url, tuple(events), secret, True, None,
                           time.time())  # fmt: skip
            await conn.execute(INSERT_WEBHOOK, *rows.values(WEBHOOKS, webhook_row(hook)))
            return hook

        return await self._write(op)

    async def get_webhook(self, account_id: str, webhook_id: int) -> Webhook | None:
        async def op(conn: Conn) -> Webhook | None:
            found = await conn.fetchrow(SELECT_WEBHOOK, account_id, webhook_id)
            return webhook(found) if found else None

        return await self._read(op)

    async def list_webhooks(self, account_id: str) -> list[Webhook]:
        async def op(conn: Conn) -> list[Webhook]:
            return [webhook(r) for r in await conn.fetch(LIST_WEBHOOKS, account_id)]

        return await self._read(op)

    async def update_webhook(
        self,
        account_id: str,
        webhook_id: int,
        *,
        url: str | None,
        events: Sequence[str] | None,
        enabled: bool | None,
        disabled_reason: str | None,
    ) -> Webhook | None:
        async def op(conn: Conn) -> Webhook | None:
            found = await conn.fetchrow(SELECT_WEBHOOK, account_id, webhook_id)
            if found is None:
                return None
            hook = webhook(found)
            hook = dataclasses.replace(
                hook,
                url=hook.url if url is None else url,
                events=hook.events if events is None else tuple(events),
                enabled=hook.enabled if enabled is None else enabled,
                disabled_reason=(
                    hook.disabled_reason
                    if enabled is None
                    else None
                    if enabled
                    else disabled_reason
                ),
            )
            row = webhook_row(hook)
            await conn.execute(
                UPDATE_WEBHOOK,
                account_id,
                webhook_id,
                row["url"],
                row["events"],
                row["enabled"],
                row["disabled_reason"],
            )
            return hook

        return await self._write(op)

    async def delete_webhook(self, account_id: str, webhook_id: int) -> bool:
        async def op(conn: Conn) -> bool:
            deleted = await conn.fetchrow(DELETE_WEBHOOK, account_id, webhook_id)
            return deleted is not None

        return await self._write(op)

    async def claim_webhook_deliveries(
        self, worker_id: str, *, now: float, lease_s: float, limit: int
    ) -> list[WebhookJob]:
        lock = self._dialect.lock_skip_locked
        return await self._write(
            lambda conn: claim(conn, lock, worker_id, now, now + lease_s, limit)
        )

    async def finish_webhook_delivery(
        self,
        job: WebhookJob,
        worker_id: str,
        *,
        sent: bool,
        retry_at: float | None,
        attempt: WebhookAttempt,
        disable: str | None = None,
    ) -> bool:
        state = "sent" if sent else "queued" if retry_at is not None else "failed"
        return await self._write(
            lambda conn: finish(
                conn,
                job,
                worker_id,
                state=state,
                retry_at=retry_at,
                attempt=attempt,
                disable=disable,
            )
        )

    async def webhook_deliveries(
        self, account_id: str, webhook_id: int, limit: int
    ) -> list[WebhookDelivery]:
        return await self._read(lambda conn: delivery_log(conn, account_id, webhook_id, limit))

    async def replay_webhook_delivery(
        self, account_id: str, webhook_id: int, delivery_id: str, now: float
    ) -> bool:
        async def op(conn: Conn) -> bool:
            found = await conn.fetchrow(REPLAY_SQL, account_id, webhook_id, delivery_id, now)
            return found is not None

        return await self._write(op)

    async def reseal_webhooks(self, reseal: Callable[[str], str]) -> int:
        async def op(conn: Conn) -> int:
            found = await conn.fetch("SELECT account_id, id, secret FROM webhooks")
            await conn.executemany(
                "UPDATE webhooks SET secret = $3 WHERE account_id = $1 AND id = $2",
                [(r["account_id"], r["id"], reseal(r["secret"])) for r in found],
            )
            return len(found)

        return await self._write(op)
