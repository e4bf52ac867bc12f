"""The chat window's WebSocket: ``/{accountID}/liveoperator/ws``. No API key; the convoID is
the capability, as on the chat-window URLs.

Client frames: ``hello`` (first, within 5 s: ``convoID`` and the last ``seq`` seen, both
optional), ``send`` (``message``, ``clientMsgID``, ``fname``, ``email``, ``phone``), ``typing``,
``read`` (``seq``: the window showed the messages up to it), ``ping``. Server frames:
``message:new``, ``typing``, ``status`` and ``read`` events, ``ack`` per send, ``error``,
``reset``, ``pong``. Every seq here is a visitor seq: gapless, whatever notes
lie between the messages.
"""

from __future__ import annotations

import contextlib
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from realtime.outbox import Item, Outbox
from realtime.presence import session_mark
from server import metrics
from server.api.chat_window import (
    path_account,
    spend_visitor_read,
    visitor_send_budget,
    visitor_typing_budget,
)
from server.api.commands import (
    client_msg_id,
    optional_convo_id,
    origin,
    visitor_context,
    window_details,
)
from server.api.sockets import (
    CLOSE_BAD_FRAME,
    CLOSE_NOT_FOUND,
    HELLO_TIMEOUT_S,
    Session,
    control,
    read_json,
)
from server.api.wire import Fields, error_json
from server.conversations import VISITOR_CHANNEL, Origin
from server.errors import Invalid, LiveOpError, NotFound
from server.events import conversation_channel, session_channel
from server.services import Services, client_ip, services

ROUTE = "/{account_id}/liveoperator/ws"


class VisitorSocket:
    __slots__ = ("account_id", "convo_id", "mark", "origin", "session", "svc", "websocket")

    def __init__(self, websocket: WebSocket, svc: Services, account_id: str) -> None:
        self.websocket = websocket
        self.svc = svc
        self.account_id = account_id
        self.convo_id: str | None = None
        # Where a conversation this socket starts comes from (its hello's site and session).
        self.origin = Origin(VISITOR_CHANNEL)
        # What keeps this visitor in the online list: the conversation, or the session.
        self.mark: str | None = None
        self.session = Session(websocket, svc.hub, metrics.VISITOR_WS)

    async def wait_in_session(self) -> None:
        """Before its first message a widget listens on its session, so an operator's
        proactive message can hand it a conversation."""
        session_id = self.origin.session_id
        if session_id is None:
            return
        await self.session.subscribe(
            session_channel(self.account_id, session_id), Outbox(0, _nothing), _zero, _zero
        )
        mark = session_mark(self.origin.site_id, session_id)
        # Bounded per address and account: invented session ids must not crowd real
        # visitors out of the operators' list. A socket over the bound still works.
        connected = self.svc.availability.connected
        if await connected.session_opened(self.account_id, mark, client_ip(self.websocket)):
            self.mark = mark

    async def _online(self, mark: str) -> None:
        if self.mark is not None:
            self.svc.availability.connected.closed(self.account_id, self.mark)
        self.mark = mark
        await self.svc.availability.connected.opened(self.account_id, mark)

    async def follow(self, convo_id: str, seq: int) -> None:
        if self.session.subscribed:
            await self.session.close()
        self.convo_id = convo_id
        outbox = Outbox(0, self.svc.feed.visitor_fetch(self.account_id, convo_id))

        async def cursor() -> int:
            return seq

        async def on_reset() -> int:
            conversation = await self.svc.engine.conversation(self.account_id, convo_id)
            latest = conversation.visitor_last_seq
            outbox.cursor = latest
            return latest

        await self.session.subscribe(conversation_channel(convo_id), outbox, cursor, on_reset)
        await self._online(convo_id)

    async def close(self) -> None:
        await self.session.close()
        if self.mark is not None:
            self.svc.availability.connected.closed(self.account_id, self.mark)

    async def handle(self, frame: dict[str, Any]) -> None:
        kind = frame.get("type")
        if kind == "send":
            await self.send(frame)
        elif kind == "typing":
            if self.convo_id is None:
                raise NotFound("conversation_not_found", "send a message first")
            await self.svc.engine.set_typing(
                self.account_id,
                self.convo_id,
                operator_id=None,
                admit=visitor_typing_budget(self.svc, self.account_id, self.convo_id),
            )
        elif kind == "read":
            if self.convo_id is None:
                raise NotFound("conversation_not_found", "send a message first")
            seq = Fields(frame).integer("seq", required=True, minimum=1)
            await spend_visitor_read(self.svc, self.account_id, self.convo_id)
            await self.svc.engine.window_read(self.account_id, self.convo_id, seq)
        elif kind == "ping":
            await self.websocket.send_text(control("pong"))
        else:
            raise LiveOpError("unknown_frame", f"unknown frame type {kind!r}")

    async def send(self, frame: dict[str, Any]) -> None:
        # The same typed reading as the HTTP surfaces: a field of the wrong type is an error
        # frame, never silently dropped (a lost clientMsgID would lose idempotency).
        fields = Fields(frame)
        committed = await self.svc.engine.send(
            self.account_id,
            convo_id=self.convo_id,
            text=fields.require("message"),
            user_info=window_details(fields),
            origin=self.origin,
            client_msg_id=client_msg_id(fields),
            admit=visitor_send_budget(
                self.svc, self.account_id, self.convo_id, client_ip(self.websocket)
            ),
            context=visitor_context(fields, self.websocket.headers.get("user-agent", "")),
        )
        sent = committed.messages[0]
        if self.convo_id is None:
            await self.follow(committed.conversation.id, 0)
        await self.websocket.send_text(
            control(
                "ack",
                clientMsgID=sent.client_msg_id,
                convoID=sent.convo_id,
                seq=sent.visitor_seq,
                duplicate=committed.duplicate,
            )
        )
        # After the ack, so the visitor's message shows as sent while the site's assistant
        # (if it has one) thinks; its reply arrives on this socket as a message:new.
        await self.svc.widgets.answer_window(committed)


