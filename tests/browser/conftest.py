"""Browser-test fixtures: a real server in a subprocess, an account with one operator, and
Chromium driven by Playwright.

Without a usable Chromium (``/usr/bin/chromium``, or the path in ``LIVEOP_CHROMIUM``) or the
``playwright`` package the tests are skipped, unless ``LIVEOP_REQUIRE_SERVICES=1`` (as in CI),
which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A cold start imports everything and migrates a fresh store: about 2 s on a quiet machine,
# but 20 s was exceeded on a shared 2-core machine at load average 12 (CI, 2026-12-07).
SERVER_START_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 60.0
# Playwright's expect() waits this long: several poll intervals (1.5 s) plus slack for CI.
EXPECT_TIMEOUT_MS = 10_000

OPERATOR_NAME = "Alex"
OPERATOR_EMAIL = "alex@example.com"
OPERATOR_PASSWORD = "correct horse 1"
ACCOUNT_NAME = "Acme"


def _unavailable(reason: str) -> None:
    """Skips, or fails when the environment promises the services are there."""
    if os.environ.get("LIVEOP_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (LIVEOP_REQUIRE_SERVICES=1, so this is a failure)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_executable() -> str:
    path = os.environ.get("LIVEOP_CHROMIUM") or DEFAULT_CHROMIUM
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        _unavailable(f"no Chromium executable at {path} (set LIVEOP_CHROMIUM to another path)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError as exc:
        _unavailable(f"the playwright package cannot be imported: {exc}")
    from playwright.async_api import expect

    expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    return path


# ---------------------------------------------------------------------------------------------
# The server


@dataclass(frozen=True)
class LiveServer:
    base_url: str
    data_dir: Path
    account_id: str
    api_key: str
    operator_id: int
    operator_name: str
    account_name: str

    @property
    def chat_url(self) -> str:
        return f"{self.base_url}/{quote(self.account_id, safe='')}/liveoperator/loadchat"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _server_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment minus any LIVEOP_* settings (a database or broker URL meant for
    other tests): this server keeps everything in a fresh SQLite file under ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_")}
    return {**env, "LIVEOP_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"}


def _cli_json(args: list[str], env: dict[str, str]) -> dict[str, Any]:
    """Runs ``python -m server <args>`` and returns the JSON object it prints."""
    cmd = [sys.executable, "-m", "server", *args]
    proc = subprocess.run(
        cmd,
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{' '.join(cmd)} exited with {proc.returncode}\n"
            f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}",
            pytrace=False,
        )
    out = proc.stdout
    start = out.find("{")
    try:
        parsed, _ = json.JSONDecoder().raw_decode(out[start:]) if start >= 0 else (None, 0)
    except json.JSONDecodeError:
        parsed = None
    if not isinstance(parsed, dict):
        pytest.fail(f"{' '.join(cmd)} printed no JSON object:\n{out}", pytrace=False)
    return parsed


def _log_tail(log_path: Path, limit: int = 4000) -> str:
    try:
        return log_path.read_text(errors="replace")[-limit:]
    except OSError:
        return "(no log)"


@pytest.fixture(scope="module")
def live_server(
    chromium_executable: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """``python -m server serve`` on a free port, with its SQLite data in a fresh directory.

    Depends on ``chromium_executable`` so a missing browser skips before anything starts.
    """
    data_dir = tmp_path_factory.mktemp("liveop-data")
    env = _server_env(data_dir)

    account = _cli_json(["account", "create", "--name", ACCOUNT_NAME], env)
    account_id, api_key = str(account["accountID"]), str(account["apiKey"])
    operator = _cli_json(
        [
            "operator",
            "create",
            "--account",
            account_id,
            "--name",
            OPERATOR_NAME,
            "--email",
            OPERATOR_EMAIL,
            "--password",
            OPERATOR_PASSWORD,
        ],
        env,
    )
    operator_id = int(operator["operatorID"])

    port = _free_port()
    base_url = f"http://127.0.0.1:{port}"
    log_path = data_dir / "server.log"
    cmd = [sys.executable, "-m", "server", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"the server exited with {proc.returncode} before it was ready:\n"
                    f"{_log_tail(log_path)}",
                    pytrace=False,
                )
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"GET /healthz did not answer 200 within {SERVER_START_TIMEOUT_S:.0f} s:\n"
                    f"{_log_tail(log_path)}",
                    pytrace=False,
                )
            time.sleep(0.1)
        yield LiveServer(
            base_url=base_url,
            data_dir=data_dir,
            account_id=account_id,
            api_key=api_key,
            operator_id=operator_id,
            operator_name=OPERATOR_NAME,
            account_name=ACCOUNT_NAME,
        )
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


# ---------------------------------------------------------------------------------------------
# The operator's side: the App Command API


class OperatorAPI:
    """``POST /`` with accountID, key, app=liveoperator, command and a JSON ``json`` field."""

    def __init__(self, client: httpx.AsyncClient, server: LiveServer) -> None:
        self._client = client
        self._server = server
        self.operator_id = server.operator_id

    async def raw(self, command: str, **fields: Any) -> httpx.Response:
        return await self._client.post(
            "/",
            data={
                "accountID": self._server.account_id,
                "key": self._server.api_key,
                "app": "liveoperator",
                "command": command,
                "json": json.dumps(fields),
            },
        )

    async def online(self) -> None:
        """The operator has the inbox open (a heartbeat, which presence keeps for 75 s): the
        widget and the chat window show the chat itself, not the away form (issue 18), as
        the README's screenshots show them."""
        login = await self._client.post(
            "/api/v1/auth/login", json={"email": OPERATOR_EMAIL, "password": OPERATOR_PASSWORD}
        )
        assert login.status_code == 200, login.text
        beat = await self._client.post(
            "/api/v1/operator/heartbeat",
            json={"site_ids": [1]},
            headers={"Authorization": f"Bearer {login.json()['token']}"},
        )
        assert beat.status_code == 200, beat.text

    async def command(self, command: str, **fields: Any) -> dict[str, Any]:
        """Runs a command and returns its answer, failing the test unless it succeeded."""
        response = await self.raw(command, **fields)
        try:
            body = response.json()
        except ValueError:
            body = None
        if (
            response.status_code != 200
            or not isinstance(body, dict)
            or body.get("success") is not True
        ):
            pytest.fail(
                f"App Command {command} {fields} -> HTTP {response.status_code}: {response.text}",
                pytrace=False,
            )
        return body


