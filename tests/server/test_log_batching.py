"""The access log is written in batches (server/logs.py BatchedStreamHandler): what a person
reading the log relies on still holds — every line arrives within FLUSH_INTERVAL_S while the
server runs, a warning arrives at once with everything before it, and nothing is lost at exit."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from server.logs import FLUSH_INTERVAL_S, BatchedStreamHandler
from tests.server.realtime_clients import free_port
from tests.system.processes import Node, wait_healthy
from tests.test_cli import cli_env

# Generous against a loaded machine: the promise is FLUSH_INTERVAL_S, the test allows more.
ARRIVAL_TIMEOUT_S = 10 * FLUSH_INTERVAL_S


@contextmanager
def _logger(path: Path, name: str) -> Iterator[tuple[logging.Logger, BatchedStreamHandler]]:
    # Block-buffered, as a process's stdout is when it goes to a file or a pipe.
    with path.open("w", buffering=64 * 1024) as stream:
        handler = BatchedStreamHandler(stream)
        logger = logging.getLogger(name)
        logger.propagate = False
        logger.setLevel(logging.INFO)
        logger.addHandler(handler)
        try:
            yield logger, handler
        finally:
            logger.removeHandler(handler)
            handler.close()


def _wait_for(path: Path, text: str) -> float:
    start = time.monotonic()
    while text not in path.read_text():
        assert time.monotonic() - start < ARRIVAL_TIMEOUT_S, f"{text!r} never reached {path}"
        time.sleep(0.02)
    return time.monotonic() - start


def test_an_info_line_reaches_the_file_while_the_process_idles(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with _logger(path, "liveop.test.idle") as (logger, _):
        logger.info("GET /healthz 200")
        _wait_for(path, "GET /healthz 200")
        logger.info("a second line, after the flusher started")
        _wait_for(path, "a second line")


def test_a_warning_writes_out_at_once_with_the_lines_before_it(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with _logger(path, "liveop.test.warning") as (logger, _):
        logger.info("the request before")
        logger.warning("the failure")
        text = path.read_text()
        assert "the request before" in text and "the failure" in text


def test_closing_writes_out_every_line(tmp_path: Path) -> None:
    path = tmp_path / "access.log"
    with _logger(path, "liveop.test.close") as (logger, handler):
        for n in range(500):
            logger.info("line %d", n)
        handler.close()
        assert path.read_text().splitlines() == [f"line {n}" for n in range(500)]


def test_a_served_request_reaches_the_access_log_while_the_server_runs(tmp_path: Path) -> None:
    port = free_port()
    out_path, err_path = tmp_path / "stdout.log", tmp_path / "stderr.log"
    with out_path.open("wb") as out, err_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            env=cli_env(tmp_path / "data"),
            stdout=out,
            stderr=err,
        )
    node = Node(f"127.0.0.1:{port}", process)
    try:
        wait_healthy(node, err_path)
        httpx.get(f"http://{node.base}/healthz?probe=batched", timeout=5)
        _wait_for(out_path, "/healthz?probe=batched")
        assert process.poll() is None
    finally:
        process.terminate()
        process.wait(15)
