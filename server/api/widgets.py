"""Seed 003's widget endpoints (issue 17): ``/api/widgets/{widgetId}/config`` (public),
``/chat``, ``/track`` and ``/voice/start`` (widget token). A browser may call them from the site's
allowed origins only: those get a CORS grant on every answer, errors included; other origins
get none."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.chat_window import visitor_send_budget
from server.api.wire import JSON, error_json, on_liveop_error, path_identifier, read_fields
from server.conversations import check_session_id
from server.errors import Forbidden, LiveOpError, Unavailable
from server.services import client_ip, services
from server.widgets import WIDGET_ID_MAX, ChatAnswer, ProviderDown
from storage.models import Site

PREFIX = "/api/widgets/{widget_id}"
# How long a browser may reuse a preflight's answer.
PREFLIGHT_MAX_AGE_S = 600
SERVICE_UNAVAILABLE = 503
Handler = Callable[[Request, Site], Awaitable[Response]]


def _cors(request: Request, site: Site) -> dict[str, str]:
    origin = request.headers.get("origin", "").lower()
    if origin and origin in site.allowed_origins:
        return {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    return {"Vary": "Origin"}


def _widget(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Finds the site the path names (404 without a CORS grant: no site, no origins), then
    answers with the site's grant, errors included, so a widget can read why it failed."""

    async def endpoint(request: Request) -> Response:
        widget_id = path_identifier(request, "widget_id", "the widget id", WIDGET_ID_MAX)
        site = await services(request).widgets.site(widget_id)
        try:
            response = await handler(request, site)
        except LiveOpError as exc:
            response = await on_liveop_error(request, exc)
        response.headers.update(_cors(request, site))
        return response

    return endpoint


async def _preflight(request: Request, site: Site) -> Response:
    grant = _cors(request, site)
    if "Access-Control-Allow-Origin" not in grant:
        raise Forbidden(
            "origin_not_allowed", "this origin is not among the widget's allowed origins"
        )
    return Response(
        status_code=204,
        headers={
            "Access-Control-Allow-Methods": "GET, POST",
            "Access-Control-Allow-Headers": "Authorization, Content-Type",
            "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
        },
    )


async def _config(request: Request, site: Site) -> Response:
    """Seed 003's exact shape; public, like the page that embeds the widget."""
    return JSON({
        "success": True,
        "config": {
            "name": site.name,
            "assistantId": site.assistant_id,
            "widget": {"primaryColor": site.color, "position": f"bottom-{site.position}"},
            "branding": {"logo": site.logo_url or None},
        },
    })  # fmt: skip


def _chat_json(answer: ChatAnswer) -> dict[str, object]:
    reply = answer.reply
    return {
        "conversationId": answer.conversation.id,
        "message": reply.text if reply else None,
        "metadata": {"model": reply.model, "tokens": reply.tokens} if reply else None,
        "humanActive": answer.human_active,
    }


async def _chat(request: Request, site: Site) -> Response:
    svc = services(request)
    await svc.widgets.authenticate(site, request.headers.get("authorization"))
    fields = await read_fields(request)
    session_id = check_session_id(fields.require("sessionId"))
    convo = fields.identifier("conversationId", max_chars=WIDGET_ID_MAX)
    try:
        answer = await svc.widgets.chat(
            site,
            session_id=session_id,
            text=fields.require("message"),
            assistant_id=fields.integer("assistantId", minimum=1),
            convo_id=convo,
            admit=visitor_send_budget(svc, site.account_id, convo, client_ip(request)),
        )
    except ProviderDown as down:
        unavailable = Unavailable(
            "assistant_unavailable",
            f"the assistant could not answer ({down.reason}); the message is kept and the"
            " conversation waits for an operator",
        )
        return JSON(
            {
                "success": False,
                "error": error_json(unavailable),
                "conversationId": down.conversation.id,
                "humanActive": True,
            },
            status_code=SERVICE_UNAVAILABLE,
        )
    return JSON({"success": True, **_chat_json(answer)})


async def _track(request: Request, site: Site) -> Response:
    svc = services(request)
    await svc.widgets.authenticate(site, request.headers.get("authorization"))
    fields = await read_fields(request)
    metadata = fields.nested("metadata")
    await svc.widgets.track(
        site,
        session_id=check_session_id(fields.require("sessionId")),
        event=fields.require("event"),
        timestamp=fields.text("timestamp"),
        metadata=metadata.data if metadata else None,
    )
    return JSON({"success": True})


async def _voice_start(request: Request, site: Site) -> Response:
    svc = services(request)
    await svc.widgets.authenticate(site, request.headers.get("authorization"))
    fields = await read_fields(request)
    session_id = check_session_id(fields.require("sessionId"))
    convo = fields.identifier("conversationId", max_chars=WIDGET_ID_MAX)
    started = await svc.widgets.voice_start(
        site,
        session_id=session_id,
        assistant_id=fields.integer("assistantId", minimum=1),
        convo_id=convo,
        # A call request opens or continues a conversation: the visitor's message budget.
        admit=visitor_send_budget(svc, site.account_id, convo, client_ip(request)),
    )
    return JSON({
        "success": True,
        "conversationId": started.conversation.id,
        "assistantId": started.assistant_id,
        "phoneNumber": started.phone_number,
        "sessionCode": started.session_code,
    })  # fmt: skip


routes = [
    Route(PREFIX + "/config", _widget(_config), methods=["GET"]),
    Route(PREFIX + "/chat", _widget(_chat), methods=["POST"]),
    Route(PREFIX + "/track", _widget(_track), methods=["POST"]),
    Route(PREFIX + "/voice/start", _widget(_voice_start), methods=["POST"]),
    Route(PREFIX + "/{endpoint:path}", _widget(_preflight), methods=["OPTIONS"]),
]
