"""The load generator's client processes, driven by bench/realtime_bench.py over a pipe.

Each process speaks for one account: it holds that account's idle visitor sockets and operator
streams, and runs its conversations. Two servers are spoken to with the same traffic shape:

- ``liveop``: visitors on ``/{accountID}/liveoperator/ws`` (hello, send), operators on the SSE
  stream ``/api/v1/operator/stream?token=JWT``, operator replies as App Command ``sendmessage``;
- ``socketio``: bench/socketio_relay.py, over the raw Engine.IO v4 / Socket.IO v5 text protocol on
  the same WebSocket client library, so that client-side costs are alike on both sides.

Every WebSocket offers per-message compression the way browsers do
(``permessage-deflate; client_max_window_bits``): the server decides whether it is used.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field, replace
from multiprocessing.connection import Connection
from typing import Any, Literal
from urllib.parse import urlencode

import httpx
import orjson
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from bench.harness import pin_self, raise_open_files_limit

Kind = Literal["liveop", "socketio"]
# A handshake (TCP, upgrade, hello, the server's lookups) takes milliseconds; while thousands
# queue up behind each other on one server core it can take seconds.
CONNECT_TIMEOUT_S = 60.0
# Handshakes in flight per client process: enough to keep the server busy, few enough that its
# listen backlog (2048 in uvicorn) never overflows with several processes connecting at once.
CONNECT_CONCURRENCY = 64
# Conversations created at once over HTTP by one process.
CREATE_CONCURRENCY = 16
# The operator stream sends a keep-alive comment every 15 s; four missed ones mean it is gone.
SSE_READ_TIMEOUT_S = 60.0
HTTP_TIMEOUT_S = 30.0
# Operator replies in flight per client process. One server core answers one request at a
# time; more connections would only queue inside it and add to every reply's latency.
REPLY_CONNECTIONS = 16
# How long a run waits, after its window, for messages still in flight.
DRAIN_S = 5.0
APP = "liveoperator"
# Engine.IO v4 packet types, as the first character of each text frame.
EIO_OPEN, EIO_PING, EIO_PONG, EIO_MESSAGE = "0", "2", "3", "4"
# Socket.IO v5 packet types, the character after Engine.IO's "4".
SIO_CONNECT, SIO_EVENT, SIO_ACK = "0", "2", "3"
SIO_OPERATORS = "/operator"

# (conversation id, sender, client message id) of each message:new a connection receives.
OnMessage = Callable[[str, str, str | None], None]


@dataclass(frozen=True, slots=True)
class Target:
    """One account: where its clients connect and the credentials they use.

    With several server processes the three kinds of client of one account are put on
    different processes, so that every message crosses from one process to another."""

    kind: Kind
    base_url: str  # visitor WebSockets (and everything on the relay)
    account_id: str
    api_key: str
    operator_id: int
    token: str
    stream_url: str  # operator SSE streams
    command_url: str  # App Command requests: operator replies, new conversations
    # The idle streams' operators, one stream each, as in an inbox where every operator has
    # one tab open (the server caps the streams of one operator, server/api/stream.py).
    idle_tokens: tuple[str, ...] = ()

    @property
    def ws_url(self) -> str:
        return "ws" + self.base_url.removeprefix("http")


@dataclass(frozen=True, slots=True)
class OpenVisitors:
    """Opens one idle visitor socket per (conversation id, last seq)."""

    target: Target
    conversations: tuple[tuple[str, int], ...]


@dataclass(frozen=True, slots=True)
class OpenOperators:
    """Opens idle operator connections (SSE streams, or socket.io operator sockets)."""

    target: Target
    count: int


@dataclass(frozen=True, slots=True)
class PrepareChat:
    """Creates ``active`` conversations and connects a visitor to each and one operator."""

    target: Target
    active: int


@dataclass(frozen=True, slots=True)
class RunChat:
    """Runs the prepared conversations from ``start_at - warmup_s`` to ``end_at`` (wall clock,
    shared by every process of the machine). With ``rate_per_s`` visitors send at that fixed
    rate and nobody replies; without it every conversation is a closed loop: the visitor sends,
    the operator replies when it sees the message, the visitor sends again when it sees the
    reply. Only deliveries received inside the window count."""

    start_at: float
    end_at: float
    warmup_s: float
    rate_per_s: float | None


@dataclass(frozen=True, slots=True)
class TakeCensus:
    pass


@dataclass(frozen=True, slots=True)
class CloseAll:
    pass


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Command = OpenVisitors | OpenOperators | PrepareChat | RunChat | TakeCensus | CloseAll | Stop


@dataclass(slots=True)
class Census:
    visitors: int = 0
    operators: int = 0
    lost: int = 0  # connections the server closed, or that broke, while we held them
    errors: int = 0  # error frames, failed replies
    opened_s: float = 0.0  # how long the last Open* command took
    lost_why: dict[str, int] = field(default_factory=dict)  # close code and reason: how many


@dataclass(frozen=True, slots=True)
class ChatResult:
    deliveries: int  # messages received by the other side inside the window
    # Visitor send -> operator receive, and operator reply -> visitor receive, in seconds, of
    # the messages sent inside the window.
    to_operator_s: list[float]
    to_visitor_s: list[float]
    sent: int  # messages sent inside the window
    undelivered: int  # of those, still not received when the drain ended
    max_send_lag_s: float  # how far behind its schedule the paced sender fell
    census: Census


@dataclass(frozen=True, slots=True)
class Failed:
    error: str


def http_client(base_url: str, connections: int | None = None) -> httpx.AsyncClient:
    # Loopback only: a proxy from the environment would measure the proxy.
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=HTTP_TIMEOUT_S,
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        trust_env=False,
    )


def command_fields(target: Target, payload: dict[str, Any]) -> dict[str, str]:
    return {
        "accountID": target.account_id,
        "key": target.api_key,
        "app": APP,
        "command": "sendmessage",
        "json": orjson.dumps(payload).decode(),
    }


class CommandClient:
    """App Command POSTs over a few persistent HTTP/1.1 connections.

    httpx's connection pool walks its connections and queued requests on every request, which
    at hundreds of replies per second made the load generator, not the server, the bottleneck.
    This speaks just enough HTTP/1.1 for uvicorn's answers (a Content-Length body)."""

    def __init__(self, base_url: str, connections: int) -> None:
        parts = httpx.URL(base_url)
        self._host, self._port = parts.host, parts.port or 80
        self._lanes = asyncio.Semaphore(connections)
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._head = (
            f"POST / HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: "
        ).encode()

    async def post(self, fields: dict[str, str]) -> int:
        """Posts the form and returns the response status."""
        body = urlencode(fields).encode()
        async with self._lanes, asyncio.timeout(HTTP_TIMEOUT_S):
            if self._idle:
                reader, writer = self._idle.pop()
            else:
                reader, writer = await asyncio.open_connection(self._host, self._port)
            try:
                writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
                status = int((await reader.readline()).split(b" ", 2)[1])
                length, keep = 0, True
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.partition(b":")
                    name = name.strip().lower()
                    if name == b"content-length":
                        length = int(value)
                    elif name == b"connection":
                        keep = value.strip().lower() != b"close"
                await reader.readexactly(length)
            except BaseException:
                writer.close()
                raise
        if keep:
            self._idle.append((reader, writer))
        else:
            writer.close()
        return status

    def close(self) -> None:
        for _, writer in self._idle:
            writer.close()
        self._idle.clear()


