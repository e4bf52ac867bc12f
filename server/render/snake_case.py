"""How /api/v1 renders the people and settings of an account (seed 001's snake_case)."""

from __future__ import annotations

from typing import Any

import orjson

from server.business_hours import hours_json
from server.channels import (
    after_resolved,
    asks_rating,
    operator_api_url,
    settings_of,
    webhooks,
)
from server.contacts import ContactView
from storage.models import (
    Assistant,
    Attachment,
    CannedResponse,
    Channel,
    Contact,
    Conversation,
    Invite,
    Message,
    Operator,
    Site,
    Team,
    WidgetToken,
)


def operator_json(o: Operator) -> dict[str, Any]:
    return {
        "id": o.id,
        "name": o.name,
        "email": o.email,
        "is_admin": o.is_admin,
        "role": "admin" if o.is_admin else "operator",
        "lang": o.lang,
        "avatar_url": o.avatar_url,
        "active": o.active,
    }


def invite_json(i: Invite) -> dict[str, Any]:
    """A pending invitation as admins list it; its token is in the create answer only."""
    return {
        "id": i.id,
        "email": i.email,
        "name": i.name,
        "is_admin": i.is_admin,
        "team_ids": list(i.team_ids),
        "invited_by": i.invited_by,
        "created": i.created,
        "expires_at": i.expires,
    }


def site_json(s: Site) -> dict[str, Any]:
    return {
        "id": s.id,
        "name": s.name,
        "color": s.color,
        "position": s.position,
        "greeting": s.greeting,
        "team_id": s.team_id,
        "ask_rating": s.ask_rating,
        "widget_id": s.widget_id,
        "logo_url": s.logo_url,
        "assistant_id": s.assistant_id,
        "allowed_origins": list(s.allowed_origins),
        "voice_number": s.voice_number,
        "time_zone": s.time_zone,
        "business_hours": hours_json(s.business_hours),
        "away_message": s.away_message,
        "reply_time": s.reply_time,
    }


def assistant_json(a: Assistant) -> dict[str, Any]:
    """Never the API key."""
    return {
        "id": a.id,
        "name": a.name,
        "base_url": a.base_url,
        "model": a.model,
        "system_prompt": a.system_prompt,
        "max_tokens": a.max_tokens,
        "monthly_token_budget": a.monthly_token_budget,
    }


def widget_token_json(t: WidgetToken) -> dict[str, Any]:
    """Never the secret, which only the create answer carries."""
    return {"id": t.id, "site_id": t.site_id, "created": t.created}


def channel_json(c: Channel) -> dict[str, Any]:
    """Never the credentials: only the public settings and the health line."""
    return {
        "id": c.id,
        "kind": c.kind,
        "name": c.name,
        "key": c.key,
        **settings_of(c),
        **(
            {"api_url": operator_api_url(c)}
            if c.kind == "bot"
            else {
                "after_resolved": after_resolved(c),
                "ask_rating": asks_rating(c),
                "webhooks": webhooks(c),
            }
        ),
        "created": c.created,
        "health": {
            "last_inbound": c.last_inbound,
            "last_outbound": c.last_outbound,
            "last_error": c.last_error,
            "last_error_at": c.last_error_at,
        },
    }


def team_json(t: Team) -> dict[str, Any]:
    return {
        "id": t.id,
        "name": t.name,
        "member_ids": list(t.member_ids),
        "auto_assign": t.auto_assign,
        "assign_limit": t.assign_limit,
    }


def canned_json(c: CannedResponse) -> dict[str, Any]:
    return {
        "id": c.id,
        "name": c.name,
        "tag": c.tag,
        "message": c.message,
        "personal": c.owner is not None,
    }


# Seed 003's `channel` tag for each source app, as the inbox colours them.
CHANNEL_TAGS = {
    "chatbot": "chatbot",
    "smsbroadcast": "sms",
    "emailbroadcast": "email",
    "liveoperator": "chat",
}


