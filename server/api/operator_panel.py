"""Seed 001's operator panel: ``/api/v1/operator/*`` with the JWT from the login.

Each endpoint reads its fields, makes one call into the engine (or the inbox, directory or
availability), and answers ``{"success": true, ...}``; every change is announced on the SSE
stream and the tenant WebSocket by the engine's commit, not here. Conversations of another
account are absent: 404, like ones that do not exist.
"""

from __future__ import annotations

import base64

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, check_identifier, ok, path_id, read_fields
from server.auth import Principal
from server.availability import Visitor
from server.conversations import (
    HISTORY_MAX,
    SESSION_ID_MAX_CHARS,
    VisitorPatch,
    check_session_id,
)
from server.errors import Conflict, NotFound
from server.inbox import PAGE_DEFAULT, InboxFilters
from server.render.snake_case import (
    CHANNEL_TAGS,
    canned_json,
    contact_with_opt_outs,
    conversation_data,
    message_data,
    operator_json,
    site_json,
)
from server.services import Services, services
from storage.models import DEFAULT_SITE_ID, Operator

ROOT = "/api/v1/operator"
# Conversation ids we issue are 22 characters; the bound keeps junk out of queries.
ID_MAX_CHARS = 64
# FCM registration tokens are ~160 characters; Apple's relayed ones a little more.
PUSH_TOKEN_MAX_CHARS = 4096
LANG_MAX_CHARS = 35
CREATED = 201


async def caller(request: Request) -> tuple[Services, Operator, Fields]:
    """The services, the operator calling (an API key is refused: these are an operator's
    actions) and the request's fields."""
    svc = services(request)
    principal: Principal = await svc.auth.headers(request.headers)
    operator = principal.require_operator()
    return svc, operator, await read_fields(request)


def _path_id(request: Request) -> str:
    convo_id = check_identifier(str(request.path_params["id"]), "the conversation id")
    if len(convo_id) > ID_MAX_CHARS:
        raise NotFound("conversation_not_found", "no such conversation")
    return convo_id


def _conversation_id(fields: Fields) -> str:
    return fields.identifier("conversation_id", required=True, max_chars=ID_MAX_CHARS)


def _visitor_json(v: Visitor) -> dict[str, object]:
    c = v.conversation
    info = c.user_info if c else None
    return {
        "site_id": v.site_id,
        "session_id": v.session_id,
        "conversation_id": c.id if c else None,
        "name": " ".join(n for n in (info.fname, info.lname) if n) if info else "",
        "email": info.email if info else "",
        "channel": CHANNEL_TAGS[c.source_app] if c else CHANNEL_TAGS["liveoperator"],
        "status": c.status if c else None,
        "last_activity": c.last_activity if c else None,
    }


# messaging and lifecycle


async def message(request: Request) -> Response:
    svc, me, fields = await caller(request)
    image_url = fields.text("image_url") or None
    committed = await svc.engine.send(
        me.account_id,
        convo_id=_conversation_id(fields),
        text=fields.text("content") or "",
        operator_id=me.id,
        canned_id=fields.integer("canned_id", minimum=1),
        image_url=image_url,
        client_msg_id=fields.identifier("client_msg_id"),
    )
    return ok(message=message_data(committed.messages[0]))


async def accept(request: Request) -> Response:
    svc, me, _ = await caller(request)
    conversation = await svc.engine.accept(me.account_id, _path_id(request), me.id)
    return ok(conversation=conversation_data(conversation))


async def close(request: Request) -> Response:
    svc, me, _ = await caller(request)
    conversation = await svc.engine.set_status(me.account_id, _path_id(request), "resolved", by=me)
    return ok(conversation=conversation_data(conversation))


async def set_conversation_status(request: Request) -> Response:
    """Any of the lifecycle's statuses (seed 000's setstatus, for the operator's own panel):
    ``waiting`` while the customer owes an answer, for instance."""
    svc, me, fields = await caller(request)
    conversation = await svc.engine.set_status(
        me.account_id, _path_id(request), fields.identifier("status", required=True), by=me
    )
    return ok(conversation=conversation_data(conversation))


async def qualify(request: Request) -> Response:
    """Marks the conversation a qualified lead (issue 17): conversation:qualified, once."""
    svc, me, _ = await caller(request)
    conversation = await svc.engine.qualify(me.account_id, _path_id(request))
    return ok(conversation=conversation_data(conversation))


