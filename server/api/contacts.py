"""Contacts on the operator panel (issue 14): ``/api/v1/operator/contacts``.

Any operator of the account may read, search and merge its contacts; another account's
contact is absent (404), like one that does not exist. Each endpoint makes one call into
server/contacts.py and renders in snake_case.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.operator_panel import ROOT, caller
from server.api.wire import ok, path_id
from server.errors import NotFound
from server.render.snake_case import contact_json, contact_view_json


def _contact_id(request: Request) -> int:
    return path_id(request, "id", NotFound("contact_not_found", "no such contact"))


async def contact(request: Request) -> Response:
    """The contact, its conversations on every channel and its possible matches."""
    svc, me, _ = await caller(request)
    view = await svc.contacts.view(me.account_id, _contact_id(request))
    return ok(contact=contact_view_json(view))


async def search(request: Request) -> Response:
    """Contacts whose name or an identity contains ``q`` (literally, any case)."""
    svc, me, fields = await caller(request)
    found = await svc.contacts.search(
        me.account_id, fields.require("q"), fields.integer("limit", minimum=1)
    )
    return ok(contacts=[contact_json(c) for c in found])


async def merge(request: Request) -> Response:
    """``from_id``'s conversations and identities move to this contact; the merge is kept."""
    svc, me, fields = await caller(request)
    into_id = _contact_id(request)
    view = await svc.contacts.merge(me, into_id, fields.integer("from_id", required=True))
    return ok(contact=contact_view_json(view))


routes = [
    Route(f"{ROOT}/contacts", search, methods=["GET"]),
    Route(f"{ROOT}/contacts/{{id}}", contact, methods=["GET"]),
    Route(f"{ROOT}/contacts/{{id}}/merge", merge, methods=["POST"]),
]
