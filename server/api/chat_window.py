"""Seed 000's chat-window mode URLs: no API key; the account is in the path and the
unguessable convoID is the visitor's capability."""

from __future__ import annotations

import html
from importlib import resources

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server.api.camelcase import message_json
from server.api.commands import ID_MAX_CHARS, client_msg_id, convo_id, optional_convo_id
from server.api.wire import Fields, ok, read_fields
from server.errors import Invalid
from server.services import services
from storage.models import UserInfo

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


def load_template() -> str:
    return resources.files("widget_assets").joinpath("chat.html").read_text(encoding="utf-8")


def _account(request: Request) -> str:
    account_id = str(request.path_params["account_id"])
    if len(account_id) > ID_MAX_CHARS:
        raise Invalid("invalid_field", "the account id is too long")
    return account_id


def _visitor_only(fields: Fields) -> None:
    """These URLs are public: nothing sent to them may speak as an operator or the bot."""
    for name in ("operatorID", "sender", "canned"):
        if fields.text(name) not in (None, ""):
            raise Invalid("operator_not_allowed", f"{name} is not accepted by the chat window")


def routes(template: str) -> list[Route]:
    async def loadchat(request: Request) -> Response:
        svc = services(request)
        account = await svc.directory.get_account(_account(request))
        convo = request.path_params.get("convo_id", "")
        if convo:
            await svc.engine.conversation(account.id, convo)
        page = (
            template.replace("{{ACCOUNT_ID}}", html.escape(account.id))
            .replace("{{CONVO_ID}}", html.escape(convo))
            .replace("{{ASSET_BASE}}", ASSET_BASE)
            .replace("{{TITLE}}", html.escape(account.name))
        )
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def postmessage(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        committed = await services(request).engine.send(
            _account(request),
            convo_id=optional_convo_id(fields),
            text=fields.require("message"),
            user_info=UserInfo(fname=fields.text("fname") or "", email=fields.text("email") or ""),
            source_app="liveoperator",
            client_msg_id=client_msg_id(fields),
        )
        return ok(
            convoID=committed.conversation.id,
            message=message_json(committed.messages[0]),
            duplicate=committed.duplicate,
        )

    async def chatpoll(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        result = await services(request).engine.window_poll(
            _account(request),
            convo_id(fields),
            since=fields.number("since", minimum=0) or 0.0,
            after_seq=fields.integer("afterSeq", minimum=0),
        )
        return ok(
            convoID=result.conversation.id,
            messages=[message_json(m) for m in result.messages],
            typing=result.typing,
            status=result.conversation.status,
        )

    async def chattyping(request: Request) -> Response:
        fields = await read_fields(request)
        _visitor_only(fields)
        await services(request).engine.set_typing(
            _account(request), convo_id(fields), operator_id=None
        )
        return ok()

    return [
        Route(PREFIX + "/loadchat", loadchat, methods=["GET"]),
        Route(PREFIX + "/loadchat/{convo_id}", loadchat, methods=["GET"]),
        Route(PREFIX + "/postmessage", postmessage, methods=["POST"]),
        Route(PREFIX + "/chatpoll", chatpoll, methods=["GET", "POST"]),
        Route(PREFIX + "/chattyping", chattyping, methods=["POST"]),
    ]
