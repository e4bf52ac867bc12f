"""Seed 003's tenant WebSocket, ``/api/ws/tenant``: an ``auth`` frame with an operator JWT
within 5 seconds, then every event of the operator's account as ``{"type", "seq", "data"}``.
``since`` in the auth frame (an extension) resumes after that account seq."""

from __future__ import annotations

import contextlib

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime.outbox import Outbox
from server import metrics
from server.api.sockets import (
    CLOSE_BAD_FRAME,
    CLOSE_UNAUTHORIZED,
    HELLO_TIMEOUT_S,
    Session,
    control,
    read_json,
)
from server.auth import Recheck
from server.errors import Unauthorized
from server.events import account_channel
from server.services import services

ROUTE = "/api/ws/tenant"


async def tenant_socket(websocket: WebSocket) -> None:
    svc = services(websocket)
    await websocket.accept()
    session = Session(websocket, svc.hub, metrics.TENANT_WS)
    try:
        auth = await read_json(websocket, HELLO_TIMEOUT_S)
        if auth is None:
            return
        token, since = auth.get("token"), auth.get("since")
        if auth.get("type") != "auth" or not isinstance(token, str):
            await websocket.close(CLOSE_BAD_FRAME, "the first frame must be auth with a token")
            return
        if since is not None and (
            not isinstance(since, int) or isinstance(since, bool) or since < 0
        ):
            await websocket.close(CLOSE_BAD_FRAME, "since must be a whole number")
            return
        try:
            principal = await svc.auth.token(token)
        except Unauthorized as exc:
            await websocket.close(CLOSE_UNAUTHORIZED, exc.message)
            return
        account_id = principal.account_id
        outbox = Outbox(0, svc.feed.account_fetch(account_id))

        async def head() -> int:
            return await svc.feed.account_head(account_id)

        async def cursor() -> int:
            latest = await head()
            return latest if since is None or since > latest else since

        async def on_reset() -> int:
            outbox.cursor = await head()
            return outbox.cursor

        await session.subscribe(
            account_channel(account_id), outbox, cursor, on_reset, Recheck(svc.auth, principal)
        )
        await websocket.send_text(control("auth_ok", seq=outbox.cursor))
        while True:
            frame = await read_json(websocket)
            if frame is None:
                return
            if frame.get("type") == "ping":
                await websocket.send_text(control("pong"))
    except WebSocketDisconnect:
        pass
    finally:
        await session.close()
        # The client may be gone already, which Starlette reports as a disconnect.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()


routes = [WebSocketRoute(ROUTE, tenant_socket)]
