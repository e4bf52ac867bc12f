"""The Aimylogic Operator API (seed 004), served per bot channel at its ``{apiUrl}``:
``{public_url}/operator-api/{key}``.

The key in the path is the only credential the contract has (it documents no other): an
unknown, deleted or rotated key, or a channel that is not a bot's, is ``404``. A body that is
not what the seed documents is ``400`` with a message that says what is wrong; success is
``200`` with a JSON body. Each call is one engine call (or, for setWebhook, one channel
update), and marks the channel's health line as having heard from the platform.

Beyond the seed: ``customData.history``, when the platform sends it, is the bot's dialogue
before the hand-over, ``[{"sender": "client" | "bot", "text": "..."}]``, oldest first.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, check_identifier, ok, read_fields
from server.conversations import HandOver, Origin, bot_origin
from server.errors import Invalid, NotFound
from server.render.operator_api import destination
from server.services import Services, services
from server.text import has_control_characters
from storage.models import Channel, Sender, UserInfo

ROOT = "/operator-api/{key}"
# A platform's user id: theirs, opaque; bounded like our client message ids.
USER_ID_MAX = 128
USER_NAME_MAX = 100
FILE_NAME_MAX = 255
# What operators are shown of a user: a few dozen short facts, not a document.
ATTRIBUTES_MAX = 50
ATTRIBUTE_KEY_MAX = 100
ATTRIBUTE_VALUE_MAX = 1000
# customData is kept whole for integrations; past this it is a file, not a hand-over.
CUSTOM_DATA_MAX_BYTES = 16_384
HISTORY_MAX = 200
_HISTORY_SENDERS: dict[str, Sender] = {"client": "visitor", "bot": "bot"}
CLOSED_BY_CUSTOMER = "The customer closed the chat"

Handler = Callable[[Services, Channel, Fields], Awaitable[Response]]


def _user_id(fields: Fields) -> str:
    user_id = fields.text("userId", required=True, max_chars=USER_ID_MAX)
    assert user_id is not None
    if not user_id.strip():
        raise Invalid("missing_field", "userId is required")
    return check_identifier(user_id, "userId")


def _origin(channel: Channel, fields: Fields) -> Origin:
    return bot_origin(channel.id, _user_id(fields))


def _default_name(channel: Channel, user_id: str) -> UserInfo:
    """The seed: without a userName, operators see "{channel} {userId}"."""
    return UserInfo(fname=f"{channel.name} {user_id}"[:USER_NAME_MAX])


def _user_name(fields: Fields) -> UserInfo | None:
    name = fields.text("userName", max_chars=USER_NAME_MAX)
    if name is None or not name.strip():
        return None
    first, _, last = name.strip().partition(" ")
    return UserInfo(fname=first, lname=last.strip())


def _attributes(fields: Fields, name: str) -> str | None:
    """``{"key": "value"}`` as the seed shows it (an object, or the same as a JSON string):
    text values, numbers and booleans written as text; nothing nested."""
    given = fields.mapping(name)
    if given is None:
        return None
    if len(given) > ATTRIBUTES_MAX:
        raise Invalid("invalid_field", f"{name} may hold at most {ATTRIBUTES_MAX} keys")
    found: dict[str, str] = {}
    for key, value in given.items():
        if not key or len(key) > ATTRIBUTE_KEY_MAX or has_control_characters(key):
            raise Invalid(
                "invalid_field",
                f"{name} keys must be 1 to {ATTRIBUTE_KEY_MAX} characters without control"
                " characters",
            )
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            raise Invalid("invalid_field", f"{name}.{key} must be a string, number or boolean")
        if len(text) > ATTRIBUTE_VALUE_MAX or "\x00" in text:
            raise Invalid(
                "invalid_field",
                f"{name}.{key} must be at most {ATTRIBUTE_VALUE_MAX} characters, without NUL",
            )
        found[key] = text
    return orjson.dumps(found).decode()


def _custom_data(fields: Fields) -> tuple[str | None, tuple[tuple[Sender, str], ...]]:
    """customData kept whole (as JSON), and the bot's dialogue in its ``history``."""
    given = fields.mapping("customData")
    if given is None:
        return None, ()
    text = orjson.dumps(given).decode()
    if len(text.encode()) > CUSTOM_DATA_MAX_BYTES or "\\u0000" in text:
        raise Invalid(
            "invalid_field", f"customData must be at most {CUSTOM_DATA_MAX_BYTES} bytes, no NUL"
        )
    return text, _history(given.get("history"))


