"""A rolling restart of two `liveop serve` processes behind a proxy, while a visitor and an
operator exchange messages through it, loses nothing and duplicates nothing: on SQLite (two
processes on one file) and on PostgreSQL, with Redis between the processes.

The proxy is a load balancer's minimum: it sends each new connection to a process in rotation
and takes a process out of rotation when its ``/readyz`` stops answering 200. Each restart is
what a deploy does: SIGTERM, wait for the exit, start the new version, wait until it is ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.exceptions import ConnectionClosed

from tests.redis_server import RedisServer
from tests.server.realtime_clients import free_port, sse, websocket
from tests.storage import conftest as storage_fixtures
from tests.system.ledger import Ledger, operator_reader, visitor_reader
from tests.system.processes import Node, cli, wait_healthy

# A fresh PostgreSQL database per test, dropped afterwards.
postgres_url = storage_fixtures.postgres_url

METRICS_TOKEN = "rolling-restart-metrics-token"
PASSWORD = "rolling-pass-1"
EMAIL = "op@rolling.test"
# Long enough for the proxy's health check (every PROBE_S) to take a process out of rotation
# before it stops accepting connections.
DRAIN_S = "1"
PROBE_S = 0.1
# Messages each side says before, during and after the restarts.
BEFORE = 5
AFTER = 5
# A send that fails (a connection cut by the restart) is retried with the same clientMsgID.
RETRY_S = 0.1
SEND_ATTEMPTS = 100
# How long the ledger waits for the last deliveries once the traffic has stopped.
SETTLE_S = 20.0
EXIT_TIMEOUT_S = 30.0


class Proxy:
    """Round-robin TCP proxy over the processes in rotation; a connection the chosen process
    refuses goes to the next one, as a load balancer retries a failed connect."""

    def __init__(self) -> None:
        self.rotation: list[str] = []
        self._turn = itertools.count()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self.base = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.base = f"127.0.0.1:{self._server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in self._pipes:
            task.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._pipes.add(task)
        try:
            upstream = await self._connect()
            if upstream is None:
                return
            up_reader, up_writer = upstream
            try:
                await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
            finally:
                up_writer.close()
        finally:
            writer.close()
            self._pipes.discard(task)

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        candidates = list(self.rotation)
        start = next(self._turn)
        for offset in range(len(candidates)):
            host, port = candidates[(start + offset) % len(candidates)].split(":")
            with contextlib.suppress(OSError):
                return await asyncio.open_connection(host, int(port))
        return None


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    # Either side ending ends the connection, as a proxy does when a process goes away.
    writer.close()


@dataclass
class Deployment:
    env: dict[str, str]
    tmp_path: Path
    proxy: Proxy
    nodes: list[Node]
    account_id: str
    api_key: str
    operator_id: int
    generation: itertools.count[int]

    async def start_node(self) -> Node:
        node = await asyncio.to_thread(self._spawn)
        self.nodes.append(node)
        return node

    def _spawn(self) -> Node:
        port = free_port()
        log = self.tmp_path / f"node-{next(self.generation)}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve", "--port", str(port)],
                env=self.env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        node = Node(f"127.0.0.1:{port}", process)
        try:
            wait_healthy(node, log)
        except RuntimeError:
            process.kill()
            raise
        return node

    async def restart(self, old: Node) -> Node:
        """SIGTERM, let it drain and exit, then the new process; the health check does the
        rotation."""
        old.process.send_signal(signal.SIGTERM)
        returncode = await asyncio.to_thread(old.process.wait, EXIT_TIMEOUT_S)
        # uvicorn re-raises the signal once it has shut down cleanly.
        assert returncode == -signal.SIGTERM
        return await self.start_node()


async def _health_checks(deployment: Deployment, done: asyncio.Event) -> None:
    """The load balancer's side: a process is in rotation while its /readyz answers 200."""
    async with httpx.AsyncClient(timeout=1) as client:
        while not done.is_set():
            ready = []
            for node in list(deployment.nodes):
                with contextlib.suppress(httpx.HTTPError):
                    response = await client.get(f"http://{node.base}/readyz")
                    if response.status_code == 200:
                        ready.append(node.base)
            deployment.proxy.rotation = ready
            await asyncio.sleep(PROBE_S)


