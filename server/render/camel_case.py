"""Seed 000's wire format (camelCase), spoken by the App Command API and the chat window."""

from __future__ import annotations

from typing import Any

from storage.models import Conversation, Message, UserInfo


def user_info_json(info: UserInfo) -> dict[str, str]:
    # `info` is the operators' own notes about the visitor: not for seed 000's surfaces.
    return {"fname": info.fname, "lname": info.lname, "email": info.email, "phone": info.phone}


def message_json(m: Message, *, visitor: bool = False) -> dict[str, Any]:
    """As the visitor's side sees it: an operator's reply in the visitor's language when live
    translation made one (the original stays in ``originalMessage``). ``visitor`` is for the
    visitor's own surfaces (the chat window and its socket): ``seq`` is then the visitor seq,
    gapless whatever notes lie between; the App Command API keeps the message seq."""
    shown = m.translation if m.translation is not None and m.sender != "visitor" else m.text
    return {
        "id": m.id,
        "seq": m.visitor_seq if visitor else m.seq,
        "convoID": m.convo_id,
        "sender": m.sender,
        "operatorID": m.operator_id,
        "operatorName": m.operator_name,
        "message": shown,
        "originalMessage": m.text if shown is not m.text else None,
        "imageURL": m.image_url,
        "created": m.created,
        "clientMsgID": m.client_msg_id,
        "delivery": m.delivery,
    }


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "convoID": c.id,
        "sourceApp": c.source_app,
        "status": c.status,
        "mode": c.mode,
        "operatorID": c.operator_id,
        "teamID": c.team_id,
        "userInfo": user_info_json(c.user_info),
        "unread": c.unread,
        "created": c.created,
        "lastActivity": c.last_activity,
        "resolvedAt": c.resolved_at,
        "lastSeq": c.last_seq,
        "siteID": c.site_id,
        "channelID": c.channel_id,
    }