def _history(value: Any) -> tuple[tuple[Sender, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or len(value) > HISTORY_MAX:
        raise Invalid(
            "invalid_field", f"customData.history must be a list of {HISTORY_MAX} at most"
        )
    lines: list[tuple[Sender, str]] = []
    for item in value:
        item = item if isinstance(item, dict) else {}
        sender = _HISTORY_SENDERS.get(str(item.get("sender")))
        text = item.get("text")
        if sender is None or not isinstance(text, str) or not text.strip():
            raise Invalid(
                "invalid_field",
                'customData.history items must be {"sender": "client" or "bot", "text": "..."}',
            )
        lines.append((sender, text))
    return tuple(lines)


def _destination_id(fields: Fields) -> int:
    """A team id, as the string getDestinations gave (or the same number)."""
    team_id = fields.integer("destinationId", required=True, minimum=1)
    assert team_id is not None
    return team_id


async def set_webhook(svc: Services, channel: Channel, fields: Fields) -> Response:
    url = fields.text("url", required=True)
    assert url is not None
    await svc.channels.set_bot_webhook(channel, url)
    return ok()


async def send_text(svc: Services, channel: Channel, fields: Fields) -> Response:
    origin = _origin(channel, fields)
    text = fields.text("text", required=True)
    assert text is not None and origin.bot_user_id is not None
    await svc.engine.customer_message(
        channel.account_id, origin, _default_name(channel, origin.bot_user_id), text
    )
    return ok()


async def send_file(svc: Services, channel: Channel, fields: Fields) -> Response:
    origin = _origin(channel, fields)
    url = fields.text("url", required=True)
    name = fields.text("fileName", max_chars=FILE_NAME_MAX) or ""
    size = fields.integer("size", minimum=0)
    assert url is not None and origin.bot_user_id is not None
    text = " ".join(t for t in (name, f"({size} bytes)" if size is not None else "") if t)
    await svc.engine.customer_message(
        channel.account_id,
        origin,
        _default_name(channel, origin.bot_user_id),
        text,
        image_url=url.strip(),
    )
    return ok()


async def close_chat(svc: Services, channel: Channel, fields: Fields) -> Response:
    user_id = _user_id(fields)
    text = fields.text("text") or CLOSED_BY_CUSTOMER
    await svc.engine.close_by_customer(channel.account_id, channel.id, user_id, text)
    return ok()


async def select_destination(svc: Services, channel: Channel, fields: Fields) -> Response:
    user_id = _user_id(fields)
    custom_data, dialogue = _custom_data(fields)
    hand = HandOver(
        channel_id=channel.id,
        user_id=user_id,
        team_id=_destination_id(fields),
        user_info=_user_name(fields) or _default_name(channel, user_id),
        attributes=_attributes(fields, "attributes"),
        hidden_attributes=_attributes(fields, "hiddenAttributes"),
        custom_data=custom_data,
        dialogue=dialogue,
    )
    try:
        await svc.engine.hand_over(channel.account_id, hand)
    except NotFound as exc:
        if exc.code != "team_not_found":
            raise
        raise Invalid(
            "unknown_destination", "destinationId names no agent group (see getDestinations)"
        ) from None
    return ok()


async def get_destinations(svc: Services, channel: Channel, fields: Fields) -> Response:
    found = await svc.engine.destinations(channel.account_id)
    return JSON({"destinations": [destination(team, online) for team, online in found]})


def _endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        svc = services(request)
        channel = await svc.channels.by_key(str(request.path_params["key"]))
        if channel.kind != "bot":
            raise NotFound("channel_not_found", "no such channel")
        response = await handler(svc, channel, await read_fields(request))
        await svc.store.record_channel_inbound(channel.account_id, channel.id, time.time())
        return response

    return endpoint


routes = [
    Route(f"{ROOT}/setWebhook", _endpoint(set_webhook), methods=["POST"]),
    Route(f"{ROOT}/sendText", _endpoint(send_text), methods=["POST"]),
    Route(f"{ROOT}/sendFile", _endpoint(send_file), methods=["POST"]),
    Route(f"{ROOT}/closeChat", _endpoint(close_chat), methods=["POST"]),
    Route(f"{ROOT}/selectDestination", _endpoint(select_destination), methods=["POST"]),
    Route(f"{ROOT}/getDestinations", _endpoint(get_destinations), methods=["GET"]),
]
