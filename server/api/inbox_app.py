"""The operator inbox web app: ``/app/`` is its page, ``/app/<file>`` its modules and styles
(``widget_assets/app``, plain files, no build step)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

ROOT = "/app"
# Only this server's scripts, styles and connections. Images may also come from any https
# URL, as an operator's or a chatbot's message may link one. No inline script or style at all,
# so text that slipped into the DOM as markup still could not run; no framing (clickjacking).
PAGE_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https:; connect-src 'self'; "
        "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def routes() -> list[BaseRoute]:
    directory = Path(str(resources.files("widget_assets"))) / "app"
    page = (directory / "index.html").read_bytes()

    async def index(request: Request) -> Response:
        return HTMLResponse(page, headers=PAGE_HEADERS)

    async def slash(request: Request) -> Response:
        return RedirectResponse(f"{ROOT}/", status_code=308)

    return [
        Route(ROOT, slash, methods=["GET"]),
        Route(f"{ROOT}/", index, methods=["GET"]),
        # Never served as a plain file, which would be without its headers.
        Route(f"{ROOT}/index.html", slash, methods=["GET"]),
        Mount(ROOT, StaticFiles(directory=directory), name="inbox-app"),
    ]
