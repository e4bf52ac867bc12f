"""Operator login: email and password in, a signed expiring JWT out; and signing out."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from realtime.ratelimit import Rule
from server.api.commands import ID_MAX_CHARS
from server.api.wire import ok, read_fields
from server.auth import login_key
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
# A client that has logged in as this email before (it holds the device cookie) spends its
# own budget instead of the two above, so guesses from elsewhere cannot lock it out.
LOGIN_PER_DEVICE = Rule(limit=10, per_s=300.0)
DEVICE_COOKIE = "liveop_device"
# Sent back to the login only: nothing else needs it.
DEVICE_COOKIE_PATH = "/api/v1/auth/"
DEVICE_COOKIE_MAX_AGE_S = 365 * 24 * 3600


async def login(request: Request) -> Response:
    fields = await read_fields(request)
    email = fields.identifier("email", required=True, max_chars=EMAIL_MAX_CHARS)
    password = fields.require("password", max_chars=PASSWORD_MAX_CHARS)
    # Needed only when the email and password sign in to several accounts (409
    # account_required): emails are unique per account.
    account = fields.identifier("account", max_chars=ID_MAX_CHARS)
    svc = services(request)
    device = svc.auth.device(email, request.cookies.get(DEVICE_COOKIE, ""))
    if device is not None:
        await svc.limit(LOGIN_PER_DEVICE, "login-device", device)
    else:
        await svc.limit(LOGIN_PER_IP, "login-ip", client_ip(request))
        await svc.limit(LOGIN_PER_EMAIL, "login-email", login_key(email))
    session = await svc.auth.login(email, password, account)
    response = ok(
        token=session.token,
        expires_at=session.expires,
        operator=operator_json(session.operator),
    )
    response.set_cookie(
        DEVICE_COOKIE,
        session.device_token,
        max_age=DEVICE_COOKIE_MAX_AGE_S,
        path=DEVICE_COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response


async def sign_out(request: Request) -> Response:
    svc = services(request)
    await svc.auth.sign_out(await svc.auth.headers(request.headers))
    return ok()


async def sign_out_everywhere(request: Request) -> Response:
    svc = services(request)
    await svc.auth.sign_out_everywhere(await svc.auth.headers(request.headers))
    return ok()


routes = [
    Route("/api/v1/auth/login", login, methods=["POST"]),
    Route("/api/v1/auth/sign-out", sign_out, methods=["POST"]),
    Route("/api/v1/auth/sign-out-everywhere", sign_out_everywhere, methods=["POST"]),
]