async def create_conversations(target: Target, count: int) -> list[tuple[str, int]]:
    """``count`` new conversations, each opened by one visitor message, with their last seq.

    On the relay a conversation is only a room name: nothing is stored, so there is nothing to
    create."""
    if target.kind == "socketio":
        return [(secrets.token_urlsafe(16), 0) for _ in range(count)]
    made: list[tuple[str, int]] = []
    # Client message ids are idempotency keys: a fresh prefix per batch keeps batches apart.
    batch = secrets.token_hex(4)
    lanes = asyncio.Semaphore(CREATE_CONCURRENCY)
    async with http_client(target.command_url, CREATE_CONCURRENCY) as http:

        async def create(n: int) -> None:
            payload = {"message": f"hello {n}", "sourceApp": APP, "clientMsgID": f"{batch}-{n}"}
            async with lanes:
                response = await http.post("/", data=command_fields(target, payload))
            response.raise_for_status()
            answer = response.json()
            made.append((str(answer["convoID"]), int(answer["message"]["seq"])))

        async with asyncio.TaskGroup() as group:
            for n in range(count):
                group.create_task(create(n))
    return made


def idle_target(target: Target, k: int) -> Target:
    """The target as the ``k``-th idle operator of its account sees it."""
    if target.kind == "socketio":
        return target
    return replace(target, token=target.idle_tokens[k])


