"""``liveop`` (``python -m server``) run as a real process, as an operator of the server would."""

from __future__ import annotations

import os
import queue
import re
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import orjson
import pytest

from server.app import create_app
from server.settings import load_settings

STARTUP_TIMEOUT_S = 20
COMMAND_TIMEOUT_S = 60


def cli_env(data_dir: Path) -> dict[str, str]:
    """The caller's environment without any LIVEOP_* knob but the data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
    env["LIVEOP_DATA_DIR"] = str(data_dir)
    return env


def liveop(
    data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env={**cli_env(data_dir), **(env or {})},
        cwd=data_dir.parent,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def liveop_json(data_dir: Path, *args: str) -> dict[str, Any]:
    done = liveop(data_dir, *args)
    assert done.returncode == 0, done.stderr
    parsed: dict[str, Any] = orjson.loads(done.stdout)
    return parsed


def new_account(data_dir: Path, name: str = "Acme") -> dict[str, Any]:
    return liveop_json(data_dir, "account", "create", "--name", name)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# account and operator


def test_account_create_prints_id_and_key(tmp_path: Path) -> None:
    created = new_account(tmp_path / "data")
    assert set(created) == {"accountID", "apiKey"}
    assert re.fullmatch(r"[0-9a-f]{16}", created["accountID"])
    assert created["apiKey"].startswith("lok_")
    other = new_account(tmp_path / "data")
    assert other["accountID"] != created["accountID"]
    assert other["apiKey"] != created["apiKey"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 101])
def test_account_create_rejects_a_bad_name(tmp_path: Path, name: str) -> None:
    done = liveop(tmp_path / "data", "account", "create", "--name", name)
    assert done.returncode == 1
    assert "invalid_field" in done.stderr
    assert done.stdout == ""


def test_operator_create_prints_the_operator_id(tmp_path: Path) -> None:
    data = tmp_path / "data"
    account = new_account(data)["accountID"]
    base = ("operator", "create", "--account", account, "--password", "long-enough")
    first = liveop_json(data, *base, "--name", "Ada", "--email", "ada@example.test", "--admin")
    assert first == {"operatorID": 1}
    second = liveop_json(data, *base, "--name", "Alex", "--email", "alex@example.test")
    assert second == {"operatorID": 2}


async def test_cli_created_account_and_operator_work_on_the_server(tmp_path: Path) -> None:
    data = tmp_path / "data"
    account = new_account(data)
    liveop_json(
        data, "operator", "create", "--account", account["accountID"], "--name", "Ada",
        "--email", "Ada@Example.test", "--password", "long-enough", "--admin",
    )  # fmt: skip
    liveop_json(
        data, "operator", "create", "--account", account["accountID"], "--name", "Alex",
        "--email", "alex@example.test", "--password", "long-enough",
    )  # fmt: skip
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(data)}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://liveop.test") as client:
            login = await client.post(
                "/api/v1/auth/login",
                json={"email": "ada@example.test", "password": "long-enough"},
            )
            assert login.status_code == 200, login.json()
            assert login.json()["operator"] == {
                "id": 1, "name": "Ada", "email": "ada@example.test", "is_admin": True,
                "role": "admin", "lang": "en", "avatar_url": "", "active": True,
            }  # fmt: skip
            listed = await client.get(
                "/api/v1/admin/operators", headers={"X-Api-Key": account["apiKey"]}
            )
            assert [(o["id"], o["is_admin"]) for o in listed.json()["operators"]] == [
                (1, True),
                (2, False),
            ]


def test_operator_create_for_an_unknown_account_fails(tmp_path: Path) -> None:
    data = tmp_path / "data"
    new_account(data)
    done = liveop(
        data, "operator", "create", "--account", "0123456789abcdef", "--name", "Ada",
        "--email", "ada@example.test", "--password", "long-enough",
    )  # fmt: skip
    assert done.returncode == 1
    assert "account_not_found" in done.stderr
    assert done.stdout == ""


def test_operator_create_with_an_email_taken_in_the_account_fails_not_in_another(
    tmp_path: Path,
) -> None:
    """Issue 21 item 9 changed the rule: an email taken in another account is accepted (the
    refusal told an admin who else uses the product); in the same account it is refused."""
    data = tmp_path / "data"
    first, second = new_account(data)["accountID"], new_account(data, "Globex")["accountID"]
    args = ("--name", "Ada", "--password", "long-enough")
    liveop_json(data, "operator", "create", "--account", first, "--email", "ada@x.test", *args)
    done = liveop(data, "operator", "create", "--account", first, "--email", "ADA@x.test", *args)
    assert done.returncode == 1
    assert "email_taken" in done.stderr
    assert done.stdout == ""
    created = liveop_json(
        data, "operator", "create", "--account", second, "--email", "ADA@x.test", *args
    )
    assert created == {"operatorID": 1}


@pytest.mark.parametrize(
    ("email", "password"),
    [("not-an-email", "long-enough"), ("ada@example.test", "short")],
)
def test_operator_create_validates_like_the_api(tmp_path: Path, email: str, password: str) -> None:
    data = tmp_path / "data"
    account = new_account(data)["accountID"]
    done = liveop(
        data, "operator", "create", "--account", account, "--name", "Ada",
        "--email", email, "--password", password,
    )  # fmt: skip
    assert done.returncode == 1
    assert "invalid_field" in done.stderr


def test_secret_key_is_created_owner_only_and_reused(tmp_path: Path) -> None:
    data = tmp_path / "data"
    key_file = data / "secret_key"
    assert not key_file.exists()
    new_account(data)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    first = key_file.read_text()
    assert len(first.strip()) >= 32
    new_account(data)
    assert key_file.read_text() == first


def test_bad_setting_exits_with_a_message(tmp_path: Path) -> None:
    done = liveop(
        tmp_path / "data", "account", "create", "--name", "Acme", env={"LIVEOP_JWT_TTL_S": "soon"}
    )
    assert done.returncode == 2
    assert "LIVEOP_JWT_TTL_S" in done.stderr


def test_bad_port_variable_fails_only_serve_and_with_a_message(tmp_path: Path) -> None:
    """Regression: a non-numeric $PORT crashed every command, even `account create`, with a
    traceback while the argument parser was being built."""
    data = tmp_path / "data"
    created = liveop(data, "account", "create", "--name", "Acme", env={"PORT": "web"})
    assert created.returncode == 0, created.stderr
    assert "accountID" in orjson.loads(created.stdout)
    served = liveop(data, "serve", env={"PORT": "web"})
    assert served.returncode == 2
    assert "--port" in served.stderr
    assert "Traceback" not in served.stderr


# demo


@dataclass
class Demo:
    process: subprocess.Popen[str]
    lines: list[str]
    chat_url: str
    port: int

    def field(self, label: str) -> str:
        for line in self.lines:
            if line.strip().startswith(label + ":"):
                return line.split(":", 1)[1].strip()
        raise AssertionError(f"no {label!r} line in {self.lines}")


@contextmanager
def running_demo(data_dir: Path, *command: str) -> Iterator[Demo]:
    port = free_port()
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir.parent / "demo.stderr"
    with log.open("a") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", *command, "--port", str(port)],
            env=cli_env(data_dir),
            cwd=data_dir.parent,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()
    # A thread drains stdout so the server never blocks on a full pipe (uvicorn writes
    # access logs there) and reading a line can be given a deadline.
    drainer = threading.Thread(target=_drain, args=(process.stdout, lines), daemon=True)
    drainer.start()
    try:
        seen: list[str] = []
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        chat_url = ""
        while not chat_url:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or process.poll() is not None:
                raise AssertionError(f"no chat window line in {seen}; stderr: {log.read_text()}")
            try:
                line = lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            seen.append(line)
            if "chat window:" in line:
                chat_url = line.split("chat window:", 1)[1].strip()
        # The rest of the banner follows at once; the server starts listening just after.
        while not any("data dir:" in line for line in seen):
            seen.append(lines.get(timeout=STARTUP_TIMEOUT_S))
        _wait_until_listening(port, deadline, log)
        yield Demo(process, seen, chat_url, port)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        drainer.join(timeout=10)
        process.stdout.close()


def _drain(stream: IO[str], lines: queue.Queue[str]) -> None:
    for line in stream:
        lines.put(line)


def _wait_until_listening(port: int, deadline: float, log: Path) -> None:
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError(f"the demo did not listen on port {port}; stderr: {log.read_text()}")


def test_demo_serves_a_working_account_and_keeps_it(tmp_path: Path) -> None:
    data = tmp_path / "data"
    with running_demo(data, "demo") as demo:
        base = f"http://127.0.0.1:{demo.port}"
        account_id = demo.field("account")
        api_key = demo.field("API key")
        assert demo.chat_url == f"{base}/{account_id}/liveoperator/loadchat"

        page = httpx.get(demo.chat_url, timeout=5)
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")

        email, password = (part.strip() for part in demo.field("operator").split(" / "))
        login = httpx.post(
            f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=5
        )
        assert login.status_code == 200, login.text
        operator = login.json()["operator"]
        assert operator["id"] == int(demo.field("operatorID"))
        assert operator["is_admin"] is True

        sent = httpx.post(
            f"{base}/",
            data={"accountID": account_id, "key": api_key, "app": "liveoperator",
                  "command": "sendmessage", "json": '{"message": "hi"}'},
            timeout=5,
        )  # fmt: skip
        assert sent.status_code == 200, sent.text
        assert sent.json()["success"] is True

        canned = httpx.get(
            f"{base}/api/v1/admin/canned",
            headers={"Authorization": f"Bearer {login.json()['token']}"},
            timeout=5,
        )
        assert canned.status_code == 200, canned.text
        assert [c["id"] for c in canned.json()["canned"]] == [1, 2, 3]
        token = login.json()["token"]
        inbox = httpx.get(
            f"{base}/api/v1/operator/inbox", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert inbox.status_code == 200, inbox.text
        samples = [(c["source_app"], c["status"]) for c in inbox.json()["conversations"]]
        # The first sign-in shows the product: a sample on every channel, freshest first,
        # the App Command message above them.
        assert samples == [
            ("chatbot", "open"),
            ("smsbroadcast", "open"),
            ("chatbot", "open"),
            ("liveoperator", "active"),
            ("emailbroadcast", "open"),
            ("liveoperator", "active"),
            ("liveoperator", "resolved"),
        ]

    assert stat.S_IMODE((data / "demo.json").stat().st_mode) == 0o600
    with running_demo(data, "serve", "--demo") as again:
        assert again.field("account") == account_id
        assert again.field("API key") == api_key
        base = f"http://127.0.0.1:{again.port}"
        # the secret key was reused, so a session from the first run is still valid
        still = httpx.get(
            f"{base}/api/v1/admin/canned", headers={"Authorization": f"Bearer {token}"}, timeout=5
        )
        assert still.status_code == 200, still.text
        assert len(still.json()["canned"]) == 3


def test_demo_recreates_its_account_when_the_database_was_reset(tmp_path: Path) -> None:
    """Regression: demo.json outlived a deleted database and the demo printed an account
    (and a login) that no longer existed."""
    data = tmp_path / "data"
    with running_demo(data, "demo") as demo:
        old_account = demo.field("account")
    for file in data.glob("liveop.db*"):
        file.unlink()
    with running_demo(data, "demo") as demo:
        assert demo.field("account") != old_account
        base = f"http://127.0.0.1:{demo.port}"
        page = httpx.get(demo.chat_url, timeout=5)
        assert page.status_code == 200
        email, password = (part.strip() for part in demo.field("operator").split(" / "))
        login = httpx.post(
            f"{base}/api/v1/auth/login", json={"email": email, "password": password}, timeout=5
        )
        assert login.status_code == 200, login.text
