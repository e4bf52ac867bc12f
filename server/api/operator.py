"""Seed 001's operator panel: ``/api/v1/operator/*`` with the JWT from the login.

Presence so far: ``heartbeat``, ``status``, ``set-status`` and ``all-online-visitors``.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.operators import CHANNEL_TAGS
from server.api.wire import ok, read_fields
from server.auth import Principal
from server.errors import Invalid
from server.services import services
from storage.models import Conversation

ROOT = "/api/v1/operator"


async def _principal(request: Request) -> Principal:
    return await services(request).auth.headers(request.headers)


def _visitor_json(c: Conversation) -> dict[str, object]:
    info = c.user_info
    return {
        "conversation_id": c.id,
        "name": " ".join(n for n in (info.fname, info.lname) if n),
        "email": info.email,
        "channel": CHANNEL_TAGS[c.source_app],
        "status": c.status,
        "last_activity": c.last_activity,
    }


async def heartbeat(request: Request) -> Response:
    principal = await _principal(request)
    site_ids = (await read_fields(request)).int_list("site_ids") or []
    await services(request).availability.heartbeat(principal, site_ids)
    return ok()


async def status(request: Request) -> Response:
    principal = await _principal(request)
    site_id = (await read_fields(request)).integer("site_id", minimum=1)
    found = await services(request).availability.status(principal, site_id)
    return ok(online=found.online, away_site_ids=list(found.away_site_ids))


async def set_status(request: Request) -> Response:
    principal = await _principal(request)
    fields = await read_fields(request)
    site_id = fields.integer("site_id", required=True, minimum=1) or 0
    online = fields.boolean("online")
    if online is None:
        raise Invalid("missing_field", "online is required")
    await services(request).availability.set_status(principal, site_id, online)
    return ok()


async def all_online_visitors(request: Request) -> Response:
    principal = await _principal(request)
    visitors = await services(request).availability.online_visitors(principal.account_id)
    return ok(visitors=[_visitor_json(c) for c in visitors])


routes = [
    Route(f"{ROOT}/heartbeat", heartbeat, methods=["POST"]),
    Route(f"{ROOT}/status", status, methods=["GET"]),
    Route(f"{ROOT}/set-status", set_status, methods=["POST"]),
    Route(f"{ROOT}/all-online-visitors", all_online_visitors, methods=["GET"]),
]
