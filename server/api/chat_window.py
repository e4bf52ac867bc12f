"""Seed 000's chat-window mode URLs: no API key; the account is in the path and the
unguessable convoID is the visitor's capability."""

from __future__ import annotations

import html
import time
from importlib import resources
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection, Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from realtime.ratelimit import Rule
from server.api.commands import (
    ID_MAX_CHARS,
    client_msg_id,
    convo_id,
    optional_convo_id,
    origin,
    visitor_context,
    window_details,
)
from server.api.wire import Fields, ok, on_liveop_error, path_identifier, read_fields
from server.conversations import VISITOR_CHANNEL, Admit
from server.errors import Invalid, LiveOpError
from server.render.camel_case import message_json
from server.services import Services, client_ip, services
from storage.models import DEFAULT_SITE_ID

PREFIX = "/{account_id}/liveoperator"
ASSET_BASE = "/assets"
# The page may sit in any site's iframe, but loads nothing from elsewhere, and never sends the
# capability-bearing URL as a Referer.
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; frame-ancestors *"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# The embed script is the same for every site and account: caches may keep it for an hour.
# Read cross-origin by widget.js (its errors too, or the customer's page logs a CORS error);
# short-lived so an admin's change, and whether anybody is online, shows within a minute (the
# chat window asks past the cache when it is about to send).
ANY_ORIGIN = {"Access-Control-Allow-Origin": "*"}
CONFIG_HEADERS = {**ANY_ORIGIN, "Cache-Control": "public, max-age=60"}
WIDGET_HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "public, max-age=3600"}


# The chat window's ES modules: chat.js imports the others from chat/ (no build step). Named
# one by one, so a file added to the package is not served until it is listed here.
CHAT_MODULES = (
    "api",
    "away",
    "composer",
    "dom",
    "host",
    "polling",
    "rating",
    "socket",
    "storage",
    "transport",
    "view",
)


class ChatAssets(StaticFiles):
    """The chat window's own files only: the package also holds the inbox app (served with
    its own security headers under /app/), the widget (at /widget.js) and Python modules."""

    SERVED = frozenset({"chat.js", "chat.css", *(f"chat/{name}.js" for name in CHAT_MODULES)})

    async def get_response(self, path: str, scope: Scope) -> Response:
        if path not in self.SERVED:
            raise HTTPException(404)
        return await super().get_response(path, scope)


# chat.js's imports, announced in the page so the browser fetches them at once instead of one
# level of imports at a time.
MODULE_PRELOADS = "\n  ".join(
    f'<link rel="modulepreload" href="{ASSET_BASE}/chat/{name}.js">' for name in CHAT_MODULES
)


def asset_mount() -> Mount:
    directory = Path(str(resources.files("widget_assets")))
    return Mount(ASSET_BASE, ChatAssets(directory=directory), name="assets")


def load_template() -> str:
    return resources.files("widget_assets").joinpath("chat.html").read_text(encoding="utf-8")


def path_account(request: HTTPConnection) -> str:
    """The account these keyless URLs and the visitor socket name in their path."""
    return path_identifier(request, "account_id", "the account id", ID_MAX_CHARS)


# Rate limits of these keyless URLs and the visitor socket (docs/api.md, "Rate limits"). A
# person types a few messages a minute, in bursts; past this a script is writing.
VISITOR_MESSAGES = Rule(limit=30, per_s=60.0, burst=10)
# Per address and account: enough for a household or office behind one address, too few to
# fill an inbox with junk conversations.
NEW_CONVERSATIONS = Rule(limit=10, per_s=600.0)
# Heartbeats come every 3-4 s per tab; a few tabs fit, a loop does not.
VISITOR_TYPING = Rule(limit=60, per_s=60.0, burst=20)
# The visitor socket's read receipts: the window sends one when replies it has not
# acknowledged show, so a person's reading stays far below this; a loop's frames, each a
# store read, do not.
VISITOR_READS = Rule(limit=60, per_s=60.0, burst=20)


def visitor_send_budget(svc: Services, account_id: str, convo: str | None, ip: str) -> Admit:
    """What a visitor's valid message spends: its conversation's budget, or for one that
    opens a conversation its address's budget for new conversations. Charged by the engine
    once the message passed every check, so refused ones spend nothing."""

    async def admit() -> None:
        if convo is None:
            await svc.limit(NEW_CONVERSATIONS, "new-convo", account_id, ip)
        else:
            await svc.limit(VISITOR_MESSAGES, "visitor-msg", account_id, convo)

    return admit


def visitor_typing_budget(svc: Services, account_id: str, convo: str) -> Admit:
    async def admit() -> None:
        await svc.limit(VISITOR_TYPING, "visitor-typing", account_id, convo)

    return admit


async def spend_visitor_read(svc: Services, account_id: str, convo: str) -> None:
    await svc.limit(VISITOR_READS, "visitor-read", account_id, convo)


def _visitor_only(fields: Fields) -> None:
    """These URLs are public: nothing sent to them may speak as an operator or the bot."""
    for name in ("operatorID", "sender", "canned"):
        if fields.text(name) not in (None, ""):
            raise Invalid("operator_not_allowed", f"{name} is not accepted by the chat window")


