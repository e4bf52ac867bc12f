"""A private redis-server for tests that break it (kill, restart, freeze).

It runs on its own loopback port and directory, so it never touches a Redis the machine
shares (6379).
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tests.conftest import require_service

# A fresh redis-server answers within milliseconds; this only bounds a broken start.
# Generous for a loaded shared CI machine; a healthy start takes milliseconds.
SERVER_START_TIMEOUT_S = 15.0


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
