"""Admin REST, account-scoped: operators, teams, canned responses and sites.

``GET`` lists (any operator of the account may read: the inbox needs canned responses and
transfer targets); ``POST`` creates, ``PATCH /{id}`` updates, ``DELETE /{id}`` deletes, which
need the API key or an admin operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, ok, path_id, read_fields
from server.auth import Principal
from server.directory import Directory
from server.errors import Invalid, NotFound
from server.render.snake_case import canned_json, operator_json, site_json, team_json
from server.services import services
from storage.base import NO_TEAM

ROOT = "/api/v1/admin"
CREATED = 201


@dataclass(frozen=True, slots=True)
class Resource:
    plural: str
    singular: str
    render: Callable[[Any], dict[str, Any]]
    list: Callable[[Directory, str], Awaitable[Sequence[Any]]]
    create: Callable[[Directory, str, Fields], Awaitable[Any]]
    update: Callable[[Directory, str, int, Fields], Awaitable[Any]]
    delete: Callable[[Directory, str, int], Awaitable[None]]


def _is_admin(fields: Fields) -> bool | None:
    """Seed 001 speaks of roles: ``role`` ("admin" | "operator") or the older ``is_admin``."""
    role = fields.text("role")
    if role is None:
        return fields.boolean("is_admin")
    if role not in ("admin", "operator"):
        raise Invalid("invalid_field", "role must be admin or operator")
    return role == "admin"


OPERATORS = Resource(
    plural="operators",
    singular="operator",
    render=operator_json,
    list=lambda d, acc: d.list_operators(acc),
    create=lambda d, acc, f: d.create_operator(
        acc,
        name=f.require("name"),
        email=f.require("email"),
        password=f.require("password"),
        is_admin=_is_admin(f) or False,
        lang=f.text("lang"),
    ),
    update=lambda d, acc, i, f: d.update_operator(
        acc,
        i,
        name=f.text("name"),
        email=f.text("email"),
        password=f.text("password"),
        is_admin=_is_admin(f),
        lang=f.text("lang"),
    ),
    delete=lambda d, acc, i: d.delete_operator(acc, i),
)

TEAMS = Resource(
    plural="teams",
    singular="team",
    render=team_json,
    list=lambda d, acc: d.list_teams(acc),
    create=lambda d, acc, f: d.create_team(
        acc, name=f.require("name"), member_ids=f.int_list("member_ids") or []
    ),
    update=lambda d, acc, i, f: d.update_team(
        acc, i, name=f.text("name"), member_ids=f.int_list("member_ids")
    ),
    delete=lambda d, acc, i: d.delete_team(acc, i),
)

CANNED = Resource(
    plural="canned",
    singular="canned",
    render=canned_json,
    list=lambda d, acc: d.list_canned(acc),
    create=lambda d, acc, f: d.create_canned(
        acc, name=f.require("name"), tag=f.text("tag") or "", message=f.require("message")
    ),
    update=lambda d, acc, i, f: d.update_canned(
        acc, i, name=f.text("name"), tag=f.text("tag"), message=f.text("message")
    ),
    delete=lambda d, acc, i: d.delete_canned(acc, i),
)


SITES = Resource(
    plural="sites",
    singular="site",
    render=site_json,
    list=lambda d, acc: d.list_sites(acc),
    create=lambda d, acc, f: d.create_site(
        acc,
        name=f.require("name"),
        color=f.text("color"),
        position=f.text("position"),
        greeting=f.text("greeting"),
        team_id=f.integer("team_id", minimum=1),
    ),
    # team_id 0 routes the site's new conversations to no team in particular.
    update=lambda d, acc, i, f: d.update_site(
        acc,
        i,
        name=f.text("name"),
        color=f.text("color"),
        position=f.text("position"),
        greeting=f.text("greeting"),
        team_id=f.integer("team_id", minimum=NO_TEAM),
        ask_rating=f.boolean("ask_rating"),
    ),
    delete=lambda d, acc, i: d.delete_site(acc, i),
)


def _item_id(request: Request, resource: Resource) -> int:
    """A path id no store could hold names nothing: 404, never a driver's overflow."""
    missing = NotFound(f"{resource.singular}_not_found", f"no such {resource.singular}")
    return path_id(request, "id", missing)


async def _principal(request: Request, *, admin: bool) -> Principal:
    principal = await services(request).auth.headers(request.headers)
    if admin:
        principal.require_admin()
    return principal


def _routes(resource: Resource) -> list[Route]:
    async def listing(request: Request) -> Response:
        principal = await _principal(request, admin=False)
        items = await resource.list(services(request).directory, principal.account_id)
        return ok(**{resource.plural: [resource.render(i) for i in items]})

    async def create(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        fields = await read_fields(request)
        item = await resource.create(services(request).directory, principal.account_id, fields)
        return JSON({"success": True, resource.singular: resource.render(item)}, CREATED)

    async def update(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        fields = await read_fields(request)
        item = await resource.update(
            services(request).directory, principal.account_id, _item_id(request, resource), fields
        )
        return ok(**{resource.singular: resource.render(item)})

    async def delete(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        await resource.delete(
            services(request).directory, principal.account_id, _item_id(request, resource)
        )
        return ok()

    path = f"{ROOT}/{resource.plural}"
    return [
        Route(path, listing, methods=["GET"]),
        Route(path, create, methods=["POST"]),
        Route(path + "/{id}", update, methods=["PATCH"]),
        Route(path + "/{id}", delete, methods=["DELETE"]),
    ]


routes = [route for resource in (OPERATORS, TEAMS, CANNED, SITES) for route in _routes(resource)]
