"""Real clients for the realtime surfaces, for tests and the delivery ledger."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

WAIT_S = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[str]:
    """Runs ``app`` (lifespan already entered by the caller) under a real uvicorn."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, lifespan="off", log_level="warning",
        ws_per_message_deflate=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn offers no started event
            await asyncio.sleep(0.01)
        yield f"127.0.0.1:{port}"
    finally:
        server.should_exit = True
        server.force_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class SSEEvent:
    event: str
    data: Any
    id: str | None


@dataclass
class SSEClient:
    """A minimal EventSource: parses the stream and remembers the last id."""

    response: httpx.Response
    last_id: str | None = None
    first: SSEEvent | None = None
    _lines: AsyncIterator[str] | None = field(default=None)

    async def next(self, timeout_s: float = WAIT_S) -> SSEEvent:
        return await asyncio.wait_for(self._next(), timeout_s)

    async def _next(self) -> SSEEvent:
        if self._lines is None:
            self._lines = self.response.aiter_lines()
        event, data, event_id = "message", [], None
        async for line in self._lines:
            if line == "":
                if data:
                    if event_id is not None:
                        self.last_id = event_id
                    return SSEEvent(event, orjson.loads("\n".join(data)), event_id)
                event, data, event_id = "message", [], None
            elif line.startswith(":"):
                continue
            else:
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "event":
                    event = value
                elif name == "data":
                    data.append(value)
                elif name == "id":
                    event_id = value
        raise EOFError("stream ended")

    async def until(self, kind: str, timeout_s: float = WAIT_S) -> SSEEvent:
        while True:
            event = await self.next(timeout_s)
            if event.event == kind:
                return event


@asynccontextmanager
async def sse(base: str, token: str, last_event_id: str | None = None) -> AsyncIterator[SSEClient]:
    headers = {"Last-Event-ID": last_event_id} if last_event_id is not None else {}
    async with (
        httpx.AsyncClient(base_url=f"http://{base}", timeout=None) as client,
        client.stream(
            "GET", "/api/v1/operator/stream", params={"token": token}, headers=headers
        ) as response,
    ):
        assert response.status_code == 200, await response.aread()
        client = SSEClient(response)
        first = await client.next()
        assert first.event in ("ready", "reset"), first
        client.first = first
        yield client


class Socket:
    """A JSON WebSocket client with bounded waits."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, **frame: Any) -> None:
        await self.conn.send(orjson.dumps(frame).decode())

    async def recv(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.conn.recv(), timeout_s)
        parsed: dict[str, Any] = orjson.loads(raw)
        return parsed

    async def until(self, kind: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout_s)
            if frame["type"] == kind:
                return frame


@asynccontextmanager
async def websocket(url: str) -> AsyncIterator[Socket]:
    async with connect(url, open_timeout=WAIT_S, close_timeout=1) as conn:
        yield Socket(conn)
