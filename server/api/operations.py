"""What the people running the server ask of it: ``/readyz`` and ``/metrics``
(docs/operations.md)."""

from __future__ import annotations

import hmac

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics
from server.api.wire import JSON, error_response
from server.readiness import OK, Readiness
from server.services import services

READYZ = "/readyz"
METRICS = "/metrics"


async def readyz(request: Request) -> Response:
    readiness = request.app.state.readiness
    assert isinstance(readiness, Readiness)
    checks = await readiness.checks()
    if all(result == OK for result in checks.values()):
        return JSON({"success": True, "checks": checks})
    failing = ", ".join(name for name, result in checks.items() if result != OK)
    return JSON(
        {
            "success": False,
            "checks": checks,
            "error": {"code": "not_ready", "message": f"not ready: {failing}"},
        },
        status_code=503,
        headers={"Retry-After": "1"},
    )


async def scrape(request: Request) -> Response:
    token = services(request).settings.metrics_token
    if token is None:
        # Never open by default on the public port: without a token the route is not there.
        return error_response(404, "not_found", "Not Found")
    given = request.headers.get("authorization", "")
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        response = error_response(401, "unauthorized", "a metrics bearer token is required")
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


routes = [
    Route(READYZ, readyz, methods=["GET"]),
    Route(METRICS, scrape, methods=["GET"]),
]
