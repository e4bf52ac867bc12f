"""The App Command API of seed 000: ``POST /`` with accountID, key, app, command and json."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from types import MappingProxyType

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, ok, read_fields
from server.conversations import (
    HISTORY_DEFAULT,
    SESSION_ID_MAX_CHARS,
    Origin,
    check_session_id,
)
from server.errors import Invalid, Unauthorized
from server.render.camel_case import conversation_json, message_json, user_info_json
from server.services import Services, services
from server.visitor_context import VisitorContext
from storage.models import DEFAULT_SITE_ID, SOURCE_APPS, Identity, SourceApp, UserInfo

APP = "liveoperator"
# Conversation ids we issue are 22 characters; the bound only keeps junk out of queries.
ID_MAX_CHARS = 64

Command = Callable[[Services, str, Fields], Awaitable[JSON]]


def convo_id(fields: Fields) -> str:
    return fields.identifier("convoID", required=True, max_chars=ID_MAX_CHARS)


def optional_convo_id(fields: Fields) -> str | None:
    return fields.identifier("convoID", max_chars=ID_MAX_CHARS)


def client_msg_id(fields: Fields) -> str | None:
    return fields.identifier("clientMsgID")


def source_app(fields: Fields) -> SourceApp:
    value = fields.identifier("sourceApp") or "chatbot"
    for app in SOURCE_APPS:
        if value == app:
            return app
    raise Invalid("invalid_source_app", f"sourceApp must be one of {', '.join(SOURCE_APPS)}")


def origin(fields: Fields, source: SourceApp) -> Origin:
    """Where a new conversation starts: ``siteID`` (default the account's first site) and the
    widget's ``sessionID``, when a request creates one."""
    # Not read as an identifier: check_session_id's stricter rule answers for it.
    session_id = fields.text("sessionID", max_chars=SESSION_ID_MAX_CHARS) or None
    if session_id is None:
        return Origin(source, fields.integer("siteID", minimum=1) or DEFAULT_SITE_ID)
    # The widget's own session is its visitor's proven identity: a returning visitor's new
    # conversations join the same contact.
    return Origin(
        source,
        fields.integer("siteID", minimum=1) or DEFAULT_SITE_ID,
        check_session_id(session_id),
        identity=Identity("session", session_id),
    )


def window_details(fields: Fields) -> UserInfo:
    """What the chat window's visitor gave (all optional): first name, email and phone."""
    return UserInfo(
        fname=fields.text("fname") or "",
        email=fields.text("email") or "",
        phone=fields.text("phone") or "",
    )


def visitor_context(fields: Fields, user_agent: str) -> VisitorContext:
    """Where the chat window's visitor is (all optional; checked by the engine). The
    browser and OS come from the request's own User-Agent header."""
    return VisitorContext(
        url=fields.text("pageURL") or "",
        title=fields.text("pageTitle") or "",
        referrer=fields.text("referrer") or "",
        time_zone=fields.text("timeZone") or "",
        user_agent=user_agent,
    )


def user_info(fields: Fields | None) -> UserInfo | None:
    if fields is None:
        return None
    return UserInfo(
        fname=fields.text("fname") or "",
        lname=fields.text("lname") or "",
        email=fields.text("email") or "",
        phone=fields.text("phone") or "",
    )


async def sendmessage(svc: Services, account_id: str, fields: Fields) -> JSON:
    sender = fields.identifier("sender") or "visitor"
    if sender not in ("visitor", "bot"):
        raise Invalid("invalid_field", "sender must be visitor or bot (operators use operatorID)")
    committed = await svc.engine.send(
        account_id,
        convo_id=optional_convo_id(fields),
        text=fields.text("message") or "",
        operator_id=fields.integer("operatorID", minimum=1),
        bot=sender == "bot",
        canned_id=fields.integer("canned", minimum=1),
        user_info=user_info(fields.nested("userInfo")),
        origin=origin(fields, source_app(fields)),
        client_msg_id=client_msg_id(fields),
        account_key=True,
    )
    return ok(
        convoID=committed.conversation.id,
        message=message_json(committed.messages[0]),
        duplicate=committed.duplicate,
    )


async def poll(svc: Services, account_id: str, fields: Fields) -> JSON:
    source_app(fields)
    result = await svc.engine.poll(
        account_id,
        convo_id(fields),
        operator_id=fields.integer("operatorID", minimum=1),
        since=fields.number("since", minimum=0) or 0.0,
    )
    return ok(
        convoID=result.conversation.id,
        messages=[message_json(m) for m in result.messages],
        typing=result.typing,
        status=result.conversation.status,
    )


async def settyping(svc: Services, account_id: str, fields: Fields) -> JSON:
    source_app(fields)
    await svc.engine.set_typing(
        account_id, convo_id(fields), operator_id=fields.integer("operatorID", minimum=1)
    )
    return ok()


async def gethistory(svc: Services, account_id: str, fields: Fields) -> JSON:
    source_app(fields)
    count = fields.integer("numMessages")
    conversation, messages = await svc.engine.history(
        account_id, convo_id(fields), HISTORY_DEFAULT if count is None else count
    )
    return ok(
        conversation=conversation_json(conversation),
        userInfo=user_info_json(conversation.user_info),
        messages=[message_json(m) for m in messages],
    )


async def setstatus(svc: Services, account_id: str, fields: Fields) -> JSON:
    source_app(fields)
    conversation = await svc.engine.set_status(
        account_id, convo_id(fields), fields.identifier("status", required=True)
    )
    return ok(conversation=conversation_json(conversation))


COMMANDS: Mapping[str, Command] = MappingProxyType(
    {
        "sendmessage": sendmessage,
        "poll": poll,
        "settyping": settyping,
        "gethistory": gethistory,
        "setstatus": setstatus,
    }
)


async def app_command(request: Request) -> Response:
    svc = services(request)
    fields = await read_fields(request)
    account_id = fields.identifier("accountID", required=True, max_chars=ID_MAX_CHARS)
    key = fields.identifier("key") or fields.identifier("apiKey")
    if not key:
        raise Unauthorized("missing_credentials", "key (or apiKey) is required")
    principal = await svc.auth.account_key(account_id, key)
    app = fields.identifier("app", required=True)
    if app != APP:
        raise Invalid("unknown_app", f"unknown app {app!r}; this server runs {APP!r}")
    name = fields.identifier("command", required=True)
    command = COMMANDS.get(name.lower())
    if command is None:
        raise Invalid("unknown_command", f"unknown command {name!r}")
    # The seed's SDK sends the command's fields JSON-encoded in `json` (its docs say
    # `jsonData`); a caller that puts them beside accountID is understood too.
    payload = fields.nested("json") or fields.nested("jsonData") or fields
    return await command(svc, principal.account_id, payload)


routes = [Route("/", app_command, methods=["POST"])]
