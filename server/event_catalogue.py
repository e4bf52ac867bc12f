"""Every event kind the server sends to clients, declared once.

An event is either log or state:
- log: numbered in its channel, kept with the payload it was sent with, and replayed to a
  client that reconnects with a cursor (SSE ``Last-Event-ID``, the sockets' ``since``/``seq``);
- state: sent once with no number and never replayed; a client that missed one reloads the
  state (typing expires on its own, presence and delivery are in the REST answers).

Who receives it is the channel it is published on (see server/events.py):
- ``ACCOUNT``: every operator of the account, on the SSE stream and the tenant WebSocket alike;
- ``CONVERSATION``: the visitor's WebSocket that follows the conversation;
- ``SESSION``: a visitor's WebSocket that has no conversation yet.

Controls that only frame a connection (``ready``, ``reset``, ``ack``, ``pong``, ``error``) are
not events and are not listed here. The inbox's ``EVENT_KINDS`` (widget_assets/app/api.js) must
name every kind operators receive; tests/server/test_event_catalogue.py holds it to this list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Audience(enum.Enum):
    ACCOUNT = "account"
    CONVERSATION = "conversation"
    SESSION = "session"


@dataclass(frozen=True, slots=True)
class EventKind:
    name: str
    # Log (numbered, kept, replayed) rather than state.
    sequenced: bool
    audiences: frozenset[Audience]


_ACCOUNT = frozenset({Audience.ACCOUNT})

# A conversation opened: the operators' snake_case conversation.
CONVERSATION_NEW = EventKind("conversation:new", True, _ACCOUNT)
# A message: operators get it with its conversation; the visitor gets it in camelCase unless
# it is a private note. Numbered by the account seq for operators, the message seq for visitors.
MESSAGE_NEW = EventKind("message:new", True, frozenset({Audience.ACCOUNT, Audience.CONVERSATION}))
# A conversation's announced fields (status, assignment, contact, block, translation, unread)
# changed without a message: the operators' snake_case conversation.
CONVERSATION_UPDATED = EventKind("conversation:updated", True, _ACCOUNT)
# Who is in control changed (bot, queued, human, closed): a human took over, it went back to a
# queue, or it closed. ``{"conversation_id", "control", "previous", "operator_id",
# "conversation"}``; conversation:updated follows with the whole conversation.
CONTROL_CHANGED = EventKind("conversation:control_changed", True, _ACCOUNT)
# The conversation became a qualified lead (issue 17): its visitor gave an email or phone in
# the widget or chat window, or an operator marked it. Once per conversation; the operators'
# snake_case conversation.
CONVERSATION_QUALIFIED = EventKind("conversation:qualified", True, _ACCOUNT)
# The visitor's copy of a status change; its log twin for operators is conversation:updated.
STATUS = EventKind("status", False, frozenset({Audience.CONVERSATION}))
# Someone is typing; the visitor hears only operators typing.
TYPING = EventKind("typing", False, frozenset({Audience.ACCOUNT, Audience.CONVERSATION}))
# A read cursor moved (issue 18's "Seen"): operators hear the visitor's (``{"conversation_id",
# "visitor_read_seq"}``, a message seq), the visitor hears the operators' (``{"convoID",
# "seenSeq"}``, a visitor seq). Both are in the REST answers after a reload.
READ = EventKind("read", False, frozenset({Audience.ACCOUNT, Audience.CONVERSATION}))
# An operator came online or went away.
PRESENCE = EventKind("presence", False, _ACCOUNT)
# An SMS or email reply's delivery became final (sent or failed).
DELIVERY = EventKind("delivery", False, _ACCOUNT)
# An inbound MMS picture was fetched and stored: the message's image_url and attachments as
# they now stand, for the inbox.
MESSAGE_IMAGE = EventKind("message:image", False, _ACCOUNT)
# A phone opted out of SMS on a channel (STOP) or back in (START): the inbox turns the
# composer of that phone's conversations on the channel off or on.
SMS_OPT_OUT = EventKind("sms_opt_out", False, _ACCOUNT)
# An operator merged two contacts (issue 14): the inbox reloads a contact panel showing either.
CONTACT_MERGED = EventKind("contact:merged", False, _ACCOUNT)
# An operator changed their profile, or an admin changed or deactivated them (issue 18): the
# operator as the admin REST renders it, so colleagues' inboxes show the new name and avatar.
OPERATOR_UPDATED = EventKind("operator:updated", False, _ACCOUNT)
# An operator's proactive message opened a conversation for a waiting widget session.
SESSION_CONVERSATION = EventKind("conversation", False, frozenset({Audience.SESSION}))

CATALOGUE: tuple[EventKind, ...] = (
    CONVERSATION_NEW,
    MESSAGE_NEW,
    CONVERSATION_UPDATED,
    CONTROL_CHANGED,
    CONVERSATION_QUALIFIED,
    STATUS,
    TYPING,
    READ,
    PRESENCE,
    DELIVERY,
    SMS_OPT_OUT,
    MESSAGE_IMAGE,
    CONTACT_MERGED,
    OPERATOR_UPDATED,
    SESSION_CONVERSATION,
)


def kinds_for(audience: Audience) -> tuple[EventKind, ...]:
    return tuple(kind for kind in CATALOGUE if audience in kind.audiences)
