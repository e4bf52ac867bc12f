"""Seed 004's wire format: the Aimylogic Operator API's events, posted to a bot platform's
webhook (TextMessage, FileMessage, Closed, SelectDestination) and its getDestinations list.

Field names and types are the seed's: ids are strings, ``hasOnline`` a boolean, a file's
``size`` an integer (its table; the example's "2" is a string, which platforms accept too).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

from storage.models import Message, Operator, Team


def employee(operator: Operator | None) -> dict[str, str]:
    """The seed's ``employee``: the operator's id, first and last name, and avatar. A name is
    split at its first space; one word is the first name."""
    if operator is None:
        return {"employeeId": "", "firstName": "", "lastName": "", "avatarUrl": ""}
    first, _, last = operator.name.partition(" ")
    return {
        "employeeId": str(operator.id),
        "firstName": first,
        "lastName": last.strip(),
        "avatarUrl": operator.avatar_url,
    }


def destination(team: Team, has_online: bool) -> dict[str, Any]:
    return {"destinationId": str(team.id), "name": team.name, "hasOnline": has_online}


def file_name(url: str) -> str:
    """The last segment of a file's URL, as the name a platform shows for it."""
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1]) or "file"


def reply_event(message: Message, operator: Operator) -> dict[str, Any]:
    """An operator's answer: a FileMessage when it carries a file (its text the comment), else
    a TextMessage. The size of a file that is only a link is not known here: 0."""
    if message.image_url is not None:
        return {
            "type": "FileMessage",
            "url": message.image_url,
            "name": file_name(message.image_url),
            "size": 0,
            "comment": message.text,
            "employee": employee(operator),
        }
    shown = message.translation if message.translation is not None else message.text
    return {"type": "TextMessage", "text": shown, "employee": employee(operator)}


def closed_event(operator: Operator | None) -> dict[str, Any]:
    return {"type": "Closed", "employee": employee(operator)}


def select_destination_event(team: Team, has_online: bool) -> dict[str, Any]:
    return {"type": "SelectDestination", "destination": destination(team, has_online)}


def addressed(event: dict[str, Any], message_id: str, user_id: str) -> dict[str, Any]:
    """``event`` as posted: with our message id (which the platform dedupes retries by) and
    the platform's user."""
    return {"id": message_id, "userId": user_id, **event}