def routes(template: str) -> list[Route]:
    widget_js = resources.files("widget_assets").joinpath("widget.js").read_bytes()

    async def widget(request: Request) -> Response:
        return Response(widget_js, media_type="text/javascript", headers=WIDGET_HEADERS)

    async def widget_config(request: Request) -> Response:
        """A site's widget look, for widget.js on the customer's own pages (any origin: it
        is public and carries no credentials)."""
        svc = services(request)
        try:
            site_id = (await read_fields(request)).integer("site", minimum=1) or DEFAULT_SITE_ID
            site = await svc.directory.get_site(path_account(request), site_id)
        except LiveOpError as exc:
            failed = await on_liveop_error(request, exc)
            failed.headers.update(ANY_ORIGIN)
            return failed
        available = await svc.availability.site_availability(site, time.time())
        response = ok(
            site={
                "id": site.id,
                "name": site.name,
                "color": site.color,
                "position": site.position,
                "greeting": site.greeting,
            },
            # Issue 18: whether anybody can answer now, and what to tell the visitor if not.
            availability={
                "away": available.away,
                "online": available.staffed,
                "open": available.open,
                "opens_at": available.opens_at,
                "away_message": site.away_message,
                "reply_time": site.reply_time,
            },
        )
        response.headers.update(CONFIG_HEADERS)
        return response

    async def loadchat(request: Request) -> Response:
        svc = services(request)
        site = Fields(request.query_params).integer("site", minimum=1) or DEFAULT_SITE_ID
        account = await svc.directory.get_account(path_account(request))
        convo = (
            path_identifier(request, "convo_id", "the convoID", ID_MAX_CHARS)
            if "convo_id" in request.path_params
            else ""
        )
        if convo:
            await svc.engine.conversation(account.id, convo)
        page = (
            template.replace("{{ACCOUNT_ID}}", html.escape(account.id))
            .replace("{{CONVO_ID}}", html.escape(convo))
            .replace("{{SITE_ID}}", str(site))
            .replace("{{MODULE_PRELOADS}}", MODULE_PRELOADS)
            .replace("{{ASSET_BASE}}", ASSET_BASE)
            .replace("{{TITLE}}", html.escape(account.name))
        )
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def postmessage(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        svc, account_id, convo = services(request), path_account(request), optional_convo_id(fields)
        committed = await svc.engine.send(
            account_id,
            convo_id=convo,
            text=fields.require("message"),
            user_info=window_details(fields),
            origin=origin(fields, VISITOR_CHANNEL),
            client_msg_id=client_msg_id(fields),
            admit=visitor_send_budget(svc, account_id, convo, client_ip(request)),
            context=visitor_context(fields, request.headers.get("user-agent", "")),
        )
        # The site's AI assistant, if it has one, answers before the window hears back.
        await svc.widgets.answer_window(committed)
        return ok(
            convoID=committed.conversation.id,
            message=message_json(committed.messages[0], visitor=True),
            duplicate=committed.duplicate,
        )

    async def chatpoll(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        engine, account_id = services(request).engine, path_account(request)
        convo = optional_convo_id(fields)
        if convo is None:
            # A widget without a conversation polls by session, so a proactive message
            # reaches a visitor whose browser cannot hold a WebSocket.
            waiting = await engine.session_conversation(
                account_id, origin(fields, VISITOR_CHANNEL), client_ip(request)
            )
            if waiting is None:
                return ok(convoID=None, messages=[], typing=False, status=None, seenSeq=0)
            convo = waiting.id
        result = await engine.window_poll(
            account_id,
            convo,
            since=fields.number("since", minimum=0) or 0.0,
            after_seq=fields.integer("afterSeq", minimum=0),
        )
        return ok(
            convoID=result.conversation.id,
            messages=[message_json(m, visitor=True) for m in result.messages],
            typing=result.typing,
            status=result.conversation.status,
            seenSeq=result.conversation.operator_read_visitor_seq,
        )

    async def rate(request: Request) -> Response:
        """The visitor's rating of a resolved conversation (issue 19)."""
        fields = await read_fields(request)
        _visitor_only(fields)
        svc, account_id, convo = services(request), path_account(request), convo_id(fields)
        # A rating is one write per resolution; the message budget bounds retries of a script,
        # charged only once the rating passed every check.
        rated = await svc.engine.rate(
            account_id,
            convo,
            fields.require("rating"),
            fields.text("comment") or "",
            admit=visitor_send_budget(svc, account_id, convo, client_ip(request)),
        )
        return ok(convoID=rated.id, rating=rated.rating, comment=rated.rating_comment)

    async def rateable(request: Request) -> Response:
        """Whether the window should show the rating question now (issue 19)."""
        fields = await read_fields(request)
        _visitor_only(fields)
        svc, account_id, convo = services(request), path_account(request), convo_id(fields)
        return ok(convoID=convo, ask=await svc.engine.may_rate(account_id, convo))

    async def chattyping(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        svc, account_id, convo = services(request), path_account(request), convo_id(fields)
        await svc.engine.set_typing(
            account_id, convo, operator_id=None, admit=visitor_typing_budget(svc, account_id, convo)
        )
        return ok()

    return [
        Route("/widget.js", widget, methods=["GET"]),
        Route(PREFIX + "/widget-config", widget_config, methods=["GET"]),
        Route(PREFIX + "/loadchat", loadchat, methods=["GET"]),
        Route(PREFIX + "/loadchat/{convo_id}", loadchat, methods=["GET"]),
        Route(PREFIX + "/postmessage", postmessage, methods=["POST"]),
        Route(PREFIX + "/chatpoll", chatpoll, methods=["GET", "POST"]),
        Route(PREFIX + "/chattyping", chattyping, methods=["POST"]),
        Route(PREFIX + "/rate", rate, methods=["POST"]),
        Route(PREFIX + "/rateable", rateable, methods=["GET", "POST"]),
    ]
