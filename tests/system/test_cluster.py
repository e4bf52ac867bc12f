"""Two `liveop serve` processes sharing one database and one Redis behave as one server,
and every acknowledged message reaches the other side exactly once, in order, through
broker faults and dropped clients."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.redis_server import RedisServer
from tests.server.realtime_clients import free_port, sse, websocket
from tests.system.ledger import Ledger, operator_reader, visitor_reader
from tests.system.processes import Node, cli, command, login, wait_healthy

# How long the ledger waits for the last deliveries once the traffic has stopped.
SETTLE_S = 20.0
MESSAGES_PER_SIDE = 40


@dataclass
class Cluster:
    nodes: list[Node]
    account_id: str
    api_key: str
    operator_id: int
    email: str
    password: str = "cluster-pass-1"


@pytest.fixture
def cluster(tmp_path: Path, redis_server: RedisServer) -> Iterator[Cluster]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_")}
    env.update(LIVEOP_DATA_DIR=str(tmp_path / "data"), LIVEOP_BROKER_URL=redis_server.url)
    account = cli(env, "account", "create", "--name", "Cluster")
    email = "op@cluster.test"
    operator = cli(
        env, "operator", "create", "--account", account["accountID"], "--name", "Olga",
        "--email", email, "--password", "cluster-pass-1",
    )  # fmt: skip
    nodes: list[Node] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            node = Node(f"127.0.0.1:{port}", process)
            nodes.append(node)
            wait_healthy(node, log)
        yield Cluster(nodes, account["accountID"], account["apiKey"], operator["operatorID"], email)
    finally:
        for node in nodes:
            node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(10)
            except subprocess.TimeoutExpired:
                node.process.kill()


async def _token(cluster: Cluster, node: Node) -> str:
    return await login(node, cluster.email, cluster.password)


async def _command(cluster: Cluster, node: Node, name: str, **fields: Any) -> dict[str, Any]:
    return await command(node, cluster.account_id, cluster.api_key, name, **fields)


async def test_an_operator_on_one_process_and_a_visitor_on_another_hold_a_conversation(
    cluster: Cluster,
) -> None:
    a, b = cluster.nodes
    async with (
        sse(a.base, await _token(cluster, a)) as stream,
        websocket(f"ws://{b.base}/{cluster.account_id}/liveoperator/ws") as visitor,
    ):
        await visitor.send(type="hello")
        await visitor.until("ready")
        await visitor.send(type="send", message="Hello from B", clientMsgID="v1")
        convo = (await visitor.until("ack"))["convoID"]
        assert (await stream.until("conversation:new")).data["id"] == convo
        arrived = await stream.until("message:new")
        assert arrived.data["message"]["content"] == "Hello from B"
        await visitor.send(type="typing")
        typing = await stream.until("typing")
        assert typing.data["side"] == "visitor"
        polled = await _command(cluster, a, "poll", convoID=convo, operatorID=cluster.operator_id)
        assert polled["typing"] is True
        await _command(cluster, a, "settyping", convoID=convo, operatorID=cluster.operator_id)
        assert (await visitor.until("typing"))["data"]["side"] == "operator"
        await _command(
            cluster, a, "sendmessage", convoID=convo, operatorID=cluster.operator_id,
            message="Hello from A",
        )  # fmt: skip
        reply = await visitor.until("message:new")
        assert (reply["seq"], reply["data"]["message"]) == (2, "Hello from A")


async def test_every_acknowledged_message_arrives_once_in_order_through_faults(
    cluster: Cluster, redis_server: RedisServer
) -> None:
    a, b = cluster.nodes
    ledger = Ledger()
    first = await _command(cluster, b, "sendmessage", message="start", clientMsgID="v0",
                           sourceApp="liveoperator")  # fmt: skip
    convo = first["convoID"]
    ledger.visitor_acked["v0"] = first["message"]["seq"]
    done = asyncio.Event()
    operator_drops: asyncio.Queue[None] = asyncio.Queue()
    visitor_drops: asyncio.Queue[None] = asyncio.Queue()
    readers = [
        asyncio.create_task(
            operator_reader(a.base, await _token(cluster, a), ledger, operator_drops, done)
        ),
        asyncio.create_task(
            visitor_reader(
                f"ws://{b.base}/{cluster.account_id}/liveoperator/ws",
                convo, ledger, visitor_drops, done,
            )
        ),
    ]  # fmt: skip
    admin = redis_server.client()
    faults = {
        10: lambda: admin.client_kill_filter(_type="pubsub"),
        20: lambda: asyncio.to_thread(redis_server.restart),
        30: lambda: _put(operator_drops),
        35: lambda: _put(visitor_drops),
    }
    try:
        for i in range(1, MESSAGES_PER_SIDE):
            if i in faults:
                with contextlib.suppress(Exception):
                    await faults[i]()
            await _say(cluster, convo, ledger, i)
        # The last words are said while Redis is down and nothing follows them, so no later
        # ring can reveal the hole: only the catch-up after the broker reconnects delivers.
        await asyncio.to_thread(redis_server.stop)
        await _say(cluster, convo, ledger, MESSAGES_PER_SIDE)
        await asyncio.to_thread(redis_server.start)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and ledger.missing():  # noqa: ASYNC110 - polls a ledger
            await asyncio.sleep(0.1)
    finally:
        done.set()
        await asyncio.gather(*readers, return_exceptions=True)
    report = ledger.report()
    assert report == {
        "acknowledged": 2 * MESSAGES_PER_SIDE + 1,
        "lost_to_operator": 0,
        "lost_to_visitor": 0,
        "duplicates": 0,
        "out_of_order": 0,
    }, report


async def _say(cluster: Cluster, convo: str, ledger: Ledger, i: int) -> None:
    """The visitor writes through process B, an operator answers through process A."""
    a, b = cluster.nodes
    sent = await _command(
        cluster, b, "sendmessage", convoID=convo, message=f"visitor {i}", clientMsgID=f"v{i}"
    )
    ledger.visitor_acked[f"v{i}"] = sent["message"]["seq"]
    reply = await _command(
        cluster, a, "sendmessage", convoID=convo, operatorID=cluster.operator_id,
        message=f"operator {i}",
    )  # fmt: skip
    ledger.operator_acked[reply["message"]["id"]] = reply["message"]["seq"]


async def _put(queue: asyncio.Queue[None]) -> None:
    queue.put_nowait(None)