async def transfer(request: Request) -> Response:
    svc, me, fields = await caller(request)
    conversation = await svc.engine.transfer(
        me.account_id,
        _path_id(request),
        me,
        to_operator=fields.integer("operator_id", minimum=1),
        to_team=fields.integer("team_id", minimum=1),
        note=fields.text("note") or "",
    )
    return ok(conversation=conversation_data(conversation))


async def typing(request: Request) -> Response:
    svc, me, fields = await caller(request)
    await svc.engine.set_typing(me.account_id, _conversation_id(fields), operator_id=me.id)
    return ok()


async def note(request: Request) -> Response:
    svc, me, fields = await caller(request)
    committed = await svc.engine.note(
        me.account_id, _conversation_id(fields), me.id, fields.require("content")
    )
    return ok(message=message_data(committed.messages[0]))


async def proactive_message(request: Request) -> Response:
    svc, me, fields = await caller(request)
    site_id = fields.integer("site_id", required=True, minimum=1) or DEFAULT_SITE_ID
    session_id = check_session_id(fields.require("session_id", max_chars=SESSION_ID_MAX_CHARS))
    content = fields.require("content")
    # Checked before presence: a malformed session or a missing site is never online, and
    # must be told apart from a visitor who left.
    await svc.directory.get_site(me.account_id, site_id)
    if not await svc.availability.session_online(me.account_id, site_id, session_id):
        raise Conflict("visitor_offline", "that visitor is not on the site right now")
    committed = await svc.engine.proactive(me.account_id, me.id, site_id, session_id, content)
    return ok(
        conversation=conversation_data(committed.conversation),
        message=message_data(committed.messages[0]),
    )


# push tokens


async def add_push_token(request: Request) -> Response:
    svc, me, fields = await caller(request)
    token = fields.identifier("token", required=True, max_chars=PUSH_TOKEN_MAX_CHARS)
    await svc.store.add_push_token(me.account_id, me.id, token)
    return ok()


async def remove_push_token(request: Request) -> Response:
    """Without ``token``, forgets every device of the operator (seed 001 sends no body)."""
    svc, me, fields = await caller(request)
    token = fields.identifier("token", max_chars=PUSH_TOKEN_MAX_CHARS)
    removed = await svc.store.remove_push_tokens(me.account_id, me.id, token)
    return ok(removed=removed)


# chats and visitors


async def inbox(request: Request) -> Response:
    svc, me, fields = await caller(request)
    page = await svc.inbox.listing(
        me,
        InboxFilters(
            statuses=_list(fields, "status"),
            channels=_list(fields, "channel"),
            owner=fields.identifier("owner") or "all",
            team_id=fields.integer("team_id", minimum=1),
            site_id=fields.integer("site_id", minimum=1),
            search=fields.text("q"),
            cursor=fields.identifier("cursor"),
            limit=fields.integer("limit", minimum=1) or PAGE_DEFAULT,
        ),
    )
    return ok(
        conversations=[conversation_data(c) for c in page.conversations],
        next_cursor=page.next_cursor,
    )


async def active_chats(request: Request) -> Response:
    svc, me, fields = await caller(request)
    site_id = fields.integer("site_id", minimum=1) or DEFAULT_SITE_ID
    chats = await svc.inbox.active(me, site_id)
    return ok(chats=[conversation_data(c) for c in chats], site_id=site_id)


async def all_active_chats(request: Request) -> Response:
    svc, me, _ = await caller(request)
    chats = await svc.inbox.active(me, None)
    return ok(chats=[conversation_data(c) for c in chats], current_user_id=me.id)


async def all_chat_counts(request: Request) -> Response:
    svc, me, _ = await caller(request)
    pending, active = await svc.inbox.counts(me)
    return ok(pending=pending, active=active)


async def online_visitors(request: Request) -> Response:
    svc, me, fields = await caller(request)
    site_id = fields.integer("site_id", minimum=1) or DEFAULT_SITE_ID
    visitors = await svc.availability.online_visitors(me.account_id, site_id)
    return ok(visitors=[_visitor_json(v) for v in visitors], site_id=site_id)


async def all_online_visitors(request: Request) -> Response:
    svc, me, _ = await caller(request)
    visitors = await svc.availability.online_visitors(me.account_id)
    return ok(visitors=[_visitor_json(v) for v in visitors])


async def operators(request: Request) -> Response:
    svc, me, _ = await caller(request)
    found = await svc.availability.operators(me.account_id)
    return ok(
        operators=[
            {**operator_json(o), "online": online, "away": away} for o, online, away in found
        ]
    )