@pytest.fixture
async def redis_env(tmp_path: Path, redis_server: RedisServer) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    env.update(
        LIVEOP_DATA_DIR=str(tmp_path / "data"),
        LIVEOP_BROKER_URL=redis_server.url,
        LIVEOP_SHUTDOWN_DRAIN_S=DRAIN_S,
        LIVEOP_METRICS_TOKEN=METRICS_TOKEN,
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    return env


@contextlib.asynccontextmanager
async def _deployment(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Deployment]:
    cli(env, "migrate")
    account = cli(env, "account", "create", "--name", "Rolling")
    operator = cli(
        env, "operator", "create", "--account", account["accountID"], "--name", "Olga",
        "--email", EMAIL, "--password", PASSWORD,
    )  # fmt: skip
    proxy = Proxy()
    await proxy.start()
    deployment = Deployment(
        env, tmp_path, proxy, [], account["accountID"], account["apiKey"],
        operator["operatorID"], itertools.count(),
    )  # fmt: skip
    try:
        for _ in range(2):
            await deployment.start_node()
        yield deployment
    finally:
        for node in deployment.nodes:
            if node.process.poll() is None:
                node.process.terminate()
        for node in deployment.nodes:
            try:
                await asyncio.to_thread(node.process.wait, EXIT_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                node.process.kill()
        await proxy.close()


async def _send(deployment: Deployment, **fields: Any) -> dict[str, Any]:
    """One message through the proxy, retried with the same clientMsgID until acknowledged."""
    form = {
        "accountID": deployment.account_id, "key": deployment.api_key, "app": "liveoperator",
        "command": "sendmessage", "json": orjson.dumps(fields).decode(),
    }  # fmt: skip
    async with httpx.AsyncClient(base_url=f"http://{deployment.proxy.base}", timeout=10) as client:
        for _ in range(SEND_ATTEMPTS):
            with contextlib.suppress(httpx.HTTPError, orjson.JSONDecodeError):
                response = await client.post("/", data=form)
                if response.status_code == 200:
                    body: dict[str, Any] = response.json()
                    assert body["success"] is True, body
                    return body
                # Only a process going away may refuse; anything else is a real failure.
                assert response.status_code >= 500, response.text
            await asyncio.sleep(RETRY_S)
    raise AssertionError(f"never acknowledged: {fields}")


async def _say(deployment: Deployment, convo: str, ledger: Ledger, i: int) -> None:
    sent = await _send(deployment, convoID=convo, message=f"visitor {i}", clientMsgID=f"v{i}")
    ledger.visitor_acked[f"v{i}"] = sent["message"]["seq"]
    reply = await _send(
        deployment, convoID=convo, operatorID=deployment.operator_id, message=f"operator {i}",
        clientMsgID=f"o{i}",
    )  # fmt: skip
    ledger.operator_acked[reply["message"]["id"]] = reply["message"]["seq"]


def _closed_by_shutdown(deployment: Deployment, kind: str) -> float:
    node = deployment.nodes[-1]
    response = httpx.get(
        f"http://{node.base}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    )
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "liveop_connections_closed_total" and sample.labels == {
                "kind": kind,
                "reason": "shutdown",
            }:
                return sample.value
    return 0.0


async def _rolling_restart_loses_nothing(deployment: Deployment) -> None:
    done = asyncio.Event()
    checks = asyncio.create_task(_health_checks(deployment, done))
    while len(deployment.proxy.rotation) < 2:  # noqa: ASYNC110 - waits on the health checks
        await asyncio.sleep(PROBE_S)
    ledger = Ledger()
    first = await _send(deployment, message="start", clientMsgID="v0", sourceApp="liveoperator")
    convo = first["convoID"]
    ledger.visitor_acked["v0"] = first["message"]["seq"]
    async with httpx.AsyncClient(base_url=f"http://{deployment.proxy.base}") as client:
        response = await client.post(
            "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
        )
    token = response.json()["token"]
    stop_reading = asyncio.Event()
    never: asyncio.Queue[None] = asyncio.Queue()  # the restarts are the only drops
    readers = [
        asyncio.create_task(
            operator_reader(deployment.proxy.base, token, ledger, never, stop_reading)
        ),
        asyncio.create_task(
            visitor_reader(
                f"ws://{deployment.proxy.base}/{deployment.account_id}/liveoperator/ws",
                convo, ledger, asyncio.Queue(), stop_reading,
            )
        ),
    ]  # fmt: skip
    restarting = True

    async def restarts() -> None:
        nonlocal restarting
        for old in list(deployment.nodes):
            await deployment.restart(old)
        restarting = False

    try:
        for i in range(1, BEFORE + 1):
            await _say(deployment, convo, ledger, i)
        rollout = asyncio.create_task(restarts())
        i = BEFORE
        while restarting:
            i += 1
            await _say(deployment, convo, ledger, i)
        await rollout
        for j in range(i + 1, i + AFTER + 1):
            await _say(deployment, convo, ledger, j)
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and ledger.missing():  # noqa: ASYNC110 - polls a ledger
            await asyncio.sleep(0.1)
    finally:
        stop_reading.set()
        await asyncio.gather(*readers, return_exceptions=True)
        done.set()
        await checks
    report = ledger.report()
    acknowledged = len(ledger.visitor_acked) + len(ledger.operator_acked)
    assert report == {
        "acknowledged": acknowledged,
        "lost_to_operator": 0,
        "lost_to_visitor": 0,
        "duplicates": 0,
        "out_of_order": 0,
    }, report
    assert acknowledged > 2 * (BEFORE + AFTER)  # messages flowed during the restarts too
    # The restarts closed the visitor's socket (1012) and ended the operator's stream.
    assert _closed_by_shutdown(deployment, "visitor_ws") >= 1
    assert _closed_by_shutdown(deployment, "operator_sse") >= 1


async def test_a_rolling_restart_on_sqlite_loses_and_duplicates_nothing(
    tmp_path: Path, redis_env: dict[str, str]
) -> None:
    async with _deployment(tmp_path, redis_env) as deployment:
        await _rolling_restart_loses_nothing(deployment)


async def test_a_rolling_restart_on_postgres_loses_and_duplicates_nothing(
    tmp_path: Path, redis_env: dict[str, str], postgres_url: str
) -> None:
    env = {**redis_env, "LIVEOP_DATABASE_URL": postgres_url}
    async with _deployment(tmp_path, env) as deployment:
        await _rolling_restart_loses_nothing(deployment)


async def test_sigterm_closes_sockets_with_1012_and_ends_streams(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
    env["LIVEOP_DATA_DIR"] = str(tmp_path / "data")
    async with _deployment(tmp_path, env) as deployment:
        node = deployment.nodes[0]
        async with httpx.AsyncClient(base_url=f"http://{node.base}") as client:
            response = await client.post(
                "/api/v1/auth/login", json={"email": EMAIL, "password": PASSWORD}
            )
        token = response.json()["token"]
        base = f"ws://{node.base}"
        async with (
            sse(node.base, token) as stream,
            websocket(f"{base}/{deployment.account_id}/liveoperator/ws") as visitor,
            websocket(f"{base}/api/ws/tenant") as tenant,
        ):
            await visitor.send(type="hello")
            await visitor.until("ready")
            await tenant.send(type="auth", token=token)
            await tenant.until("auth_ok")
            node.process.send_signal(signal.SIGTERM)
            for socket in (visitor, tenant):
                with pytest.raises(ConnectionClosed) as closed:
                    await socket.recv(timeout_s=EXIT_TIMEOUT_S)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 1012
            with pytest.raises(EOFError):
                await stream.until("never-sent", timeout_s=EXIT_TIMEOUT_S)  # the stream ends
        assert await asyncio.to_thread(node.process.wait, EXIT_TIMEOUT_S) == -signal.SIGTERM