async def create_operators(target: Target, count: int, password: str) -> tuple[str, ...]:
    """``count`` more operators of the target's account, made with its API key as an admin
    integration would, each signed in: their tokens."""
    batch = secrets.token_hex(4)
    lanes = asyncio.Semaphore(CREATE_CONCURRENCY)
    async with http_client(target.command_url, CREATE_CONCURRENCY) as http:

        async def create(n: int) -> str:
            email = f"idle-{batch}-{n}@bench.test"
            async with lanes:
                created = await http.post(
                    "/api/v1/admin/operators",
                    json={"name": f"Idle {n}", "email": email, "password": password},
                    headers={"X-Api-Key": target.api_key},
                )
                created.raise_for_status()
                signed_in = await http.post(
                    "/api/v1/auth/login", data={"email": email, "password": password}
                )
                signed_in.raise_for_status()
            return str(signed_in.json()["token"])

        return tuple(await asyncio.gather(*(create(n) for n in range(count))))


async def login(base_url: str, email: str, password: str) -> str:
    async with http_client(base_url) as http:
        response = await http.post(
            "/api/v1/auth/login", data={"email": email, "password": password}
        )
        response.raise_for_status()
        return str(response.json()["token"])


async def open_websocket(url: str) -> ClientConnection:
    return await connect(
        url,
        # What browsers offer; the server answers with its own window sizes, or declines.
        compression=None,
        extensions=[ClientPerMessageDeflateFactory(client_max_window_bits=True)],
        # Browsers never ping; the server's pings (every 20 s) are answered automatically.
        ping_interval=None,
        open_timeout=CONNECT_TIMEOUT_S,
        close_timeout=1.0,
        proxy=None,
    )


async def receive_until(ws: ClientConnection, done: Callable[[str], bool]) -> None:
    """Reads handshake frames until one satisfies ``done``, within CONNECT_TIMEOUT_S."""
    async with asyncio.timeout(CONNECT_TIMEOUT_S):
        while True:
            text = await ws.recv()
            if isinstance(text, str) and done(text):
                return


def websocket_closed(ws: ClientConnection) -> str | None:
    if ws.close_code is None:
        return None
    return f"WebSocket close {ws.close_code} {ws.close_reason}".rstrip()


class Held:
    """A connection being held: a task reads it until it closes, and a close we did not ask
    for is counted as lost."""

    def __init__(self, census: Census) -> None:
        self._census = census
        self._closing = False
        self._reader: asyncio.Task[None] | None = None

    def start(self, reader: Awaitable[None]) -> None:
        self._reader = asyncio.create_task(self._guard(reader))

    async def _guard(self, reader: Awaitable[None]) -> None:
        how = "closed"
        try:
            await reader
        except (WebSocketException, httpx.HTTPError, OSError) as exc:
            how = str(exc) or type(exc).__name__
        if not self._closing:
            self._census.lost += 1
            why = self._why_closed() or how
            self._census.lost_why[why] = self._census.lost_why.get(why, 0) + 1

    def _why_closed(self) -> str | None:
        """The close code and reason the server gave, where the transport has them."""
        return None

    async def close(self) -> None:
        self._closing = True
        await self._close_transport()
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def _close_transport(self) -> None:
        raise NotImplementedError


