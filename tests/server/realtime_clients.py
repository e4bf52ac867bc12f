"""Real clients for the realtime surfaces, for tests and the delivery ledger."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
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
    # The data lines exactly as sent, for byte comparisons.
    raw: str = ""


class SSEClient:
    """A minimal EventSource: one task parses the stream into a queue, so a read that times
    out leaves the stream intact (cancelling a line iterator would break it)."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.last_id: str | None = None
        self.first: SSEEvent | None = None
        self._events: asyncio.Queue[SSEEvent | None] = asyncio.Queue()
        self._task = asyncio.create_task(self._pump())

    async def next(self, timeout_s: float = WAIT_S) -> SSEEvent:
        event = await asyncio.wait_for(self._events.get(), timeout_s)
        if event is None:
            self._events.put_nowait(None)  # stays ended for every later read
            raise EOFError("stream ended")
        if event.id is not None:
            self.last_id = event.id
        return event

    async def until(self, kind: str, timeout_s: float = WAIT_S) -> SSEEvent:
        while True:
            event = await self.next(timeout_s)
            if event.event == kind:
                return event

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _pump(self) -> None:
        event, data, event_id = "message", [], None
        try:
            async for line in self.response.aiter_lines():
                if line == "":
                    if data:
                        raw = "\n".join(data)
                        self._events.put_nowait(SSEEvent(event, orjson.loads(raw), event_id, raw))
                    event, data, event_id = "message", [], None
                elif not line.startswith(":"):
                    name, _, value = line.partition(":")
                    value = value[1:] if value.startswith(" ") else value
                    if name == "event":
                        event = value
                    elif name == "data":
                        data.append(value)
                    elif name == "id":
                        event_id = value
        except httpx.HTTPError:
            pass
        finally:
            self._events.put_nowait(None)


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
        try:
            first = await client.next()
            assert first.event in ("ready", "reset"), first
            client.first = first
            yield client
        finally:
            await client.close()


class Socket:
    """A JSON WebSocket client with bounded waits."""

    def __init__(self, conn: ClientConnection) -> None:
        self.conn = conn

    async def send(self, **frame: Any) -> None:
        await self.conn.send(orjson.dumps(frame).decode())

    async def recv(self, timeout_s: float = WAIT_S) -> dict[str, Any]:
        parsed: dict[str, Any] = orjson.loads(await self.recv_raw(timeout_s))
        return parsed

    async def recv_raw(self, timeout_s: float = WAIT_S) -> str | bytes:
        """The next frame exactly as sent."""
        return await asyncio.wait_for(self.conn.recv(), timeout_s)

    async def until(self, kind: str, timeout_s: float = WAIT_S) -> dict[str, Any]:
        while True:
            frame = await self.recv(timeout_s)
            if frame["type"] == kind:
                return frame


@asynccontextmanager
async def websocket(url: str) -> AsyncIterator[Socket]:
    async with connect(url, open_timeout=WAIT_S, close_timeout=1) as conn:
        yield Socket(conn)
