"""Seed 000's wire format (camelCase), spoken by the App Command API and the chat window."""

from __future__ import annotations

from typing import Any

from storage.models import Conversation, Message, UserInfo


def user_info_json(info: UserInfo) -> dict[str, str]:
    return {"fname": info.fname, "lname": info.lname, "email": info.email, "phone": info.phone}


def message_json(m: Message) -> dict[str, Any]:
    return {
        "id": m.id,
        "seq": m.seq,
        "convoID": m.convo_id,
        "sender": m.sender,
        "operatorID": m.operator_id,
        "operatorName": m.operator_name,
        "message": m.text,
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
    }
