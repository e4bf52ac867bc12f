"""The people of an account (issue 18): an operator's own profile ("me"), and invitations.

``/api/v1/operator/me`` is the caller's profile: name, avatar, language and password (with the
current one). ``/api/v1/admin/invites`` is an admin's invitations of teammates; the invitee
opens the link in the inbox, which reads the invitation and accepts it with a password through
``/api/v1/auth/invite`` and ``/api/v1/auth/invite/accept`` (no credentials: the token is them).

The token travels in the link's fragment (``/app/#/invite/TOKEN``) and in request bodies,
never in a URL a server or proxy logs.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.admin import CREATED, announce_operator
from server.api.admin import ROOT as ADMIN_ROOT
from server.api.auth import LOGIN_PER_EMAIL, LOGIN_PER_IP, PASSWORD_MAX_CHARS
from server.api.operator_panel import LANG_MAX_CHARS, caller
from server.api.wire import JSON, ok, path_id, read_fields
from server.auth import Session, login_key
from server.directory import AVATAR_URL_MAX, NAME_MAX
from server.errors import Invalid, NotFound
from server.render.snake_case import invite_json, operator_json
from server.services import client_ip, services

# The path the inbox opens an invitation at; the admin's inbox shows it on its own origin.
INVITE_PATH = "/app/#/invite/"
# Tokens we issue are 43 characters; the bound keeps junk out of the hash.
TOKEN_MAX_CHARS = 100
# An email address's longest legal length.
EMAIL_MAX_CHARS = 254
# A teammate joins a few teams; the bound keeps one request to a few lookups.
INVITE_TEAMS_MAX = 50


def _session_json(session: Session) -> dict[str, object]:
    return {
        "token": session.token,
        "expires_at": session.expires,
        "operator": operator_json(session.operator),
    }


async def me(request: Request) -> Response:
    _, operator, _ = await caller(request)
    # The account id goes into the widget's embed snippet (Admin → Install).
    return ok(operator=operator_json(operator), account_id=operator.account_id)


async def update_me(request: Request) -> Response:
    """Name, avatar_url, lang; password with current_password. A new password signs out
    every other session of the operator: the answer carries this one's new token."""
    svc, operator, fields = await caller(request)
    password = fields.text("password", max_chars=PASSWORD_MAX_CHARS)
    if password is not None:
        # The current password is a guess like a login's, and spends the same budget.
        await svc.limit(LOGIN_PER_EMAIL, "login-email", login_key(operator.email))
    updated = await svc.directory.update_profile(
        operator,
        name=fields.text("name", max_chars=NAME_MAX),
        avatar_url=fields.text("avatar_url", max_chars=AVATAR_URL_MAX),
        lang=fields.text("lang", max_chars=LANG_MAX_CHARS),
        password=password,
        current_password=fields.text("current_password", max_chars=PASSWORD_MAX_CHARS),
    )
    await announce_operator(request, updated)
    if password is None:
        return ok(operator=operator_json(updated))
    return ok(**_session_json(await svc.auth.session(updated)))


async def _admin(request: Request) -> tuple[str, int | None]:
    """The admin's account and operator id (None for the API key)."""
    principal = await services(request).auth.headers(request.headers)
    principal.require_admin()
    return principal.account_id, principal.operator.id if principal.operator else None


async def list_invites(request: Request) -> Response:
    account_id, _ = await _admin(request)
    found = await services(request).directory.list_invites(account_id)
    return ok(invites=[invite_json(i) for i in found])


async def create_invite(request: Request) -> Response:
    """The link is in this answer only: the server keeps a hash of its token."""
    account_id, admin_id = await _admin(request)
    fields = await read_fields(request)
    team_ids = fields.int_list("team_ids") or []
    if len(team_ids) > INVITE_TEAMS_MAX:
        raise Invalid("invalid_field", f"team_ids lists at most {INVITE_TEAMS_MAX} teams")
    invite, token = await services(request).directory.invite(
        account_id,
        admin_id,
        email=fields.require("email", max_chars=EMAIL_MAX_CHARS),
        name=fields.require("name", max_chars=NAME_MAX),
        is_admin=fields.boolean("is_admin") or False,
        team_ids=team_ids,
    )
    answer = {**invite_json(invite), "token": token, "path": INVITE_PATH + token}
    return JSON({"success": True, "invite": answer}, CREATED)


async def revoke_invite(request: Request) -> Response:
    account_id, _ = await _admin(request)
    missing = NotFound("invite_not_found", "no such invitation")
    await services(request).directory.revoke_invite(account_id, path_id(request, "id", missing))
    return ok()


async def open_invite(request: Request) -> Response:
    """What the invitee sees before choosing a password: who invited them where."""
    fields = await read_fields(request)
    token = fields.identifier("token", required=True, max_chars=TOKEN_MAX_CHARS)
    invite, account = await services(request).directory.open_invite(token)
    return ok(invite={"email": invite.email, "name": invite.name, "account_name": account.name,
                      "expires_at": invite.expires})  # fmt: skip


async def accept_invite(request: Request) -> Response:
    """The invitee's password in, a signed-in session out, as a login answers."""
    svc = services(request)
    fields = await read_fields(request)
    token = fields.identifier("token", required=True, max_chars=TOKEN_MAX_CHARS)
    password = fields.require("password", max_chars=PASSWORD_MAX_CHARS)
    # The password's KDF is the expensive part: an address gets a login's budget.
    await svc.limit(LOGIN_PER_IP, "login-ip", client_ip(request))
    operator = await svc.directory.accept_invite(token, password)
    return ok(**_session_json(await svc.auth.session(operator)))


routes = [
    Route("/api/v1/operator/me", me, methods=["GET"]),
    Route("/api/v1/operator/me", update_me, methods=["PATCH"]),
    Route(f"{ADMIN_ROOT}/invites", list_invites, methods=["GET"]),
    Route(f"{ADMIN_ROOT}/invites", create_invite, methods=["POST"]),
    Route(f"{ADMIN_ROOT}/invites/{{id}}", revoke_invite, methods=["DELETE"]),
    Route("/api/v1/auth/invite", open_invite, methods=["POST"]),
    Route("/api/v1/auth/invite/accept", accept_invite, methods=["POST"]),
]
