"""The outbound-delivery table, as both SQL backends share it.

Every message appended with ``delivery == "queued"`` gets one ``outbound`` row in the same
transaction. Workers in any number of processes claim due rows for a lease, deliver them, and
finish them; the ``attempts`` counter goes up with every claim, so it doubles as the fencing
token: a worker whose lease ran out and whose row was claimed again finishes nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from storage.models import Conversation, Message, Sender, SourceApp, UserInfo

if TYPE_CHECKING:
    # Only a type: storage.rows imports storage.base, which imports this module.
    from storage.rows import Row

# "bot": events posted to a bot platform's webhook (issue 16), one per queued message.
OutboundChannel = Literal["sms", "email", "bot"]
OutboundState = Literal["queued", "sent", "failed"]

# The channel a queued message of each source app leaves through.
CHANNEL_OF_SOURCE: Mapping[SourceApp, OutboundChannel] = {
    "smsbroadcast": "sms",
    "emailbroadcast": "email",
}

# A row is due when it is queued, its backoff is over, nobody holds a live lease on it, and no
# earlier message of its conversation is still queued: a customer reads the replies in the
# order they were written, so one conversation never has two messages in flight. ``{now}`` is
# the dialect's placeholder for the claim's time.
DUE_WHERE = (
    "o.state = 'queued' AND o.next_attempt_at <= {now} AND (o.lease_until IS NULL OR"
    " o.lease_until <= {now}) AND NOT EXISTS (SELECT 1 FROM outbound p WHERE"
    " p.convo_id = o.convo_id AND p.seq < o.seq AND p.state = 'queued')"
)
DUE_ORDER = "o.next_attempt_at, o.convo_id, o.seq"
# Of the claimed kinds, a row is the worker's when its kind is in ``{unbound}`` (the kinds it
# has installation-wide settings for) or its conversation has a channel of its own, whose
# credentials every worker can open (issue 14).
BOUND_WHERE = (
    "(o.channel IN ({unbound}) OR EXISTS (SELECT 1 FROM conversations b"
    " WHERE b.id = o.convo_id AND b.channel_id IS NOT NULL))"
)

# What a worker needs to deliver one row of ``{rows}`` (outbound, or the rows just claimed).
JOB_SELECT = (
    # What the customer reads: the translation into their language when live translation made
    # one (as the chat window shows it), and an image as its link, which SMS and email carry.
    "SELECT o.account_id, a.name AS account_name, o.convo_id, o.seq, m.id AS message_id,"
    " o.channel, coalesce(m.translation, m.text) AS text, m.sender, m.operator_name, c.fname,"
    " c.lname, c.email, c.phone, m.created, o.attempts, m.image_url, c.channel_id, o.payload"
    " FROM {rows} o JOIN messages m ON m.convo_id = o.convo_id AND m.seq = o.seq"
    " JOIN conversations c ON c.id = o.convo_id JOIN accounts a ON a.id = o.account_id"
)

# Filled by finish_params. The WHERE refuses a caller that no longer holds the claim it was
# given (see the module docstring); the row comes back only when the outcome was recorded.
FINISH_SQL = (
    "UPDATE outbound SET state = $1, claimed_by = NULL, lease_until = NULL,"
    " next_attempt_at = coalesce($2, next_attempt_at), last_error = $3"
    " WHERE convo_id = $4 AND seq = $5 AND claimed_by = $6 AND attempts = $7"
    " AND state = 'queued' RETURNING seq"
)
SET_DELIVERY_SQL = "UPDATE messages SET delivery = $1 WHERE convo_id = $2 AND seq = $3"


@dataclass(frozen=True, slots=True)
class OutboundJob:
    """One claimed delivery: the message, where it goes, and the claim itself."""

    account_id: str
    account_name: str
    convo_id: str
    seq: int
    message_id: str
    channel: OutboundChannel
    text: str
    sender: Sender
    operator_name: str | None
    contact: UserInfo
    # The message's creation time (an email's Date).
    created: float
    # Claims of this row so far, this one included: the fencing token of finish_outbound.
    attempt: int
    # The conversation's channel, whose credentials send it; None: the installation's settings.
    channel_id: int | None = None
    # What a bot platform is posted, as the change that queued it rendered it (JSON text).
    payload: str | None = None


@dataclass(frozen=True, slots=True)
class Claim:
    """What Store.claim_outbound was asked for: up to ``limit`` due rows on ``channels``, held
    by ``worker_id`` until ``lease_until``; of conversations without a channel of their own,
    only those on ``unbound`` channels."""

    worker_id: str
    channels: tuple[OutboundChannel, ...]
    now: float
    lease_until: float
    limit: int
    unbound: tuple[OutboundChannel, ...]


def job(row: Row) -> OutboundJob:
    """The job in a row of JOB_SELECT."""
    return OutboundJob(
        account_id=row["account_id"], account_name=row["account_name"],
        convo_id=row["convo_id"], seq=row["seq"], message_id=row["message_id"],
        channel=row["channel"], text="\n\n".join(t for t in (row["text"], row["image_url"]) if t),
        sender=row["sender"], operator_name=row["operator_name"],
        contact=UserInfo(
            fname=row["fname"], lname=row["lname"], email=row["email"], phone=row["phone"]
        ),
        created=row["created"], attempt=row["attempts"], channel_id=row["channel_id"],
        payload=row["payload"],
    )  # fmt: skip


def queued_rows(
    account_id: str,
    conversation: Conversation,
    messages: Iterable[Message],
    payloads: Mapping[int, str],
) -> list[dict[str, Any]]:
    """The outbound rows, by column, for the queued ones among ``messages``; a bot
    platform's user's conversation posts each message's payload to the platform."""
    queued = [m for m in messages if m.delivery == "queued"]
    if not queued:
        return []
    channel: OutboundChannel = (
        "bot" if conversation.bot_user_id is not None
        else CHANNEL_OF_SOURCE[conversation.source_app]
    )  # fmt: skip
    return [
        {"convo_id": m.convo_id, "seq": m.seq, "account_id": account_id, "channel": channel,
         "state": "queued", "attempts": 0, "claimed_by": None, "lease_until": None,
         "next_attempt_at": m.created, "last_error": None, "created": m.created,
         "payload": payloads.get(m.seq)}
        for m in queued
    ]  # fmt: skip


def finished_state(*, sent: bool, retry_at: float | None) -> OutboundState:
    """The row's state after an attempt: sent, queued again for ``retry_at``, or failed."""
    if sent and retry_at is not None:
        raise ValueError("a sent message is not retried")
    if sent:
        return "sent"
    return "queued" if retry_at is not None else "failed"


def finish_params(
    job: OutboundJob,
    worker_id: str,
    state: OutboundState,
    error: str | None,
    retry_at: float | None,
) -> tuple[Any, ...]:
    """FINISH_SQL's values, in slot order."""
    return (state, retry_at, error, job.convo_id, job.seq, worker_id, job.attempt)
