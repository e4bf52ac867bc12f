"""What a Python team would otherwise build: a python-socketio relay, for comparison.

    pip install python-socketio
    python -m bench.socketio_relay --port 8001 [--deflate] [--gc-stats PATH]

The same traffic shape as Live Operator Chat's visitor WebSocket and operator stream, with none
of its guarantees. Visitors connect to the default namespace and ``join`` their conversation's
room; operators connect to ``/operator`` and ``join`` their account's room. A visitor's ``send``
is acknowledged and relayed to its conversation's room (the visitor sees its own message, as on
liveop's socket) and to the account's operators; an operator's ``reply`` is relayed to the
conversation's room and to the account's operators.

Nothing is stored: no message log, no seq, no catch-up after a reconnect, no idempotent retries,
no unread counts, no auth. Everything it skips is work liveop does per message, so the relay's
numbers are a floor for the cost of moving the bytes, not a like-for-like product. It is served
by the same launcher settings as liveop (bench/launcher.py) and keeps python-socketio's defaults
(stdlib ``json``, a task per event), as a team starting from its documentation would.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import socketio  # type: ignore[import-untyped]
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.launcher import parser, report_gc_on_sigusr1, serve

OPERATORS = "/operator"


async def healthz(request: Request) -> JSONResponse:
    return JSONResponse({"success": True})


def conversation_room(convo_id: str) -> str:
    return f"conv:{convo_id}"


def account_room(account_id: str) -> str:
    return f"acct:{account_id}"


def create_relay() -> Any:
    """The ASGI app: socket.io under /socket.io, /healthz beside it for readiness checks."""
    sio = socketio.AsyncServer(async_mode="asgi")
    # sid -> (account, conversation) of each visitor, and sid -> account of each operator.
    visitors: dict[str, tuple[str, str]] = {}
    operators: dict[str, str] = {}

    async def relay(account_id: str, convo_id: str, message: dict[str, Any]) -> None:
        await sio.emit("message:new", message, room=conversation_room(convo_id))
        await sio.emit("message:new", message, room=account_room(account_id), namespace=OPERATORS)

    def message(convo_id: str, sender: str, data: dict[str, Any]) -> dict[str, Any]:
        return {
            "convoID": convo_id,
            "sender": sender,
            "message": data.get("message"),
            "created": time.time(),
            "clientMsgID": data.get("clientMsgID"),
        }

    async def visitor_join(sid: str, data: dict[str, Any]) -> dict[str, bool]:
        account_id, convo_id = str(data["accountID"]), str(data["convoID"])
        visitors[sid] = (account_id, convo_id)
        await sio.enter_room(sid, conversation_room(convo_id))
        return {"ok": True}

    async def visitor_send(sid: str, data: dict[str, Any]) -> dict[str, Any]:
        account_id, convo_id = visitors[sid]
        await relay(account_id, convo_id, message(convo_id, "visitor", data))
        return {"clientMsgID": data.get("clientMsgID")}

    async def visitor_disconnect(sid: str, reason: str) -> None:
        visitors.pop(sid, None)

    async def operator_join(sid: str, data: dict[str, Any]) -> dict[str, bool]:
        account_id = str(data["accountID"])
        operators[sid] = account_id
        await sio.enter_room(sid, account_room(account_id), namespace=OPERATORS)
        return {"ok": True}

    async def operator_reply(sid: str, data: dict[str, Any]) -> None:
        convo_id = str(data["convoID"])
        await relay(operators[sid], convo_id, message(convo_id, "operator", data))

    async def operator_disconnect(sid: str, reason: str) -> None:
        operators.pop(sid, None)

    # Registered by call, not as decorators: the library is untyped, and mypy --strict would
    # otherwise lose every handler's signature.
    sio.on("join", visitor_join)
    sio.on("send", visitor_send)
    sio.on("disconnect", visitor_disconnect)
    sio.on("join", operator_join, namespace=OPERATORS)
    sio.on("reply", operator_reply, namespace=OPERATORS)
    sio.on("disconnect", operator_disconnect, namespace=OPERATORS)
    return socketio.ASGIApp(sio, other_asgi_app=Starlette(routes=[Route("/healthz", healthz)]))


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("python -m bench.socketio_relay", __doc__).parse_args(argv)
    if args.gc_stats is not None:
        report_gc_on_sigusr1(args.gc_stats)
    serve(create_relay(), args.port, deflate=args.deflate, log_config=None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
