"""The delivery ledger: what was acknowledged against what each side received, and the
readers that keep an operator's stream and a visitor's socket connected through drops."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

import httpx

from tests.server.realtime_clients import sse, websocket


@dataclass
class Ledger:
    """What was acknowledged against what each side received."""

    visitor_acked: dict[str, int] = field(default_factory=dict)  # clientMsgID -> seq
    operator_acked: dict[str, int] = field(default_factory=dict)  # message id -> seq
    # What the operator's stream delivered: (account seq, message seq, message id)
    operator_got: list[tuple[int, int, str]] = field(default_factory=list)
    # What the visitor's socket delivered: (message seq, message id)
    visitor_got: list[tuple[int, str]] = field(default_factory=list)

    def missing(self) -> bool:
        report = self.report()
        return bool(report["lost_to_operator"] or report["lost_to_visitor"])

    def report(self) -> dict[str, int]:
        account_seqs = [s for s, _, _ in self.operator_got]
        conversation_seqs = [s for s, _ in self.visitor_got]
        operator_ids = [m for _, _, m in self.operator_got]
        visitor_ids = [m for _, m in self.visitor_got]
        expected = set(self.visitor_acked.values()) | set(self.operator_acked.values())
        got_by_operator = {s for _, s, _ in self.operator_got}
        got_by_visitor = set(conversation_seqs)
        return {
            "acknowledged": len(expected),
            "lost_to_operator": len(expected - got_by_operator),
            "lost_to_visitor": len(expected - got_by_visitor),
            "duplicates": (len(operator_ids) - len(set(operator_ids)))
            + (len(visitor_ids) - len(set(visitor_ids))),
            "out_of_order": sum(x >= y for x, y in itertools.pairwise(account_seqs))
            + sum(x >= y for x, y in itertools.pairwise(conversation_seqs)),
        }


async def operator_reader(
    base: str, token: str, ledger: Ledger, drops: asyncio.Queue[None], done: asyncio.Event
) -> None:
    """An EventSource that reconnects with Last-Event-ID whenever it is dropped; it starts
    from the beginning of the account's log so the first message counts too."""
    last: str | None = "0"
    while not done.is_set():
        with contextlib.suppress(httpx.HTTPError, EOFError, TimeoutError):
            async with sse(base, token, last_event_id=last) as stream:
                assert stream.first is not None and stream.first.event == "ready"
                last = stream.first.id
                while not done.is_set():
                    if not drops.empty():
                        drops.get_nowait()
                        break  # drop the connection abruptly, mid-stream
                    with contextlib.suppress(TimeoutError):
                        event = await stream.next(timeout_s=0.2)
                        last = stream.last_id
                        if event.event == "message:new":
                            message = event.data["message"]
                            seq = int(event.id or 0)
                            ledger.operator_got.append((seq, message["seq"], message["id"]))
        await asyncio.sleep(0.05)


async def visitor_reader(
    url: str, convo: str, ledger: Ledger, drops: asyncio.Queue[None], done: asyncio.Event
) -> None:
    """The chat window's socket, resuming from the last seq after every drop."""
    last = 0
    while not done.is_set():
        with contextlib.suppress(OSError, TimeoutError, Exception):
            async with websocket(url) as ws:
                await ws.send(type="hello", convoID=convo, seq=last)
                await ws.until("ready")
                while not done.is_set():
                    if not drops.empty():
                        drops.get_nowait()
                        break
                    with contextlib.suppress(TimeoutError):
                        frame = await ws.recv(timeout_s=0.2)
                        if frame["type"] == "message:new":
                            last = frame["seq"]
                            ledger.visitor_got.append((frame["seq"], frame["data"]["id"]))
        await asyncio.sleep(0.05)
