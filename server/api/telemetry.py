"""What every request leaves behind: a request id, HTTP and connection metrics, and the JSON
access line.

A pure-ASGI middleware, outermost, so that every answer (a refused body, a crash) carries
``X-Request-ID`` and is counted. It sees the realtime connections open and close too, so the
connection metrics need no hook in the endpoints: a WebSocket's close reason is its close code.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time

from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.api import stream, tenant_ws, visitor_ws
from server.api.sockets import (
    CLOSE_BAD_FRAME,
    CLOSE_HELLO_TIMEOUT,
    CLOSE_NOT_FOUND,
    CLOSE_RESUME,
    CLOSE_SHUTDOWN,
    CLOSE_UNAUTHORIZED,
)
from server.api.wire import crash_response
from server.logs import ACCESS_LOGGER, RequestContext, current_request
from server.readiness import Readiness

REQUEST_ID_HEADER = b"x-request-id"
# A caller's id is kept when it is short and plain (what proxies and tracing generate: UUIDs,
# hex, base64url); anything else could forge or break log lines, so a new one replaces it.
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}")
# Any other method (a client may send any token) is counted as "other": bounded labels.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
CONNECTION_KIND = {
    visitor_ws.ROUTE: metrics.VISITOR_WS,
    tenant_ws.ROUTE: metrics.TENANT_WS,
    stream.ROUTE: metrics.OPERATOR_SSE,
}
# The close reason label of each WebSocket close code, whoever sent it; any other is "other".
CLOSE_REASON = {
    1000: "normal",
    1001: "client",
    1005: "client",
    1006: "client",
    CLOSE_SHUTDOWN: "shutdown",
    CLOSE_BAD_FRAME: "bad_frame",
    CLOSE_HELLO_TIMEOUT: "hello_timeout",
    CLOSE_UNAUTHORIZED: "unauthorized",
    CLOSE_NOT_FOUND: "not_found",
    CLOSE_RESUME: "overflow",
}

access_log = logging.getLogger(ACCESS_LOGGER)


def given_request_id(scope: Scope) -> str | None:
    """The client's X-Request-ID when it is one we keep."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            given = bytes(value).decode("latin-1")
            return given if _VALID_REQUEST_ID.fullmatch(given) else None
    return None


class _Watch:
    """One request's or connection's messages, watched for what Telemetry records: the
    status, the connection kind opened and who closed it. One slotted object and its two
    bound methods instead of closures over a dozen cells: an idle WebSocket or event
    stream keeps it for its lifetime (issue 20)."""

    __slots__ = (
        "_context",
        "_id_bytes",
        "_receive",
        "_send",
        "kind",
        "reason",
        "started",
        "status",
    )

    def __init__(self, context: RequestContext, receive: Receive, send: Send) -> None:
        self._context = context
        self._id_bytes = context.request_id.encode()
        self._receive = receive
        self._send = send
        self.status = 500
        self.started = False
        self.kind: str | None = None
        # Whoever closes first names the reason: the other side's close that follows is an echo.
        self.reason: str | None = None

    async def receive(self) -> Message:
        message = await self._receive()
        if self.reason is None and message["type"] == "websocket.disconnect":
            self.reason = CLOSE_REASON.get(message.get("code", 1005), "other")
        elif self.reason is None and message["type"] == "http.disconnect":
            self.reason = "client"
        return message

    async def send(self, message: Message) -> None:
        if message["type"] in ("http.response.start", "websocket.accept"):
            self.started = True
            self.status = message.get("status", 101)
            # Appended, not merged: no endpoint sets this header itself.
            message["headers"] = [*message.get("headers", ()), (REQUEST_ID_HEADER, self._id_bytes)]
            self.kind = self._opened(message)
        elif message["type"] == "websocket.close" and self.reason is None:
            self.reason = CLOSE_REASON.get(message.get("code", 1000), "other")
        await self._send(message)

    def _opened(self, message: Message) -> str | None:
        """The connection kind the response opens (counted as open), if it opens one."""
        found = CONNECTION_KIND.get(self._context.route)
        if found is None or message.get("status", 200) != 200:
            return None
        metrics.connections_opened.labels(found).inc()
        metrics.connections.labels(found).inc()
        return found


class Telemetry:
    def __init__(self, app: ASGIApp, *, access_log: bool) -> None:
        self.app = app
        self.access_log = access_log
        # Ids must be unique, not secret: a random prefix per process and a counter cost
        # nothing per request, where 16 bytes from the OS's generator cost 2-3% of a request's
        # CPU (py-spy over bench/realtime_bench.py).
        self._id_prefix = secrets.token_hex(6)
        self._id_numbers = itertools.count(1)
        # The labelled series of each (route, method, status) seen, looked up once: a request
        # then costs two dict lookups instead of two label resolutions.
        self._series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        context = RequestContext(
            given_request_id(scope) or f"{self._id_prefix}-{next(self._id_numbers):x}", scope
        )
        token = current_request.set(context)
        start = time.perf_counter()
        watch = _Watch(context, receive, send)
        try:
            await self.app(scope, watch.receive, watch.send)
        except Exception as exc:
            if scope["type"] == "http" and not watch.started:
                # The crash handler outside this middleware would answer without the id.
                await crash_response(exc)(scope, receive, watch.send)
            raise
        finally:
            if watch.kind is not None:
                self._closed(scope, watch.kind, watch.reason or "server")
            if scope["type"] == "http":
                self._record(scope, context.route, watch.status, time.perf_counter() - start)
            current_request.reset(token)

    def _closed(self, scope: Scope, kind: str, reason: str) -> None:
        readiness = getattr(scope["app"].state, "readiness", None)
        if reason == "server" and isinstance(readiness, Readiness) and readiness.shutting_down:
            reason = "shutdown"  # an SSE stream the server ended because it is stopping
        metrics.connections.labels(kind).dec()
        metrics.connections_closed.labels(kind, reason).inc()

    def _record(self, scope: Scope, route: str, status: int, duration_s: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "other"
        key = (route, method, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = (
                metrics.http_requests.labels(route, method, str(status)),
                metrics.http_duration.labels(route),
            )
        series[0].inc()
        series[1].observe(duration_s)
        if self.access_log:
            access_log.info(
                "%s %s %d", method, route, status,
                extra={"method": method, "path": _path(scope), "status": status,
                       "duration_s": round(duration_s, 6)},
            )  # fmt: skip


# A bot channel's key is the Operator API's only credential (seed 004): never in a log line.
_OPERATOR_API_KEY = re.compile(r"^/operator-api/[^/]+")


def _path(scope: Scope) -> str:
    query = scope.get("query_string", b"").decode("latin-1")
    path = _OPERATOR_API_KEY.sub("/operator-api/{key}", str(scope["path"]))
    return f"{path}?{query}" if query else path