async def _nothing(after: int, upto: int | None, limit: int) -> list[Item]:
    return []  # a session channel carries no log to catch up on


async def _zero() -> int:
    return 0


async def visitor_socket(websocket: WebSocket) -> None:
    svc = services(websocket)
    await websocket.accept()
    try:
        account_id = path_account(websocket)
    except Invalid as exc:
        await websocket.close(CLOSE_BAD_FRAME, exc.message)
        return
    sock = VisitorSocket(websocket, svc, account_id)
    try:
        hello = await read_json(websocket, HELLO_TIMEOUT_S)
        if hello is None:
            return
        if hello.get("type") != "hello":
            await websocket.close(CLOSE_BAD_FRAME, "the first frame must be hello")
            return
        try:
            greeting = Fields(hello)
            convo_id = optional_convo_id(greeting)
            seq = greeting.integer("seq", minimum=0) or 0
            sock.origin = origin(greeting, VISITOR_CHANNEL)
        except Invalid as exc:
            await websocket.close(CLOSE_BAD_FRAME, exc.message)
            return
        if convo_id is None:
            await websocket.send_text(control("ready", convoID=None, status=None, seq=0))
            await sock.wait_in_session()
        else:
            try:
                conversation = await svc.engine.conversation(account_id, convo_id)
            except NotFound:
                await websocket.close(CLOSE_NOT_FOUND, "no such conversation")
                return
            # Sent before the replay starts, with the state a reconnecting window cannot
            # have heard about (status changes are not replayed).
            await websocket.send_text(
                control(
                    "ready",
                    convoID=convo_id,
                    status=conversation.status,
                    seq=conversation.visitor_last_seq,
                )
            )
            if seq > conversation.visitor_last_seq:
                # A cursor from the future (another install, a tampered client): start over.
                await websocket.send_text(control("reset", seq=conversation.visitor_last_seq))
                seq = conversation.visitor_last_seq
            await sock.follow(convo_id, seq)
            del conversation  # an idle socket should not keep the row alive
        while True:
            frame = await read_json(websocket)
            if frame is None:
                return
            try:
                await sock.handle(frame)
            except LiveOpError as exc:
                await websocket.send_text(
                    control(
                        "error",
                        clientMsgID=frame.get("clientMsgID"),
                        error=error_json(exc),
                    )
                )
    except WebSocketDisconnect:
        pass
    finally:
        await sock.close()
        # The client may be gone already, which Starlette reports as a disconnect.
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close()


routes = [WebSocketRoute(ROUTE, visitor_socket)]