class Visitor(Held):
    async def send(self, text: str, client_msg_id: str) -> None:
        raise NotImplementedError


class Operator(Held):
    async def reply(self, convo_id: str, text: str, client_msg_id: str) -> None:
        raise NotImplementedError


class LiveopVisitor(Visitor):
    def __init__(self, census: Census, ws: ClientConnection, on_message: OnMessage) -> None:
        super().__init__(census)
        self._ws = ws
        self._on_message = on_message

    @classmethod
    async def open(
        cls, target: Target, convo_id: str, seq: int, census: Census, on_message: OnMessage
    ) -> LiveopVisitor:
        ws = await open_websocket(f"{target.ws_url}/{target.account_id}/liveoperator/ws")
        try:
            await ws.send(orjson.dumps({"type": "hello", "convoID": convo_id, "seq": seq}).decode())
            # Replayed messages (none when seq is the latest) may come before or after ready.
            await receive_until(ws, lambda text: orjson.loads(text).get("type") == "ready")
        except BaseException:
            await ws.close()
            raise
        visitor = cls(census, ws, on_message)
        visitor.start(visitor._read())
        return visitor

    async def _read(self) -> None:
        async for text in self._ws:
            frame = orjson.loads(text)
            kind = frame.get("type")
            if kind == "message:new":
                data = frame["data"]
                self._on_message(data["convoID"], data["sender"], data.get("clientMsgID"))
            elif kind == "error":
                self._census.errors += 1

    async def send(self, text: str, client_msg_id: str) -> None:
        frame = {"type": "send", "message": text, "clientMsgID": client_msg_id}
        await self._ws.send(orjson.dumps(frame).decode())

    async def _close_transport(self) -> None:
        await self._ws.close()

    def _why_closed(self) -> str | None:
        return websocket_closed(self._ws)


class LiveopOperator(Operator):
    """An SSE stream of the account's events; replies go out as App Command sendmessage."""

    def __init__(
        self,
        census: Census,
        target: Target,
        http: httpx.AsyncClient,
        commands: CommandClient,
        on_message: OnMessage,
    ) -> None:
        super().__init__(census)
        self._target = target
        self._http = http
        self._commands = commands
        self._on_message = on_message
        self._ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._response: httpx.Response | None = None

    @classmethod
    async def open(
        cls,
        target: Target,
        http: httpx.AsyncClient,
        commands: CommandClient,
        census: Census,
        on_message: OnMessage,
    ) -> LiveopOperator:
        operator = cls(census, target, http, commands, on_message)
        operator.start(operator._read())
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_S):
                await asyncio.shield(operator._ready)
        except BaseException:
            await operator.close()
            raise
        return operator

    async def _read(self) -> None:
        try:
            await self._stream()
            raise httpx.RemoteProtocolError("the stream ended")
        except BaseException as exc:
            if not self._ready.done():
                self._ready.set_exception(exc)
                self._ready.exception()  # retrieved, so a failed open logs no warning
            raise

    async def _stream(self) -> None:
        timeout = httpx.Timeout(HTTP_TIMEOUT_S, read=SSE_READ_TIMEOUT_S)
        async with self._http.stream(
            "GET", "/api/v1/operator/stream", params={"token": self._target.token}, timeout=timeout
        ) as response:
            self._response = response
            response.raise_for_status()
            event, data = "", ""
            async for line in response.aiter_lines():
                if line:
                    name, _, value = line.partition(":")
                    if name == "event":
                        event = value.strip()
                    elif name == "data":
                        data = value.strip()
                    continue
                if event == "message:new":
                    message = orjson.loads(data)["message"]
                    self._on_message(
                        message["conversation_id"], message["sender"], message["client_msg_id"]
                    )
                elif event == "ready" and not self._ready.done():
                    self._ready.set_result(None)
                event, data = "", ""

    async def reply(self, convo_id: str, text: str, client_msg_id: str) -> None:
        payload = {
            "convoID": convo_id,
            "message": text,
            "operatorID": self._target.operator_id,
            "sourceApp": APP,
            "clientMsgID": client_msg_id,
        }
        if await self._commands.post(command_fields(self._target, payload)) != httpx.codes.OK:
            self._census.errors += 1

    async def _close_transport(self) -> None:
        if self._response is not None:
            await self._response.aclose()


