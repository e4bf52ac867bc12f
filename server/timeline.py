"""The conversation's timeline (issue 18): the small system lines the inbox shows between
messages: taken over, transferred (with a hand-over note), status changes, resolved by whom,
reopened, blocked.

No second log: a change worth a line already commits a ``conversation:updated`` account event
(server/events.py), and its payload carries the lines as ``timeline``, rendered while the
change is decided, with who made it (``Cause``), which only the engine knows. The stream
delivers them live; ``Store.event_payloads`` reads them back after a reload. They are
account events, so the visitor never receives them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from storage.models import Change, Operator, Status, Team

# The key of a conversation:updated payload that holds its lines, and how it reads in the
# payload's JSON text (orjson writes no spaces): what the Store looks for.
TIMELINE_KEY = "timeline"
MARKER = f'"{TIMELINE_KEY}":['
# The newest events with lines a conversation's view reads: more than a conversation lives
# through, and a bound on what one view costs.
LINES_MAX = 500
# A hand-over note is a sentence or two for the colleague taking over.
NOTE_MAX_CHARS = 1000

_STATUS_LABELS: dict[Status, str] = {
    "open": "Open",
    "waiting": "Waiting",
    "active": "Active",
    "resolved": "Resolved",
}


@dataclass(frozen=True, slots=True)
class Cause:
    """Who made a change and how: the operator (None: the customer, a bot platform or the
    server), and for a transfer its target and the hand-over note typed with it."""

    by: Operator | None = None
    to_operator: Operator | None = None
    to_team: Team | None = None
    note: str = ""
    at: float = 0.0


NO_CAUSE = Cause()


def lines(change: Change, cause: Cause) -> list[dict[str, Any]]:
    """The timeline lines ``change`` is worth, oldest first; none for a new conversation."""
    before, after = change.before, change.after
    if before is None:
        return []
    by = cause.by
    who = by.name if by is not None else None
    customer = any(m.sender == "visitor" for m in change.messages)
    found: list[dict[str, Any]] = []

    def line(kind: str, text: str, **fields: Any) -> None:
        found.append({
            "kind": kind, "text": text, "by": by.id if by else None, "by_name": who,
            "after_seq": after.last_seq, "at": cause.at or after.last_activity, **fields,
        })  # fmt: skip

    transfer = cause.to_operator is not None or cause.to_team is not None
    moved = before.operator_id != after.operator_id or before.team_id != after.team_id
    if transfer:
        text = f"{who or 'An operator'} transferred the conversation to {_target(cause)}"
        line(
            "transferred", text, from_operator=before.operator_id, operator_id=after.operator_id,
            team_id=after.team_id, note=cause.note,
        )  # fmt: skip
    elif moved and after.operator_id is not None and before.operator_id is None and by:
        line("taken_over", f"{who} took over", operator_id=after.operator_id)
    elif moved and after.operator_id is None:
        line("unassigned", "Back in the queue", from_operator=before.operator_id)
    elif moved and before.operator_id is None:
        # Nobody chose: the team's round robin gave it its owner.
        line("assigned", "Assigned automatically", operator_id=after.operator_id)
    elif moved:
        line("assigned", "Assigned to another operator", operator_id=after.operator_id)
    if before.status != after.status:
        status, previous = after.status, before.status
        if status == "resolved":
            line("resolved", f"Resolved by {who}" if who else "Resolved", status=status)
        elif previous == "resolved":
            text = f"Reopened by {who}" if who else "Reopened"
            if customer:
                text = "Reopened: the customer wrote again"
            line("reopened", text, status=status, previous=previous)
        elif not moved and not change.messages:
            # Set on purpose; a status a message moves (a reply makes it active, the
            # customer's answer ends waiting) is told by the message itself.
            label = _STATUS_LABELS[status]
            text = f"{who} set the status to {label}" if who else f"Status set to {label}"
            line("status", text, status=status, previous=previous)
    if before.block_type != after.block_type:
        if after.block_type is None:
            line("unblocked", f"{who or 'An operator'} unblocked the visitor", block_type=None)
        else:
            text = f"{who or 'An operator'} blocked the visitor ({after.block_type})"
            line("blocked", text, block_type=after.block_type)
    return found


def _target(cause: Cause) -> str:
    if cause.to_operator is not None:
        return cause.to_operator.name
    assert cause.to_team is not None, "a transfer names an operator or a team"
    return f"team {cause.to_team.name}"


def from_payloads(payloads: list[str]) -> list[dict[str, Any]]:
    """The lines kept in conversation:updated payloads (``Store.event_payloads``), oldest
    first. The Store's filter is only a cheap first cut (a bot platform's attributes may name
    a key ``timeline`` too): the payload's own top-level key is what counts."""
    found: list[dict[str, Any]] = []
    for payload in payloads:
        kept = orjson.loads(payload).get(TIMELINE_KEY)
        if isinstance(kept, list):
            found.extend(kept)
    return found
