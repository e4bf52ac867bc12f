"""The application: routes, middleware, and a lifespan that builds and closes the services."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from realtime.typing import MemoryTypingIndicators
from server.api import admin, auth, chat_window, commands
from server.api.wire import BodyLimit, ok, on_crash, on_http_error, on_liveop_error
from server.auth import Authenticator
from server.conversations import ConversationEngine
from server.directory import Directory
from server.errors import LiveOpError
from server.services import Services
from server.settings import Settings
from storage import create_store


async def healthz(request: Request) -> Response:
    return ok(status="ok")


def create_app(settings: Settings) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = create_store(settings.database_url)
        await store.open()
        try:
            typing = MemoryTypingIndicators()
            app.state.services = Services(
                settings=settings,
                store=store,
                engine=ConversationEngine(
                    store, typing, max_message_chars=settings.max_message_chars
                ),
                directory=Directory(store, settings.max_message_chars),
                auth=Authenticator(store, settings.secret_key, settings.jwt_ttl_s),
            )
            yield
        finally:
            await store.close()

    assets = Path(str(resources.files("widget_assets")))
    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            *commands.routes,
            *auth.routes,
            *admin.routes,
            Mount(chat_window.ASSET_BASE, StaticFiles(directory=assets), name="assets"),
            *chat_window.routes(chat_window.load_template()),
        ],
        middleware=[Middleware(BodyLimit, max_bytes=settings.max_body_bytes)],
        exception_handlers={
            LiveOpError: on_liveop_error,
            HTTPException: on_http_error,
            Exception: on_crash,
        },
        lifespan=lifespan,
    )