async def blocked(request: Request) -> Response:
    svc, me, _ = await caller(request)
    found = await svc.inbox.blocked(me)
    return ok(visitors=[conversation_data(c) for c in found])


async def sites(request: Request) -> Response:
    svc, me, _ = await caller(request)
    return ok(sites=[site_json(s) for s in await svc.directory.list_sites(me.account_id)])


async def conversation(request: Request) -> Response:
    """Details with the newest messages, notes included; ``before_seq`` pages back. Viewing
    it marks the visitor's messages read for the operators (the unread badge clears)."""
    svc, me, fields = await caller(request)
    view = await svc.engine.operator_view(
        me.account_id,
        _path_id(request),
        limit=fields.integer("limit", minimum=1) or HISTORY_MAX,
        before_seq=fields.integer("before_seq", minimum=1),
    )
    shown = conversation_data(view.conversation) | {"sms_opted_out": view.sms_opted_out}
    return ok(
        conversation=shown,
        messages=[message_data(m) for m in view.messages],
        timeline=view.timeline,
        contact=(
            contact_with_opt_outs(view.contact, view.contact_opt_outs) if view.contact else None
        ),
    )


async def original(request: Request) -> Response:
    """The mail a message came from, whole: its raw text and its sanitised HTML (issue 15)."""
    svc, me, _ = await caller(request)
    message_id = check_identifier(str(request.path_params["id"]), "the message id")
    found = await svc.email.original(me.account_id, message_id[:ID_MAX_CHARS])
    return ok(
        message_id=found.message_id,
        sender=found.sender,
        outcome=found.outcome,
        raw=base64.b64decode(found.original or "").decode("utf-8", "replace"),
        html=found.html,
    )


async def update_visitor(request: Request) -> Response:
    svc, me, fields = await caller(request)
    given: VisitorPatch = {k: fields.text(k) for k in ("email", "phone", "info")}
    name = fields.text("name")
    if name is not None:
        first, _, rest = name.strip().partition(" ")
        given |= {"fname": first, "lname": rest.strip()}
    found = await svc.engine.update_visitor(me.account_id, _path_id(request), given)
    return ok(conversation=conversation_data(found))


async def block(request: Request) -> Response:
    svc, me, fields = await caller(request)
    blocked_now = fields.boolean("blocked", required=True)
    block_type = fields.identifier("block_type") or "both"
    found = await svc.engine.block(
        me.account_id, _path_id(request), block_type if blocked_now else None, by=me
    )
    return ok(conversation=conversation_data(found))


# translation


async def translation_toggle(request: Request) -> Response:
    svc, me, fields = await caller(request)
    enabled = fields.boolean("enabled", required=True)
    found = await svc.engine.set_translation(me.account_id, _conversation_id(fields), enabled)
    return ok(conversation=conversation_data(found))


async def translation_set_lang(request: Request) -> Response:
    svc, me, fields = await caller(request)
    found = await svc.engine.set_visitor_lang(
        me.account_id,
        _conversation_id(fields),
        fields.identifier("lang", required=True, max_chars=LANG_MAX_CHARS),
    )
    return ok(conversation=conversation_data(found))


# presence (seed 001's heartbeat, status, set-status)


async def heartbeat(request: Request) -> Response:
    svc, me, fields = await caller(request)
    await svc.availability.heartbeat(me, fields.int_list("site_ids") or [])
    return ok()


async def status(request: Request) -> Response:
    svc, me, fields = await caller(request)
    found = await svc.availability.status(me, fields.integer("site_id", minimum=1))
    return ok(online=found.online, away_site_ids=list(found.away_site_ids), away=found.away)


async def set_status(request: Request) -> Response:
    svc, me, fields = await caller(request)
    site_id = fields.integer("site_id", required=True, minimum=1) or DEFAULT_SITE_ID
    online = fields.boolean("online", required=True)
    await svc.availability.set_status(me, site_id, online)
    return ok()


async def set_availability(request: Request) -> Response:
    """The inbox's Online/Away switch: ``away`` on every site at once."""
    svc, me, fields = await caller(request)
    await svc.availability.set_away(me, fields.boolean("away", required=True) or False)
    return ok()


# personal canned responses (issue 18): an operator's own, beside the account's


def _canned_id(request: Request) -> int:
    return path_id(request, "id", NotFound("canned_not_found", "no such canned response"))


