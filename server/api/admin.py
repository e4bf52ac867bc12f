"""Admin REST, account-scoped: operators, teams, canned responses, sites, channels, AI
assistants, widget tokens and webhooks.

``GET`` lists (any operator of the account may read: the inbox needs canned responses and
transfer targets; channels are the exception, see ``Resource.admin_reads``); ``POST`` creates,
``PATCH /{id}`` updates, ``DELETE /{id}`` deletes, which need the API key or an admin operator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import JSON, Fields, ok, path_id, path_identifier, read_fields
from server.assistants import Assistants
from server.auth import Principal
from server.business_hours import INTERVALS_MAX, TIME_ZONE_MAX_CHARS
from server.channels import Channels
from server.directory import ORIGIN_MAX, ORIGINS_MAX, Directory
from server.errors import Invalid, NotFound
from server.event_catalogue import OPERATOR_UPDATED
from server.render.snake_case import (
    assistant_json,
    canned_json,
    channel_json,
    operator_json,
    site_json,
    team_json,
    widget_token_json,
)
from server.services import Services, services
from server.webhooks import EVENTS, Webhooks, delivery_json, webhook_json
from storage.base import NO_ASSISTANT, NO_TEAM
from storage.models import Operator

ROOT = "/api/v1/admin"
CREATED = 201
# Longer than any delivery id we issue ("whd_" and 24 hex digits): names nothing.
DELIVERY_ID_MAX = 64
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
    # Tells the account's inboxes about an updated item (operators: their names).
    announce: Callable[[Request, Any], Awaitable[None]] | None = None


async def announce_operator(request: Request, operator: Operator) -> None:
    """Colleagues' inboxes show an operator's new name (and avatar, role, state) at once."""
    data = orjson.dumps(operator_json(operator))
    await services(request).feed.ephemeral(operator.account_id, OPERATOR_UPDATED, data)


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
        avatar_url=f.text("avatar_url"),
    ),
    update=lambda d, acc, i, f: d.update_operator(
        acc,
        i,
        name=f.text("name"),
        email=f.text("email"),
        password=f.text("password"),
        is_admin=_is_admin(f),
        lang=f.text("lang"),
        avatar_url=f.text("avatar_url"),
        active=f.boolean("active"),
    ),
    delete=lambda d, acc, i: d.delete_operator(acc, i),
    service=_directory,
    announce=announce_operator,
)

TEAMS: Resource[Directory] = Resource(
    plural="teams",
    singular="team",
    render=team_json,
    list=lambda d, acc: d.list_teams(acc),
    # auto_assign and assign_limit: the team's round robin (issue 18).
    create=lambda d, acc, f: d.create_team(
        acc,
        name=f.require("name"),
        member_ids=f.int_list("member_ids") or [],
        auto_assign=f.boolean("auto_assign") or False,
        assign_limit=f.integer("assign_limit", minimum=0) or 0,
    ),
    update=lambda d, acc, i, f: d.update_team(
        acc,
        i,
        name=f.text("name"),
        member_ids=f.int_list("member_ids"),
        auto_assign=f.boolean("auto_assign"),
        assign_limit=f.integer("assign_limit", minimum=0),
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
        logo_url=f.text("logo_url"),
        # 0 leaves the site without a default assistant.
        assistant_id=f.integer("assistant_id", minimum=NO_ASSISTANT),
        allowed_origins=f.text_list("allowed_origins", max_items=ORIGINS_MAX, max_chars=ORIGIN_MAX),
        voice_number=f.text("voice_number"),
        time_zone=f.text("time_zone", max_chars=TIME_ZONE_MAX_CHARS),
        business_hours=f.objects("business_hours", max_items=INTERVALS_MAX),
        away_message=f.text("away_message"),
        reply_time=f.text("reply_time"),
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
        ask_rating=f.boolean("ask_rating"),
        **_channel_fields(f),
    ),
    update=lambda c, acc, i, f: c.update(
        acc,
        i,
        name=f.text("name"),
        public_url=f.text("public_url"),
        ask_rating=f.boolean("ask_rating"),
        **_channel_fields(f),
    ),
    delete=lambda c, acc, i: c.delete(acc, i),
    service=lambda s: s.channels,
    admin_reads=True,
)


# The API key goes in (api_key) and never comes out: assistant_json renders none.
ASSISTANTS: Resource[Assistants] = Resource(
    plural="assistants",
    singular="assistant",
    render=assistant_json,
    list=lambda a, acc: a.list(acc),
    create=lambda a, acc, f: a.create(
        acc,
        name=f.require("name"),
        base_url=f.require("base_url"),
        model=f.require("model"),
        api_key=f.text("api_key"),
        system_prompt=f.text("system_prompt"),
        max_tokens=f.integer("max_tokens"),
        monthly_token_budget=f.integer("monthly_token_budget", required=True) or 0,
    ),
    update=lambda a, acc, i, f: a.update(
        acc,
        i,
        name=f.text("name"),
        base_url=f.text("base_url"),
        model=f.text("model"),
        api_key=f.text("api_key"),
        system_prompt=f.text("system_prompt"),
        max_tokens=f.integer("max_tokens"),
        monthly_token_budget=f.integer("monthly_token_budget"),
    ),
    delete=lambda a, acc, i: a.delete(acc, i),
    service=lambda s: s.assistants,
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


# The admin's event names are the webhooks' own (server/webhooks.py); a handful at most.
_EVENT_LIST = {"max_items": len(EVENTS), "max_chars": 64}

# The secret is in the create answer only (webhook_json of a NewWebhook).
WEBHOOKS: Resource[Webhooks] = Resource(
    plural="webhooks",
    singular="webhook",
    render=webhook_json,
    list=lambda w, acc: w.of_account(acc),
    create=lambda w, acc, f: w.create(
        acc, f.require("url"), f.text_list("events", **_EVENT_LIST) or []
    ),
    update=lambda w, acc, i, f: w.update(
        acc,
        i,
        url=f.text("url"),
        events=f.text_list("events", **_EVENT_LIST),
        enabled=f.boolean("enabled"),
    ),
    delete=lambda w, acc, i: w.delete(acc, i),
    service=lambda s: s.webhooks,
    admin_reads=True,
)


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
        if resource.announce is not None:
            await resource.announce(request, item)
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


async def _rotate_channel_key(request: Request) -> Response:
    """``POST /channels/{id}/rotate-key``: a new key, so a leaked ``api_url`` (a bot
    platform's only credential) stops working; the answer holds the new URLs."""
    principal = await _principal(request, admin=True)
    channel = await services(request).channels.rotate_key(
        principal.account_id, _item_id(request, CHANNELS)
    )
    return ok(channel=channel_json(channel))


async def _deactivate_operator(request: Request) -> Response:
    """``POST /operators/{id}/deactivate``: the operator leaves; their unresolved
    conversations go to ``to_operator_id``, or without it back to their queues."""
    principal = await _principal(request, admin=True)
    fields = await read_fields(request)
    operator, moved = await services(request).engine.deactivate_operator(
        principal.account_id,
        _item_id(request, OPERATORS),
        to_operator=fields.integer("to_operator_id", minimum=1),
        by=principal.operator,
    )
    await announce_operator(request, operator)
    return ok(operator=operator_json(operator), moved=moved)


async def _create_widget_token(request: Request) -> Response:
    """A new widget token: its secret is in this answer only (stored hashed)."""
    principal = await _principal(request, admin=True)
    token, secret = await services(request).widgets.create_token(
        principal.account_id, _item_id(request, SITES)
    )
    return JSON({"success": True, "token": {**widget_token_json(token), "token": secret}}, CREATED)


async def _list_widget_tokens(request: Request) -> Response:
    principal = await _principal(request, admin=True)
    tokens = await services(request).widgets.list_tokens(
        principal.account_id, _item_id(request, SITES)
    )
    return ok(tokens=[widget_token_json(t) for t in tokens])


async def _revoke_widget_token(request: Request) -> Response:
    principal = await _principal(request, admin=True)
    missing = NotFound("widget_token_not_found", "no such widget token")
    await services(request).widgets.revoke_token(
        principal.account_id, _item_id(request, SITES), path_id(request, "token_id", missing)
    )
    return ok()


async def _widget_stats(request: Request) -> Response:
    """The site's widget events per UTC day (seed 003's track, issue 17)."""
    principal = await _principal(request, admin=False)
    fields = await read_fields(request)
    site_id = _item_id(request, SITES)
    days = await services(request).widgets.summary(
        principal.account_id,
        site_id,
        fields.identifier("from", max_chars=10),
        fields.identifier("to", max_chars=10),
    )
    return ok(
        site_id=site_id,
        days=[
            {
                "date": d.date,
                "opened": d.opened,
                "messages_sent": d.messages_sent,
                "handovers": d.handovers,
                "events": d.events,
            }
            for d in days
        ],
    )


WIDGET_TOKENS = f"{ROOT}/sites/{{id}}/widget-tokens"


async def _webhook_deliveries(request: Request) -> Response:
    """``GET /webhooks/{id}/deliveries``: the newest deliveries with every attempt."""
    principal = await _principal(request, admin=True)
    found = await services(request).webhooks.deliveries(
        principal.account_id, _item_id(request, WEBHOOKS)
    )
    return ok(deliveries=[delivery_json(d) for d in found])


async def _replay_webhook_delivery(request: Request) -> Response:
    """``POST /webhooks/{id}/deliveries/{delivery_id}/replay``: posted again, same id."""
    principal = await _principal(request, admin=True)
    webhook_id = _item_id(request, WEBHOOKS)
    delivery_id = path_identifier(request, "delivery_id", "the delivery id", DELIVERY_ID_MAX)
    await services(request).webhooks.replay(principal.account_id, webhook_id, delivery_id)
    return ok()


routes = [
    *_routes(OPERATORS),
    Route(f"{ROOT}/operators/{{id}}/deactivate", _deactivate_operator, methods=["POST"]),
    *_routes(TEAMS),
    *_routes(CANNED),
    *_routes(SITES),
    *_routes(CHANNELS),
    Route(f"{ROOT}/channels/{{id}}/test", _test_channel, methods=["POST"]),
    Route(f"{ROOT}/channels/{{id}}/rotate-key", _rotate_channel_key, methods=["POST"]),
    *_routes(ASSISTANTS),
    Route(WIDGET_TOKENS, _create_widget_token, methods=["POST"]),
    Route(WIDGET_TOKENS, _list_widget_tokens, methods=["GET"]),
    Route(WIDGET_TOKENS + "/{token_id}", _revoke_widget_token, methods=["DELETE"]),
    Route(f"{ROOT}/sites/{{id}}/widget-stats", _widget_stats, methods=["GET"]),
    *_routes(WEBHOOKS),
    Route(f"{ROOT}/webhooks/{{id}}/deliveries", _webhook_deliveries, methods=["GET"]),
    Route(
        f"{ROOT}/webhooks/{{id}}/deliveries/{{delivery_id}}/replay",
        _replay_webhook_delivery,
        methods=["POST"],
    ),
]
