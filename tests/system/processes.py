"""Real `liveop serve` processes for the multi-process tests, and how a client talks to them."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson

# Generous: a cold start on a loaded shared CI machine took over 20 s (2026-12-07).
START_TIMEOUT_S = 60.0


@dataclass
class Node:
    base: str
    process: subprocess.Popen[bytes]


def cli(env: dict[str, str], *args: str) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "server", *args], env=env, capture_output=True, timeout=60
    )
    assert done.returncode == 0, done.stderr.decode()
    return orjson.loads(done.stdout)


def wait_healthy(node: Node, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://{node.base}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server did not become healthy:\n{log.read_text()[-3000:]}")


async def login(node: Node, email: str, password: str) -> str:
    async with httpx.AsyncClient(base_url=f"http://{node.base}", timeout=10) as client:
        response = await client.post(
            "/api/v1/auth/login", json={"email": email, "password": password}
        )
    assert response.status_code == 200, response.text
    token: str = response.json()["token"]
    return token


async def command(
    node: Node, account_id: str, api_key: str, name: str, **fields: Any
) -> dict[str, Any]:
    """One App Command, which must succeed."""
    async with httpx.AsyncClient(base_url=f"http://{node.base}", timeout=10) as client:
        response = await client.post(
            "/",
            data={
                "accountID": account_id,
                "key": api_key,
                "app": "liveoperator",
                "command": name,
                "json": orjson.dumps(fields).decode(),
            },
        )
    body: dict[str, Any] = response.json()
    assert response.status_code == 200 and body["success"] is True, body
    return body