def sio_event(namespace: str, ack_id: int | None, name: str, data: dict[str, Any]) -> str:
    """A Socket.IO EVENT inside an Engine.IO MESSAGE: ``42/ns,<ack id>["name",{...}]``."""
    prefix = f"{namespace}," if namespace != "/" else ""
    ack = "" if ack_id is None else str(ack_id)
    return EIO_MESSAGE + SIO_EVENT + prefix + ack + orjson.dumps([name, data]).decode()


async def sio_connect(target: Target, namespace: str) -> ClientConnection:
    """A WebSocket-only Engine.IO session connected to ``namespace``."""
    ws = await open_websocket(f"{target.ws_url}/socket.io/?EIO=4&transport=websocket")
    try:
        await receive_until(ws, lambda text: text.startswith(EIO_OPEN))
        prefix = f"{namespace}," if namespace != "/" else ""
        await ws.send(EIO_MESSAGE + SIO_CONNECT + prefix)
        await receive_until(ws, lambda text: text.startswith(EIO_MESSAGE + SIO_CONNECT))
    except BaseException:
        await ws.close()
        raise
    return ws


async def sio_join(ws: ClientConnection, namespace: str, data: dict[str, Any]) -> None:
    """Emits ``join`` with an ack request and waits for the ack: then the room is joined."""
    await ws.send(sio_event(namespace, 0, "join", data))
    await receive_until(ws, lambda text: text.startswith(EIO_MESSAGE + SIO_ACK))


async def sio_read(ws: ClientConnection, census: Census, on_message: OnMessage) -> None:
    """Answers Engine.IO pings and hands every message:new event on."""
    async for text in ws:
        if not isinstance(text, str):
            continue
        if text == EIO_PING:
            await ws.send(EIO_PONG)
        elif text.startswith(EIO_MESSAGE + SIO_EVENT):
            payload = text[2:]
            if payload.startswith("/"):
                payload = payload.partition(",")[2]
            name, data = orjson.loads(payload)
            if name == "message:new":
                on_message(data["convoID"], data["sender"], data.get("clientMsgID"))
        elif not text.startswith(EIO_MESSAGE + SIO_ACK):
            census.errors += 1


class SocketioVisitor(Visitor):
    def __init__(self, census: Census, ws: ClientConnection) -> None:
        super().__init__(census)
        self._ws = ws
        self._acks = 0

    @classmethod
    async def open(
        cls, target: Target, convo_id: str, census: Census, on_message: OnMessage
    ) -> SocketioVisitor:
        ws = await sio_connect(target, "/")
        try:
            await sio_join(ws, "/", {"accountID": target.account_id, "convoID": convo_id})
        except BaseException:
            await ws.close()
            raise
        visitor = cls(census, ws)
        visitor.start(sio_read(ws, census, on_message))
        return visitor

    async def send(self, text: str, client_msg_id: str) -> None:
        # Acknowledged, like liveop's send: the ack is the server's word that it took it.
        self._acks += 1
        data = {"message": text, "clientMsgID": client_msg_id}
        await self._ws.send(sio_event("/", self._acks, "send", data))

    async def _close_transport(self) -> None:
        await self._ws.close()

    def _why_closed(self) -> str | None:
        return websocket_closed(self._ws)


