"""Operator login: email and password in, a signed expiring JWT out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.operators import operator_json
from server.api.wire import ok, read_fields
from server.services import services

# Bounds keep junk out of the KDF; real limits are checked where passwords are set.
EMAIL_MAX_CHARS = 254
PASSWORD_MAX_CHARS = 256


async def login(request: Request) -> Response:
    fields = await read_fields(request)
    session = await services(request).auth.login(
        fields.require("email", max_chars=EMAIL_MAX_CHARS),
        fields.require("password", max_chars=PASSWORD_MAX_CHARS),
    )
    return ok(
        token=session.token,
        expires_at=session.expires,
        operator=operator_json(session.operator),
    )


routes = [Route("/api/v1/auth/login", login, methods=["POST"])]
