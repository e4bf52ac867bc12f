"""Broker fixtures: every backend, and a private redis-server the fault tests may break.

The private server runs on its own loopback port and directory, so killing or restarting
it never touches a Redis the machine shares (6379).
"""

from __future__ import annotations

import asyncio
import inspect
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from realtime.broker import Broker, create_broker
from tests.conftest import require_service

# A fresh redis-server answers within milliseconds; this only bounds a broken start.
SERVER_START_TIMEOUT_S = 5.0
# How long a test waits for something that should happen "soon" (a reconnect, a delivery)
# before calling it a failure; generous so a loaded CI machine does not flake.
EVENTUALLY_S = 10.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within_s: float = EVENTUALLY_S
) -> None:
    """Polls ``condition`` (plain or async) until it holds; fails naming ``what`` after
    ``within_s``. Tests wait with this, never with fixed sleeps."""

    async def holds() -> bool:
        result = condition()
        return await result if inspect.isawaitable(result) else result

    try:
        async with asyncio.timeout(within_s):
            # Conditions are plain state the callbacks leave behind: there is no event to await.
            while not await holds():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {within_s} s waiting for {what}")


@dataclass
class Inbox:
    """What one broker handed to its subscriber."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    resets: int = 0

    def on_message(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))

    def on_reset(self) -> None:
        self.resets += 1

    def payloads(self, channel: str) -> list[bytes]:
        return [payload for name, payload in self.messages if name == channel]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class RedisServer:
    """A private redis-server: ``stop``/``start`` keep the port, so clients find it again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self._binary = binary
        self._directory = directory
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._process: subprocess.Popen[bytes] | None = None
        self._clients: list[Redis] = []

    def start(self) -> None:
        log_file = self._directory / "redis.log"
        options = {
            "--port": str(self.port),
            "--bind": "127.0.0.1",
            "--save": "",
            "--appendonly": "no",
            "--dir": str(self._directory),
            "--logfile": str(log_file),
        }
        command = [self._binary, *(word for pair in options.items() for word in pair)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while not self._answers_ping():
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log = log_file.read_text(errors="replace") if log_file.exists() else ""
                raise RuntimeError(f"redis-server did not start on {self.port}:\n{log[-2000:]}")
            time.sleep(0.01)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        # A frozen server cannot act on SIGTERM.
        process.send_signal(signal.SIGCONT)
        process.terminate()
        try:
            process.wait(timeout=SERVER_START_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def restart(self) -> None:
        self.stop()
        self.start()

    def freeze(self) -> None:
        """SIGSTOP: the kernel keeps every connection open, but Redis answers nothing."""
        assert self._process is not None
        self._process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        assert self._process is not None
        self._process.send_signal(signal.SIGCONT)

    def client(self) -> Redis:
        """An admin client, closed at teardown. It retries once on a fresh connection, so
        it survives a restart."""
        admin = Redis.from_url(self.url, retry=Retry(NoBackoff(), 1))
        self._clients.append(admin)
        return admin

    async def aclose_clients(self) -> None:
        for admin in self._clients:
            await admin.aclose()

    def _answers_ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


@pytest.fixture
async def redis_server(tmp_path: Path) -> AsyncIterator[RedisServer]:
    binary = shutil.which("redis-server")
    if binary is None:
        require_service("redis-server is not installed (apt-get install redis-server)")
    assert binary is not None, "require_service skips or fails"
    server = RedisServer(binary, tmp_path)
    server.start()
    try:
        yield server
    finally:
        await server.aclose_clients()
        server.stop()


@dataclass
class StartedBroker:
    broker: Broker
    inbox: Inbox


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[StartedBroker]:
    """A started broker of each backend (made by create_broker), recording into an Inbox."""
    inbox = Inbox()
    made = create_broker(broker_url)
    await made.start(inbox.on_message, inbox.on_reset)
    yield StartedBroker(made, inbox)
    await made.close()
