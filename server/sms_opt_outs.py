"""SMS opt-out per channel and phone (issue 14): a customer who texts STOP gets no more
replies from that channel until they text START.

Twilio itself blocks and answers the keywords on long codes and toll-free numbers (research
note A, "Opt-out"); we keep the same state so that the inbox can say why the composer is off
and the outbound worker refuses before the provider does. The provider's own word wins too:
``OptOutType`` (a Messaging Service with Advanced Opt-Out) and a send refused with error 21610
("Attempt to send to unsubscribed recipient") record the opt-out as well.
"""

from __future__ import annotations

import orjson

from server.event_catalogue import SMS_OPT_OUT
from server.events import EventFeed
from storage.base import Store

# Twilio's default opt-out keywords (support article 223134027), plus OPTOUT, REVOKE and
# STOP ALL, which carriers' newer opt-out rules add: a customer who used any of them meant
# it, and an unwanted silence costs less than a text sent against someone's wish.
OPT_OUT_WORDS = frozenset(
    {"STOP", "STOPALL", "STOP ALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "OPTOUT", "REVOKE"}
)
# What lifts it at Twilio: START, YES, UNSTOP.
OPT_IN_WORDS = frozenset({"START", "YES", "UNSTOP"})
# Twilio's error for a send to a phone that opted out.
UNSUBSCRIBED_ERROR = "21610"
REFUSED = "the customer opted out of SMS on this channel (texted STOP); they must text START"


def opt_out_change(body: str, opt_out_type: str | None) -> bool | None:
    """True when the message opts its sender out, False when it opts them back in, None
    when it does neither. Only a whole body counts ("stop by tomorrow" is a message)."""
    kind = (opt_out_type or "").strip().upper()
    if kind == "STOP":
        return True
    if kind == "START":
        return False
    word = " ".join(body.split()).upper()
    if word in OPT_OUT_WORDS:
        return True
    if word in OPT_IN_WORDS:
        return False
    return None


async def record(
    store: Store,
    feed: EventFeed,
    account_id: str,
    channel_id: int,
    phone: str,
    opted_out: bool,
    now: float,
) -> None:
    """Stores the phone's opt-out (or its end) and, when that changed something, tells the
    account's operators: the inbox turns the composer of its conversations off or on."""
    since = now if opted_out else None
    if not await store.set_sms_opt_out(account_id, channel_id, phone, since):
        return
    data = {"channel_id": channel_id, "phone": phone, "opted_out": opted_out, "since": since}
    await feed.ephemeral(account_id, SMS_OPT_OUT, orjson.dumps(data))


async def opted_out(store: Store, account_id: str, channel_id: int, phone: str) -> bool:
    return any(c == channel_id for c, _, _ in await store.sms_opt_outs(account_id, [phone]))
