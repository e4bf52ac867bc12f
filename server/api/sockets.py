"""What the visitor and tenant WebSockets share: limits, close codes, framing, the pump."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime.hub import Hub
from realtime.outbox import Idle, Outbox, Overflow, Reset
from server import metrics
from server.auth import Recheck

# The client must introduce itself (hello or auth) within this many seconds (seed 003).
HELLO_TIMEOUT_S = 5.0
# RFC 6455 leaves 4000-4999 to applications. Each tells the client what to do next.
CLOSE_BAD_FRAME = 4000  # fix the client: a frame was not the JSON object we expect
CLOSE_HELLO_TIMEOUT = 4001  # reconnect and send hello/auth first
CLOSE_UNAUTHORIZED = 4003  # log in again: the token is missing, invalid or expired
CLOSE_NOT_FOUND = 4004  # forget this conversation id
CLOSE_RESUME = 4008  # too slow: reconnect and resume from the last seq received
CLOSE_SHUTDOWN = 1012  # the server is restarting: reconnect and resume (RFC 6455 "service restart")

# What the hub holds while a socket is open: where it listens and its outbox.
Subscription = tuple[str, Outbox]


def frame(kind: str, seq: int | None, data: bytes) -> str:
    """``{"type", "seq", "data"}`` with the client-ready data spliced in, not re-encoded."""
    head = orjson.dumps({"type": kind, "seq": seq})
    return (head[:-1] + b',"data":' + data + b"}").decode()


def control(kind: str, **fields: Any) -> str:
    return orjson.dumps({"type": kind, **fields}).decode()


async def read_json(websocket: WebSocket, timeout_s: float | None = None) -> dict[str, Any] | None:
    """The next frame as a JSON object; None (after closing the socket) when it is not one
    or the timeout passed. Raises WebSocketDisconnect when the client left."""
    try:
        if timeout_s is None:
            # wait_for would wrap every idle read in a Task of its own: memory per socket.
            text = await websocket.receive_text()
        else:
            text = await asyncio.wait_for(websocket.receive_text(), timeout_s)
    except TimeoutError:
        await websocket.close(CLOSE_HELLO_TIMEOUT, "hello expected within 5 seconds")
        return None
    except KeyError:  # a binary frame: receive_text found no "text" key
        await websocket.close(CLOSE_BAD_FRAME, "frames must be JSON text")
        return None
    try:
        parsed = orjson.loads(text)
    except orjson.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        await websocket.close(CLOSE_BAD_FRAME, "frames must be JSON objects")
        return None
    return parsed


async def pump(
    websocket: WebSocket,
    outbox: Outbox,
    on_reset: Callable[[], Awaitable[int]],
    kind: str,
    recheck: Recheck | None,
) -> None:
    """Sends the outbox to the socket until either closes (a client gone is no error).
    ``on_reset`` moves the outbox to the present and returns the seq the client should
    reload up to; ``kind`` is the socket's connection kind in the metrics; ``recheck``, an
    operator's socket's, closes it once its token is revoked."""
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        while True:
            try:
                batch = await outbox.next_batch(None if recheck is None else recheck.wait(None))
            except Idle:
                if await _signed_out(websocket, recheck):
                    return
                continue
            except Reset:
                await websocket.send_text(control("reset", seq=await on_reset()))
                continue
            except Overflow:
                await websocket.close(CLOSE_RESUME, "too far behind: resume from your last seq")
                return
            if not batch:
                await websocket.close(CLOSE_SHUTDOWN, "server shutting down")
                return
            for item in batch:
                await websocket.send_text(frame(item.kind, item.seq, item.data))
            metrics.delivered(kind, batch)
            # Not kept through the wait for the next batch: an idle socket would hold its
            # last events' payloads for as long as it stays idle.
            del batch, item
            if await _signed_out(websocket, recheck):
                return


async def _signed_out(websocket: WebSocket, recheck: Recheck | None) -> bool:
    """Closes the socket when its operator's token is no longer accepted (see Recheck)."""
    if recheck is None or not await recheck.revoked():
        return False
    await websocket.close(CLOSE_UNAUTHORIZED, "signed out: log in again")
    return True


class Session:
    """One socket's subscriptions and the task pumping them; torn down together."""

    __slots__ = ("_hub", "_kind", "_subscription", "_task", "_websocket")

    def __init__(self, websocket: WebSocket, hub: Hub, kind: str) -> None:
        self._websocket = websocket
        self._hub = hub
        self._kind = kind
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def subscribed(self) -> bool:
        return self._subscription is not None

    async def subscribe(
        self, channel: str, outbox: Outbox, cursor: Callable[[], Awaitable[int]],
        on_reset: Callable[[], Awaitable[int]], recheck: Recheck | None = None,
    ) -> None:  # fmt: skip
        """Attaches first, then sets the cursor, so nothing committed in between is lost.
        ``recheck``: see ``pump``."""
        await self._hub.attach(channel, outbox)
        self._subscription = (channel, outbox)
        outbox.cursor = await cursor()
        # The pump itself, not a wrapper around it: one frame less for every idle socket.
        self._task = asyncio.create_task(
            pump(self._websocket, outbox, on_reset, self._kind, recheck)
        )

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._subscription is not None:
            await self._hub.detach(*self._subscription)
            self._subscription = None
