"""Operator login: email and password in, a signed expiring JWT out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.ratelimit import Rule
from server.api.wire import ok, read_fields
from server.render.snake_case import operator_json
from server.services import client_ip, services

# Bounds keep junk out of the KDF; real limits are checked where passwords are set.
EMAIL_MAX_CHARS = 254
PASSWORD_MAX_CHARS = 256
# Every attempt counts, right or wrong, and is counted before the password is checked (the
# KDF is the expensive part). Per email: about 3,000 guesses a day at one account, from any
# number of addresses. Per address: a whole office behind one NAT can log in at nine.
LOGIN_PER_EMAIL = Rule(limit=10, per_s=300.0)
LOGIN_PER_IP = Rule(limit=30, per_s=300.0)


async def login(request: Request) -> Response:
    fields = await read_fields(request)
    email = fields.identifier("email", required=True, max_chars=EMAIL_MAX_CHARS)
    password = fields.require("password", max_chars=PASSWORD_MAX_CHARS)
    svc = services(request)
    await svc.limit(LOGIN_PER_IP, "login-ip", client_ip(request))
    # Normalised as the login looks it up, so that case variants share one budget.
    await svc.limit(LOGIN_PER_EMAIL, "login-email", email.strip().lower())
    session = await svc.auth.login(email, password)
    return ok(
        token=session.token,
        expires_at=session.expires,
        operator=operator_json(session.operator),
    )


routes = [Route("/api/v1/auth/login", login, methods=["POST"])]