async def my_canned(request: Request) -> Response:
    svc, me, _ = await caller(request)
    found = await svc.directory.list_canned(me.account_id, owner=me.id)
    return ok(canned=[canned_json(c) for c in found])


async def create_my_canned(request: Request) -> Response:
    svc, me, fields = await caller(request)
    created = await svc.directory.create_canned(
        me.account_id,
        name=fields.require("name"),
        tag=fields.text("tag") or "",
        message=fields.require("message"),
        owner=me.id,
    )
    return JSON({"success": True, "canned": canned_json(created)}, CREATED)


async def update_my_canned(request: Request) -> Response:
    svc, me, fields = await caller(request)
    updated = await svc.directory.update_canned(
        me.account_id,
        _canned_id(request),
        name=fields.text("name"),
        tag=fields.text("tag"),
        message=fields.text("message"),
        owner=me.id,
    )
    return ok(canned=canned_json(updated))


async def delete_my_canned(request: Request) -> Response:
    svc, me, _ = await caller(request)
    await svc.directory.delete_canned(me.account_id, _canned_id(request), owner=me.id)
    return ok()


def _list(fields: Fields, name: str) -> list[str] | None:
    """A comma-separated filter (``status=open,active``); absent or empty means any."""
    # "," is empty too: an empty list would be `IN ()`, which PostgreSQL refuses.
    found = [v.strip() for v in (fields.identifier(name) or "").split(",") if v.strip()]
    return found or None


_CONVO = "/{id:str}"
routes = [
    Route(f"{ROOT}/message", message, methods=["POST"]),
    Route(f"{ROOT}/accept{_CONVO}", accept, methods=["POST"]),
    Route(f"{ROOT}/close{_CONVO}", close, methods=["POST"]),
    Route(f"{ROOT}/transfer{_CONVO}", transfer, methods=["POST"]),
    Route(f"{ROOT}/typing", typing, methods=["POST"]),
    Route(f"{ROOT}/note", note, methods=["POST"]),
    Route(f"{ROOT}/proactive-message", proactive_message, methods=["POST"]),
    Route(f"{ROOT}/heartbeat", heartbeat, methods=["POST"]),
    Route(f"{ROOT}/status", status, methods=["GET"]),
    Route(f"{ROOT}/set-status", set_status, methods=["POST"]),
    Route(f"{ROOT}/availability", set_availability, methods=["POST"]),
    Route(f"{ROOT}/fcm-token", add_push_token, methods=["POST"]),
    Route(f"{ROOT}/fcm-token", remove_push_token, methods=["DELETE"]),
    Route(f"{ROOT}/inbox", inbox, methods=["GET"]),
    Route(f"{ROOT}/active-chats", active_chats, methods=["GET"]),
    Route(f"{ROOT}/all-active-chats", all_active_chats, methods=["GET"]),
    Route(f"{ROOT}/all-chat-counts", all_chat_counts, methods=["GET"]),
    Route(f"{ROOT}/online-visitors", online_visitors, methods=["GET"]),
    Route(f"{ROOT}/all-online-visitors", all_online_visitors, methods=["GET"]),
    Route(f"{ROOT}/operators", operators, methods=["GET"]),
    Route(f"{ROOT}/canned", my_canned, methods=["GET"]),
    Route(f"{ROOT}/canned", create_my_canned, methods=["POST"]),
    Route(f"{ROOT}/canned/{{id}}", update_my_canned, methods=["PATCH"]),
    Route(f"{ROOT}/canned/{{id}}", delete_my_canned, methods=["DELETE"]),
    Route(f"{ROOT}/blocked", blocked, methods=["GET"]),
    Route(f"{ROOT}/sites", sites, methods=["GET"]),
    Route(f"{ROOT}/conversation{_CONVO}", conversation, methods=["GET"]),
    Route(f"{ROOT}/message/{{id}}/original", original, methods=["GET"]),
    Route(f"{ROOT}/conversation{_CONVO}/visitor", update_visitor, methods=["POST", "PATCH"]),
    Route(f"{ROOT}/conversation{_CONVO}/block", block, methods=["POST"]),
    Route(f"{ROOT}/conversation{_CONVO}/status", set_conversation_status, methods=["POST"]),
    Route(f"{ROOT}/conversation{_CONVO}/qualify", qualify, methods=["POST"]),
    Route(f"{ROOT}/translation/toggle", translation_toggle, methods=["POST"]),
    Route(f"{ROOT}/translation/set-lang", translation_set_lang, methods=["POST"]),
]
