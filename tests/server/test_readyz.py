"""``/readyz`` tells a load balancer the truth: 503, naming the failing check, when the data
directory is read-only or full, when Redis is unreachable, and as soon as shutdown begins;
``liveop serve`` refuses to start on a data directory it cannot write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette

from server.app import create_app
from server.readiness import CHECK_TIMEOUT_S, PROBE_FILE, ShutdownState
from server.settings import load_settings
from tests.mounts import Disk, small_disk
from tests.redis_server import RedisServer
from tests.server.realtime_clients import free_port
from tests.system.processes import Node, wait_healthy
from tests.test_cli import cli_env

SECRET_KEY = "readyz-test-secret-key-0123456789abcdef"


@pytest.fixture
def disk(tmp_path: Path) -> AsyncIterator[Disk]:
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted


async def _ready(app: Starlette) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://liveop.test") as client:
        return await client.get("/readyz")


def _not_ready(response: httpx.Response, check: str) -> dict[str, str]:
    body = response.json()
    assert response.status_code == 503, body
    assert body["success"] is False and body["error"]["code"] == "not_ready"
    assert body["checks"][check] != "ok", body
    assert check in body["error"]["message"]
    checks: dict[str, str] = body["checks"]
    return checks


async def test_a_healthy_process_is_ready_with_each_check_named(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"success": True, "checks": {"store": "ok", "broker": "ok"}}


async def test_readyz_is_503_on_a_read_only_data_dir_and_recovers(
    tmp_path: Path, disk: Disk
) -> None:
    # The database lives beside the disk: a mount with a file open for writing cannot turn
    # read-only, and the data directory also holds the uploads, which must be writable.
    app = create_app(
        load_settings(
            {
                "LIVEOP_DATA_DIR": str(disk.path),
                "LIVEOP_DATABASE_URL": f"sqlite:///{tmp_path / 'liveop.db'}",
            }
        )
    )
    async with app.router.lifespan_context(app):
        assert (await _ready(app)).status_code == 200
        disk.read_only()
        try:
            checks = _not_ready(await _ready(app), "store")
            assert checks["broker"] == "ok"
            assert "cannot be written" in checks["store"]
        finally:
            disk.writable()
        assert (await _ready(app)).status_code == 200


async def test_readyz_is_503_on_a_full_disk_and_recovers(disk: Disk) -> None:
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(disk.path)}))
    async with app.router.lifespan_context(app):
        disk.fill()
        try:
            _not_ready(await _ready(app), "store")
        finally:
            disk.free()
        assert (await _ready(app)).status_code == 200


async def test_readyz_is_503_on_a_stalled_disk_without_piling_up_probes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(data)}))
    async with app.router.lifespan_context(app):
        # A FIFO where the probe writes: opening it for writing blocks until a reader comes,
        # as a write to a stalled disk does.
        assert (await _ready(app)).status_code == 200  # the probes' threads exist now
        threads = threading.active_count()
        fifo = data / f"{PROBE_FILE}.{os.getpid()}"
        os.mkfifo(fifo)
        for _ in range(3):
            checks = _not_ready(await _ready(app), "store")
            assert checks["store"] == f"no answer within {CHECK_TIMEOUT_S:g} s"
        assert threading.active_count() <= threads + 1  # one stalled probe, joined each time
        # The disk comes back: the stalled write gets its reader, the FIFO goes.
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        try:
            deadline = time.monotonic() + 10
            while (await _ready(app)).status_code != 200:
                fifo.unlink(missing_ok=True)
                assert time.monotonic() < deadline, "never ready again after the stall"
        finally:
            os.close(reader)


async def test_readyz_is_503_while_redis_is_unreachable(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    settings = load_settings(
        {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_BROKER_URL": redis_server.url}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert (await _ready(app)).json()["checks"] == {"store": "ok", "broker": "ok"}
        redis_server.stop()
        try:
            checks = _not_ready(await _ready(app), "broker")
            assert checks["store"] == "ok"
            # The details (host, port) go to the log, not to an anonymous caller.
            assert "127.0.0.1" not in checks["broker"]
        finally:
            redis_server.start()
        deadline = time.monotonic() + 10
        while (await _ready(app)).status_code != 200:
            assert time.monotonic() < deadline, "never ready again after Redis returned"


async def test_readyz_is_503_once_shutdown_begins(tmp_path: Path) -> None:
    shutdown = ShutdownState()
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(tmp_path / "data")}), shutdown)
    async with app.router.lifespan_context(app):
        assert (await _ready(app)).status_code == 200
        shutdown.begin()
        _not_ready(await _ready(app), "shutdown")


def test_sigterm_turns_readyz_503_while_the_process_drains_then_it_exits(tmp_path: Path) -> None:
    env = {**cli_env(tmp_path / "data"), "LIVEOP_SHUTDOWN_DRAIN_S": "30"}
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    node = Node(f"127.0.0.1:{port}", process)
    try:
        wait_healthy(node, log)
        assert httpx.get(f"http://{node.base}/readyz").status_code == 200
        process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        while (response := httpx.get(f"http://{node.base}/readyz")).status_code == 200:
            assert time.monotonic() < deadline, "readyz never turned 503"
        _not_ready(response, "shutdown")
        # Still serving during the drain: the load balancer has time to notice.
        assert httpx.get(f"http://{node.base}/healthz").status_code == 200
        # A second signal ends the drain at once.
        process.send_signal(signal.SIGTERM)
        process.wait(15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "Shutting down" in log.read_text()


def test_serve_refuses_to_start_on_a_read_only_data_dir(disk: Disk) -> None:
    env = {**cli_env(disk.path), "LIVEOP_SECRET_KEY": SECRET_KEY}
    disk.read_only()
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", str(free_port())],
        env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert f"the data directory {disk.path} cannot be written" in done.stderr
    assert "Read-only file system" in done.stderr


def test_serve_refuses_to_start_when_the_data_dir_cannot_hold_the_key(disk: Disk) -> None:
    disk.read_only()
    done = subprocess.run(
        [sys.executable, "-m", "server", "serve", "--port", str(free_port())],
        env=cli_env(disk.path), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "cannot create or read the secret key" in done.stderr
    assert "Traceback" not in done.stderr