class SocketioOperator(Operator):
    def __init__(self, census: Census, ws: ClientConnection) -> None:
        super().__init__(census)
        self._ws = ws

    @classmethod
    async def open(cls, target: Target, census: Census, on_message: OnMessage) -> SocketioOperator:
        ws = await sio_connect(target, SIO_OPERATORS)
        try:
            await sio_join(ws, SIO_OPERATORS, {"accountID": target.account_id})
        except BaseException:
            await ws.close()
            raise
        operator = cls(census, ws)
        operator.start(sio_read(ws, census, on_message))
        return operator

    async def reply(self, convo_id: str, text: str, client_msg_id: str) -> None:
        data = {"convoID": convo_id, "message": text, "clientMsgID": client_msg_id}
        await self._ws.send(sio_event(SIO_OPERATORS, None, "reply", data))

    async def _close_transport(self) -> None:
        await self._ws.close()

    def _why_closed(self) -> str | None:
        return websocket_closed(self._ws)


def ignore(convo_id: str, sender: str, client_msg_id: str | None) -> None:
    """Idle connections receive nothing we measure."""


class Chat:
    """Conversations being run: who sent what when, and what arrived inside the window."""

    def __init__(self, census: Census) -> None:
        self.census = census
        self.visitors: dict[str, Visitor] = {}
        self.operator: Operator | None = None
        self._sent_at: dict[str, float] = {}  # visitor messages on their way to the operator
        self._replied_at: dict[str, float] = {}  # operator replies on their way to the visitor
        self._to_operator: list[float] = []
        self._to_visitor: list[float] = []
        self._tasks: set[asyncio.Task[None]] = set()
        # perf_counter() bounds of the window; nothing counts until a run sets them.
        self._start = self._end = float("inf")
        self._closed_loop = False
        self._deliveries = 0
        self._sent = 0
        # Client message ids are idempotency keys, unique per account: every run of the same
        # account gets its own prefix, or liveop would take its messages for retries.
        self._id_prefix = f"run-{secrets.token_hex(4)}-"
        self._next_id = 0
        self._max_lag_s = 0.0
        # Set when, after the window, the last message sent inside it has arrived.
        self._drained = asyncio.Event()

    def _message_id(self) -> str:
        self._next_id += 1
        return f"{self._id_prefix}{self._next_id}"

    def _in_window(self, t: float) -> bool:
        return self._start <= t < self._end

    def _spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.create_task(self._guard(work))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _guard(self, work: Awaitable[None]) -> None:
        try:
            await work
        except (WebSocketException, httpx.HTTPError, OSError):
            # This conversation's loop ends here; the error is reported with the results.
            self.census.errors += 1

    def _delivered(self, sent: float, samples: list[float]) -> float:
        now = time.perf_counter()
        if self._in_window(now):
            self._deliveries += 1
        if self._in_window(sent):
            samples.append(now - sent)
        if now >= self._end and not self._pending():
            self._drained.set()
        return now

    def on_operator_message(self, convo_id: str, sender: str, client_msg_id: str | None) -> None:
        sent = self._sent_at.pop(client_msg_id or "", None)
        if sender != "visitor" or sent is None:
            return
        now = self._delivered(sent, self._to_operator)
        if self._closed_loop and now < self._end:
            self._spawn(self.reply(convo_id))

    def on_visitor_message(self, convo_id: str, sender: str, client_msg_id: str | None) -> None:
        sent = self._replied_at.pop(client_msg_id or "", None)
        if sender != "operator" or sent is None:
            return
        now = self._delivered(sent, self._to_visitor)
        if self._closed_loop and now < self._end:
            self._spawn(self.send(convo_id))

    async def send(self, convo_id: str) -> None:
        message_id = self._message_id()
        now = self._sent_at[message_id] = time.perf_counter()
        self._sent += self._in_window(now)
        await self.visitors[convo_id].send(f"visitor message {message_id}", message_id)

    async def reply(self, convo_id: str) -> None:
        assert self.operator is not None
        message_id = self._message_id()
        now = self._replied_at[message_id] = time.perf_counter()
        self._sent += self._in_window(now)
        await self.operator.reply(convo_id, f"operator reply {message_id}", message_id)

    async def pace(self, rate_per_s: float) -> None:
        """Visitors send in turn, one every 1/rate s, until the window ends. A sender that
        falls behind catches up at once rather than skipping, and reports how far behind."""
        interval = 1.0 / rate_per_s
        order = list(self.visitors)
        due = time.perf_counter()
        n = 0
        while due < self._end:
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if self._in_window(due):
                self._max_lag_s = max(self._max_lag_s, time.perf_counter() - due)
            await self.send(order[n % len(order)])
            n += 1
            due += interval

    def _pending(self) -> int:
        """Messages sent inside the window that have not arrived yet."""
        waiting = (*self._sent_at.values(), *self._replied_at.values())
        return sum(1 for t in waiting if self._in_window(t))

    async def run(self, command: RunChat) -> ChatResult:
        # The orchestrator speaks wall-clock time; intervals are measured with perf_counter.
        offset = time.time() - time.perf_counter()
        self._start, self._end = command.start_at - offset, command.end_at - offset
        self._closed_loop = command.rate_per_s is None
        await asyncio.sleep(max(0.0, self._start - command.warmup_s - time.perf_counter()))
        if command.rate_per_s is None:
            for convo_id in self.visitors:
                self._spawn(self.send(convo_id))
            await asyncio.sleep(max(0.0, self._end - time.perf_counter()))
        else:
            await self.pace(command.rate_per_s)
        if self._pending():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._drained.wait(), DRAIN_S)
        return ChatResult(
            deliveries=self._deliveries,
            to_operator_s=self._to_operator,
            to_visitor_s=self._to_visitor,
            sent=self._sent,
            undelivered=self._pending(),
            max_send_lag_s=self._max_lag_s,
            census=self.census,
        )

    async def close(self) -> None:
        for task in tuple(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Worker:
    """One client process's connections, and the commands that move them."""

    def __init__(self) -> None:
        self.census = Census()
        self.held: list[Held] = []
        self.chat: Chat | None = None
        self._streams: dict[str, httpx.AsyncClient] = {}
        self._commands: dict[str, CommandClient] = {}

    def http(self, target: Target) -> tuple[httpx.AsyncClient, CommandClient]:
        """Per server, a client for operator streams, without a connection cap (every held
        stream is a connection of its own), and one for operator replies."""
        streams = self._streams.get(target.stream_url)
        if streams is None:
            streams = self._streams[target.stream_url] = http_client(target.stream_url)
        commands = self._commands.get(target.command_url)
        if commands is None:
            commands = CommandClient(target.command_url, REPLY_CONNECTIONS)
            self._commands[target.command_url] = commands
        return streams, commands

    async def open_visitor(
        self, target: Target, convo_id: str, seq: int, on_message: OnMessage
    ) -> Visitor:
        if target.kind == "socketio":
            return await SocketioVisitor.open(target, convo_id, self.census, on_message)
        return await LiveopVisitor.open(target, convo_id, seq, self.census, on_message)

    async def open_operator(self, target: Target, on_message: OnMessage) -> Operator:
        if target.kind == "socketio":
            return await SocketioOperator.open(target, self.census, on_message)
        streams, commands = self.http(target)
        return await LiveopOperator.open(target, streams, commands, self.census, on_message)

    async def open_many(self, opens: Iterable[Callable[[], Awaitable[Held]]]) -> list[Held]:
        """Runs the opens CONNECT_CONCURRENCY at a time; a failed one is counted, not fatal."""
        lanes = asyncio.Semaphore(CONNECT_CONCURRENCY)
        opened: list[Held] = []

        async def one(open_one: Callable[[], Awaitable[Held]]) -> None:
            async with lanes:
                try:
                    opened.append(await open_one())
                except (WebSocketException, httpx.HTTPError, OSError, TimeoutError):
                    self.census.errors += 1

        started = time.perf_counter()
        async with asyncio.TaskGroup() as group:
            for open_one in opens:
                group.create_task(one(open_one))
        self.census.opened_s = time.perf_counter() - started
        self.held.extend(opened)
        # Thousands of held connections make a full collection take hundreds of milliseconds;
        # the load generator must not add pauses of its own to the latencies it measures.
        gc.collect()
        gc.freeze()
        return opened

    async def handle(self, command: Command) -> Census | ChatResult:
        match command:
            case OpenVisitors(target, conversations):
                opened = await self.open_many(
                    functools.partial(self.open_visitor, target, c, s, ignore)
                    for c, s in conversations
                )
                self.census.visitors += len(opened)
            case OpenOperators(target, count):
                if len(target.idle_tokens) < count and target.kind != "socketio":
                    raise RuntimeError(
                        f"{count} idle streams but {len(target.idle_tokens)} operators"
                    )
                opened = await self.open_many(
                    functools.partial(self.open_operator, idle_target(target, k), ignore)
                    for k in range(count)
                )
                self.census.operators += len(opened)
            case PrepareChat(target, active):
                return await self.prepare(target, active)
            case RunChat():
                if self.chat is None:
                    raise RuntimeError("RunChat before PrepareChat")
                return await self.chat.run(command)
            case CloseAll():
                await self.close_all()
            case TakeCensus():
                pass  # the census is the answer to every command
        return self.census

    async def prepare(self, target: Target, active: int) -> Census:
        chat = self.chat = Chat(self.census)
        operator = await self.open_operator(target, chat.on_operator_message)
        self.held.append(operator)
        chat.operator = operator
        conversations = await create_conversations(target, active)

        def visitor(convo_id: str, seq: int) -> Callable[[], Awaitable[Held]]:
            async def open_one() -> Held:
                chat.visitors[convo_id] = await self.open_visitor(
                    target, convo_id, seq, chat.on_visitor_message
                )
                return chat.visitors[convo_id]

            return open_one

        await self.open_many(visitor(c, s) for c, s in conversations)
        self.census.operators += 1
        self.census.visitors += len(chat.visitors)
        return self.census

    async def close_all(self) -> None:
        if self.chat is not None:
            await self.chat.close()
            self.chat = None
        await asyncio.gather(*(held.close() for held in self.held), return_exceptions=True)
        self.held.clear()
        gc.unfreeze()
        for streams in self._streams.values():
            await streams.aclose()
        for commands in self._commands.values():
            commands.close()
        self._streams.clear()
        self._commands.clear()
        self.census = Census()


async def serve(conn: Connection) -> None:
    worker = Worker()
    loop = asyncio.get_running_loop()
    try:
        while True:
            command: Command = await loop.run_in_executor(None, conn.recv)
            if isinstance(command, Stop):
                return
            result: Census | ChatResult | Failed
            try:
                result = await worker.handle(command)
            except Exception:
                result = Failed(traceback.format_exc())
            conn.send(result)
    finally:
        await worker.close_all()


def main(conn: Connection, cpu: int | None) -> None:
    """A client process: pinned to ``cpu`` (None: left to the scheduler), with room for
    thousands of sockets, on uvloop (the server runs on it too, so neither side pays for the
    slower loop)."""
    pin_self(cpu)
    raise_open_files_limit()
    uvloop.run(serve(conn))