def conversation_data(c: Conversation) -> dict[str, Any]:
    info = c.user_info
    return {
        "id": c.id,
        "channel": CHANNEL_TAGS[c.source_app],
        "source_app": c.source_app,
        "status": c.status,
        "mode": c.mode,
        "bot_answered": c.bot_answered,
        "operator_id": c.operator_id,
        "team_id": c.team_id,
        "site_id": c.site_id,
        "channel_id": c.channel_id,
        "qualified_at": c.qualified_at,
        "session_id": c.session_id,
        "control": c.control,
        # A bot platform's user and the attributes it handed over for operators to see; its
        # hidden attributes and customData are never shown.
        "bot_user_id": c.bot_user_id,
        "attributes": orjson.loads(c.attributes),
        # Where the widget's visitor is: server/visitor_context.py.
        "visitor_context": orjson.loads(c.visitor_context),
        "contact_data": {
            "name": " ".join(n for n in (info.fname, info.lname) if n),
            "fname": info.fname,
            "lname": info.lname,
            "email": info.email,
            "phone": info.phone,
            "info": info.info,
        },
        "blocked": c.block_type is not None,
        "block_type": c.block_type,
        "translation": {"enabled": c.translate, "visitor_lang": c.visitor_lang},
        "preview": c.preview,
        "unread": c.unread,
        "created": c.created,
        "last_activity": c.last_activity,
        "resolved_at": c.resolved_at,
        "last_seq": c.last_seq,
        # How far the visitor has read (a message seq): the inbox's "Seen".
        "visitor_read_seq": c.visitor_read_seq,
        "rating": rating_data(c),
    }


def contact_json(c: Contact) -> dict[str, Any]:
    """A contact with its identities, proven ones first."""
    return {
        "id": c.id,
        "name": c.name,
        "created": c.created,
        "identities": [
            {
                "kind": i.identity.kind,
                "value": i.identity.value,
                "verified": i.verified,
                "created": i.created,
            }
            for i in c.identities
        ],
    }


def contact_with_opt_outs(c: Contact, opt_outs: list[tuple[int, str, float]]) -> dict[str, Any]:
    """A contact and where they opted out of SMS (texted STOP): channel, phone, since when."""
    found = [{"channel_id": ch, "phone": phone, "since": since} for ch, phone, since in opt_outs]
    return {**contact_json(c), "sms_opt_outs": found}


def contact_view_json(v: ContactView) -> dict[str, Any]:
    """A contact with its conversations on every channel and its possible matches."""
    return {
        **contact_with_opt_outs(v.contact, v.sms_opt_outs),
        "conversations": [
            {
                "id": c.id,
                "channel": CHANNEL_TAGS[c.source_app],
                "channel_id": c.channel_id,
                "status": c.status,
                "preview": c.preview,
                "last_activity": c.last_activity,
            }
            for c in v.conversations
        ],
        "possible_matches": [contact_json(m) for m in v.matches],
    }


def rating_data(c: Conversation) -> dict[str, Any] | None:
    """The visitor's latest rating; ``resolved_at`` names the resolution it rates."""
    if c.rating is None:
        return None
    return {"score": c.rating, "comment": c.rating_comment, "resolved_at": c.rated_resolved_at}


def message_data(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "conversation_id": m.convo_id,
        "seq": m.seq,
        "sender": m.sender,
        "operator_id": m.operator_id,
        "operator_name": m.operator_name,
        "content": m.text,
        "created": m.created,
        "client_msg_id": m.client_msg_id,
        "delivery": m.delivery,
        "private": m.private,
        "image_url": m.image_url,
        "translation": m.translation,
        "translation_lang": m.translation_lang,
        # An AI assistant's reply (issue 17): the model that wrote it and what it cost.
        "model": m.model,
        "tokens": m.tokens,
        # A customer's mail (issue 15): its files, for operators only.
        "attachments": attachments_data(m.attachments),
    }


def attachments_data(attachments: tuple[Attachment, ...]) -> list[dict[str, Any]]:
    return [
        {"name": a.name, "content_type": a.content_type, "size": a.size, "url": a.url}
        for a in attachments
    ]
