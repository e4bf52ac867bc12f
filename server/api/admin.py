"""Admin REST, account-scoped: operators, teams, canned responses, sites and channels.

``GET`` lists (any operator of the account may read: the inbox needs canned responses and
transfer targets; channels are the exception, see ``Resource.admin_reads``); ``POST`` creates,
``PATCH /{id}`` updates, ``DELETE /{id}`` deletes, which need the API key or an admin operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, ok, path_id, read_fields
from server.auth import Principal
from server.channels import Channels
from server.directory import Directory
from server.errors import Invalid, NotFound
from server.render.snake_case import (
    canned_json,
    channel_json,
    operator_json,
    site_json,
    team_json,
)
from server.services import Services, services
from storage.base import NO_TEAM

ROOT = "/api/v1/admin"
CREATED = 201
# The service a resource's calls go to (the Directory, or Channels).
S = TypeVar("S")


def _directory(s: Services) -> Directory:
    return s.directory


@dataclass(frozen=True, slots=True)
class Resource(Generic[S]):
    plural: str
    singular: str
    render: Callable[[Any], dict[str, Any]]
    list: Callable[[S, str], Awaitable[Sequence[Any]]]
    create: Callable[[S, str, Fields], Awaitable[Any]]
    update: Callable[[S, str, int, Fields], Awaitable[Any]]
    delete: Callable[[S, str, int], Awaitable[None]]
    service: Callable[[Services], S]
    # Only an admin (or the API key) lists it: a channel's key is all that names it in its
    # webhook URLs, and an operator's screen needs none of it (403 for the others).
    admin_reads: bool = False


def _is_admin(fields: Fields) -> bool | None:
    """Seed 001 speaks of roles: ``role`` ("admin" | "operator") or the older ``is_admin``."""
    role = fields.text("role")
    if role is None:
        return fields.boolean("is_admin")
    if role not in ("admin", "operator"):
        raise Invalid("invalid_field", "role must be admin or operator")
    return role == "admin"


OPERATORS: Resource[Directory] = Resource(
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
    service=_directory,
)

TEAMS: Resource[Directory] = Resource(
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
    service=_directory,
)

CANNED: Resource[Directory] = Resource(
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
    service=_directory,
)


SITES: Resource[Directory] = Resource(
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
    service=_directory,
)

# Credentials go in (auth_token, passwords inside the mail URLs, the signing key) and never
# come out: channel_json renders none. Which fields a kind needs is the engine's rule.
CHANNELS: Resource[Channels] = Resource(
    plural="channels",
    singular="channel",
    render=channel_json,
    list=lambda c, acc: c.list(acc),
    create=lambda c, acc, f: c.create(
        acc,
        kind=f.require("kind"),
        name=f.require("name"),
        public_url=f.require("public_url"),
        **_channel_fields(f),
    ),
    update=lambda c, acc, i, f: c.update(
        acc,
        i,
        name=f.text("name"),
        public_url=f.text("public_url"),
        **_channel_fields(f),
    ),
    delete=lambda c, acc, i: c.delete(acc, i),
    service=lambda s: s.channels,
    admin_reads=True,
)


def _channel_fields(f: Fields) -> dict[str, str | None]:
    """The kind-specific channel fields, as given (None when absent)."""
    return {
        "account_sid": f.text("account_sid"),
        "auth_token": f.text("auth_token"),
        "sender": f.text("from"),
        "api_url": f.text("api_url"),
        "after_resolved": f.text("after_resolved"),
        "address": f.text("address"),
        "smtp_url": f.text("smtp_url"),
        "imap_url": f.text("imap_url"),
        "imap_backfill_days": f.text("imap_backfill_days"),
        "mailgun_signing_key": f.text("mailgun_signing_key"),
    }


def _item_id(request: Request, resource: Resource[Any]) -> int:
    """A path id no store could hold names nothing: 404, never a driver's overflow."""
    missing = NotFound(f"{resource.singular}_not_found", f"no such {resource.singular}")
    return path_id(request, "id", missing)


async def _principal(request: Request, *, admin: bool) -> Principal:
    principal = await services(request).auth.headers(request.headers)
    if admin:
        principal.require_admin()
    return principal


def _routes(resource: Resource[S]) -> list[Route]:
    async def listing(request: Request) -> Response:
        principal = await _principal(request, admin=resource.admin_reads)
        items = await resource.list(resource.service(services(request)), principal.account_id)
        return ok(**{resource.plural: [resource.render(i) for i in items]})

    async def create(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        fields = await read_fields(request)
        item = await resource.create(
            resource.service(services(request)), principal.account_id, fields
        )
        return JSON({"success": True, resource.singular: resource.render(item)}, CREATED)

    async def update(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        fields = await read_fields(request)
        item = await resource.update(
            resource.service(services(request)),
            principal.account_id,
            _item_id(request, resource),
            fields,
        )
        return ok(**{resource.singular: resource.render(item)})

    async def delete(request: Request) -> Response:
        principal = await _principal(request, admin=True)
        await resource.delete(
            resource.service(services(request)), principal.account_id, _item_id(request, resource)
        )
        return ok()

    path = f"{ROOT}/{resource.plural}"
    return [
        Route(path, listing, methods=["GET"]),
        Route(path, create, methods=["POST"]),
        Route(path + "/{id}", update, methods=["PATCH"]),
        Route(path + "/{id}", delete, methods=["DELETE"]),
    ]


async def _test_channel(request: Request) -> Response:
    """``POST /channels/{id}/test``: a test SMS from the channel to ``to``, or an email
    channel's servers logged in to, for the admin checking a new channel; the outcome is also
    on its health line."""
    principal = await _principal(request, admin=True)
    fields = await read_fields(request)
    found = services(request)
    result = await found.channels.test(
        principal.account_id,
        _item_id(request, CHANNELS),
        fields.text("to"),
        fields.text("message", max_chars=found.settings.max_message_chars),
    )
    return ok(**result)


routes = [
    *_routes(OPERATORS),
    *_routes(TEAMS),
    *_routes(CANNED),
    *_routes(SITES),
    *_routes(CHANNELS),
    Route(f"{ROOT}/channels/{{id}}/test", _test_channel, methods=["POST"]),
]
