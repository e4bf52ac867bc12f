"""What every request leaves behind: a request id, HTTP metrics, and the JSON access line.

A pure-ASGI middleware, outermost, so that every answer (a refused body, a crash) carries
``X-Request-ID`` and is counted.
"""

from __future__ import annotations

import logging
import re
import secrets
import time

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.api.wire import error_response
from server.logs import ACCESS_LOGGER, RequestContext, current_request

REQUEST_ID_HEADER = "x-request-id"
# A caller's id is kept when it is short and plain (what proxies and tracing generate: UUIDs,
# hex, base64url); anything else could forge or break log lines, so a new one replaces it.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Requests no route matched share one label: arbitrary paths must not grow the label set.
UNMATCHED = "unmatched"
# Any other method (a client may send any token) is counted as "other", for the same reason.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

access_log = logging.getLogger(ACCESS_LOGGER)


def request_id(scope: Scope) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            given = bytes(value).decode("latin-1")
            if _VALID_REQUEST_ID.fullmatch(given):
                return given
            break
    return secrets.token_hex(16)


def route_template(scope: Scope) -> str:
    """The matched route's path template (``/{account_id}/liveoperator/ws``), never the path."""
    path: object = getattr(scope.get("route"), "path", None)
    return path if isinstance(path, str) and path else UNMATCHED


class Telemetry:
    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = RequestContext(request_id(scope))
        token = current_request.set(context)
        start = time.perf_counter()
        status = 500
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] in ("http.response.start", "websocket.accept"):
                started = True
                status = message.get("status", 101)
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = context.request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            if scope["type"] == "http" and not started:
                # The crash handler outside this middleware would answer without the id.
                await error_response(
                    500, "internal_error", "the server failed; the error was logged"
                )(scope, receive, send_with_id)
            raise
        finally:
            context.route = route_template(scope)
            account = scope.get("path_params", {}).get("account_id")
            context.account_id = account if isinstance(account, str) else None
            if scope["type"] == "http":
                self._record(scope, context.route, status, time.perf_counter() - start)
            current_request.reset(token)

    def _record(self, scope: Scope, route: str, status: int, duration_s: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        metrics.http_requests.labels(route, method, str(status)).inc()
        metrics.http_duration.labels(route).observe(duration_s)
        if self.access_log:
            access_log.info(
                "%s %s %d", scope["method"], route, status,
                extra={"method": scope["method"], "path": _path(scope), "status": status,
                       "duration_s": round(duration_s, 6)},
            )  # fmt: skip


def _path(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    return f"{scope['path']}?{query}" if query else str(scope["path"])
