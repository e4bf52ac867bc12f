"""Three `liveop serve` processes on one PostgreSQL database and one Redis behave as one
server, and an operator whose process is killed resumes on another exactly where it was."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.redis_server import RedisServer
from tests.server.realtime_clients import SSEClient, free_port, sse, websocket
from tests.storage import conftest as storage_fixtures
from tests.system.processes import Node, cli, command, login, wait_healthy

# A fresh PostgreSQL database per test, dropped afterwards (skips without a server).
postgres_url = storage_fixtures.postgres_url

# One key for every process, as a deployment shares it: a JWT from one verifies on all.
SECRET_KEY = "scale-out-test-secret-key-0123456789abcdef"
PASSWORD = "scale-pass-1"
EMAIL = "op@scale.test"
# Generous for one event crossing Redis between processes; only a failure waits this long.
EVENT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MISSED = 3


@dataclass
class Installation:
    a: Node
    b: Node
    c: Node
    account_id: str
    api_key: str
    operator_id: int


@pytest.fixture
def installation(
    tmp_path: Path, postgres_url: str, redis_server: RedisServer
) -> Iterator[Installation]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
    env.update(
        LIVEOP_DATA_DIR=str(tmp_path / "data"),
        LIVEOP_DATABASE_URL=postgres_url,
        LIVEOP_BROKER_URL=redis_server.url,
        LIVEOP_SECRET_KEY=SECRET_KEY,
    )
    # As a rollout does it: the schema first, then the processes.
    assert cli(env, "migrate") == {"database": "postgresql", "migrated": True}
    account = cli(env, "account", "create", "--name", "Scale")
    operator = cli(
        env, "operator", "create", "--account", account["accountID"], "--name", "Olga",
        "--email", EMAIL, "--password", PASSWORD,
    )  # fmt: skip
    nodes: list[Node] = []
    try:
        for name in ("a", "b", "c"):
            port = free_port()
            log = tmp_path / f"{name}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [sys.executable, "-m", "server", "serve", "--port", str(port)],
                    env=env, stdout=out, stderr=subprocess.STDOUT,
                )  # fmt: skip
            nodes.append(Node(f"127.0.0.1:{port}", process))
            wait_healthy(nodes[-1], log)
        a, b, c = nodes
        yield Installation(a, b, c, account["accountID"], account["apiKey"], operator["operatorID"])
    finally:
        for node in nodes:
            node.process.terminate()
        for node in nodes:
            try:
                node.process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
                node.process.wait()


async def _login(node: Node) -> str:
    return await login(node, EMAIL, PASSWORD)


async def _command(site: Installation, node: Node, name: str, **fields: Any) -> dict[str, Any]:
    return await command(node, site.account_id, site.api_key, name, **fields)


async def _logged(stream: SSEClient) -> tuple[int, str, dict[str, Any]]:
    """The next event of the account log (typing and presence carry no id: state, not log)."""
    while True:
        event = await stream.next(EVENT_TIMEOUT_S)
        if event.id is not None:
            return int(event.id), event.event, event.data


async def _read_until_broken(stream: SSEClient) -> None:
    """Reads until the connection fails; a stream still open after EVENT_TIMEOUT_S of
    silence fails the test with TimeoutError instead."""
    while True:
        await stream.next(EVENT_TIMEOUT_S)


async def test_three_processes_hold_one_conversation_and_a_killed_stream_resumes_elsewhere(
    installation: Installation,
) -> None:
    site = installation
    a, b, c = site.a, site.b, site.c
    # Issued by C, accepted by A and later by B: one secret key across the installation.
    token = await _login(c)
    async with (
        sse(a.base, token) as stream,
        websocket(f"ws://{b.base}/{site.account_id}/liveoperator/ws") as visitor,
    ):
        await visitor.send(type="hello")
        await visitor.until("ready")
        await visitor.send(type="send", message="Hello from B", clientMsgID="v1")
        convo = (await visitor.until("ack"))["convoID"]
        assert (await stream.until("conversation:new", EVENT_TIMEOUT_S)).data["id"] == convo
        arrived = await stream.until("message:new", EVENT_TIMEOUT_S)
        assert arrived.data["message"]["content"] == "Hello from B"

        # Typing both ways: B to A through Redis, and C to B.
        await visitor.send(type="typing")
        assert (await stream.until("typing", EVENT_TIMEOUT_S)).data["side"] == "visitor"
        polled = await _command(site, c, "poll", convoID=convo, operatorID=site.operator_id)
        assert polled["typing"] is True
        await _command(site, c, "settyping", convoID=convo, operatorID=site.operator_id)
        assert (await visitor.until("typing", EVENT_TIMEOUT_S))["data"]["side"] == "operator"

        reply = await _command(
            site, c, "sendmessage", convoID=convo, operatorID=site.operator_id,
            message="Hello from C",
        )  # fmt: skip
        got = await visitor.until("message:new", EVENT_TIMEOUT_S)
        assert (got["seq"], got["data"]["message"]) == (2, "Hello from C")
        seen = await stream.until("message:new", EVENT_TIMEOUT_S)
        assert seen.data["message"]["id"] == reply["message"]["id"]

        # The operator's process dies without a goodbye, its stream still open. What it had
        # already written (the reply's conversation:updated, say) still arrives; then the
        # connection breaks, and the client's cursor is the last id it received, as an
        # EventSource's would be.
        a.process.kill()
        a.process.wait(STOP_TIMEOUT_S)
        with pytest.raises((httpx.HTTPError, EOFError)):
            await _read_until_broken(stream)
        cursor = stream.last_id
        assert cursor is not None

        missed = [
            await _command(
                site, c, "sendmessage", convoID=convo, operatorID=site.operator_id,
                message=f"missed {i}",
            )
            for i in range(1, MISSED + 1)
        ]  # fmt: skip
        for sent in missed:  # the visitor, on a live process, saw them as they came
            frame = await visitor.until("message:new", EVENT_TIMEOUT_S)
            assert frame["data"]["id"] == sent["message"]["id"]

    # The EventSource reconnects through the load balancer, which picks B.
    async with sse(b.base, token, last_event_id=cursor) as resumed:
        assert resumed.first is not None
        assert (resumed.first.event, resumed.first.id) == ("ready", cursor)
        replayed: list[tuple[int, str, dict[str, Any]]] = []
        last_missed = missed[-1]["message"]["id"]
        while not replayed or replayed[-1][2].get("message", {}).get("id") != last_missed:
            replayed.append(await _logged(resumed))
        # The account log has no gaps, so consecutive ids from the cursor on mean every
        # event once, in order; the missed messages are among them in the order sent.
        assert [seq for seq, _, _ in replayed] == list(
            range(int(cursor) + 1, int(cursor) + 1 + len(replayed))
        )
        assert [data["message"]["id"] for _, kind, data in replayed if kind == "message:new"] == [
            sent["message"]["id"] for sent in missed
        ]
        # And nothing after them twice: the next event is the next message, live.
        after = await _command(
            site, c, "sendmessage", convoID=convo, operatorID=site.operator_id, message="back"
        )
        seq, kind, data = await _logged(resumed)
        assert (seq, kind, data["message"]["id"]) == (
            replayed[-1][0] + 1, "message:new", after["message"]["id"]
        )  # fmt: skip