@pytest.fixture
async def operator_api(live_server: LiveServer) -> AsyncIterator[OperatorAPI]:
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=10.0) as client:
        yield OperatorAPI(client, live_server)


# ---------------------------------------------------------------------------------------------
# The browser


@pytest.fixture
async def browser(chromium_executable: str) -> AsyncIterator[Any]:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=chromium_executable, args=CHROMIUM_ARGS)
        try:
            yield launched
        finally:
            await launched.close()


@dataclass
class Window:
    """One visitor's page, plus the script errors it reported."""

    page: Any
    errors: list[str]


OpenWindow = Callable[..., Awaitable[Window]]

# Before any page script runs: the window then finds no WebSocket and uses its polling transport.
NO_WEBSOCKET_SCRIPT = "window.WebSocket = undefined;"


@pytest.fixture
async def open_window(browser: Any) -> AsyncIterator[OpenWindow]:
    """Opens a page in a fresh browser context (own localStorage); kwargs go to new_context.

    ``websocket=False`` hides ``window.WebSocket`` from the page, so the chat window polls.
    """
    contexts: list[Any] = []

    async def open_(*, websocket: bool = True, **context_options: Any) -> Window:
        options = {"locale": "en-US", "timezone_id": "UTC", **context_options}
        context = await browser.new_context(**options)
        contexts.append(context)
        if not websocket:
            await context.add_init_script(NO_WEBSOCKET_SCRIPT)
        page = await context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))

        def on_console(msg: Any) -> None:
            # Failed HTTP requests are logged by the browser itself; the tests check those.
            if msg.type == "error" and "Failed to load resource" not in msg.text:
                errors.append(f"console: {msg.text}")

        page.on("console", on_console)
        return Window(page, errors)

    yield open_
    for context in contexts:
        await context.close()
