"""``liveop export`` / ``liveop import``: an installation moved from SQLite to PostgreSQL keeps
its API keys, logins, JWTs, conversation ids, seqs and SSE cursors; a bad import writes
nothing."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests.server.realtime_clients import SSEClient, free_port, sse
from tests.storage import conftest as storage_fixtures
from tests.system.processes import Node, cli, wait_healthy

# A fresh PostgreSQL database per test, dropped afterwards (skips without a server).
postgres_url = storage_fixtures.postgres_url

# Shared by the SQLite and the PostgreSQL server: a JWT of one must verify on the other.
SECRET_KEY = "migrate-test-secret-key-0123456789abcdef"
PASSWORD = "migrate-pass-1"
COMMAND_TIMEOUT_S = 60
EVENT_TIMEOUT_S = 10.0


def _env(data_dir: Path, database_url: str | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIVEOP_") and k != "PORT"}
    env.update(LIVEOP_DATA_DIR=str(data_dir), LIVEOP_SECRET_KEY=SECRET_KEY)
    if database_url is not None:
        env["LIVEOP_DATABASE_URL"] = database_url
    return env


def _liveop(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        capture_output=True,
        timeout=COMMAND_TIMEOUT_S,
        check=False,
    )


def _export(env: dict[str, str]) -> list[bytes]:
    done = _liveop(env, "export")
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.splitlines()


@contextlib.contextmanager
def _server(env: dict[str, str], log: Path) -> Iterator[str]:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--port", str(port)],
            env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        node = Node(f"127.0.0.1:{port}", process)
        wait_healthy(node, log)
        yield node.base
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Tenant:
    """One account seen through the App Command API and the operator login."""

    def __init__(self, base: str, account_id: str, api_key: str, email: str) -> None:
        self.client = httpx.AsyncClient(base_url=f"http://{base}", timeout=10)
        self.account_id = account_id
        self.api_key = api_key
        self.email = email

    async def command(self, command: str, **fields: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/",
            data={
                "accountID": self.account_id, "key": self.api_key, "app": "liveoperator",
                "command": command, "json": orjson.dumps(fields).decode(),
            },
        )  # fmt: skip
        body: dict[str, Any] = response.json()
        assert response.status_code == 200 and body["success"] is True, body
        return body

    async def login(self) -> str:
        response = await self.client.post(
            "/api/v1/auth/login", json={"email": self.email, "password": PASSWORD}
        )
        assert response.status_code == 200, response.text
        token: str = response.json()["token"]
        return token

    async def admin(self, token: str, method: str, path: str, **body: Any) -> dict[str, Any]:
        response = await self.client.request(
            method,
            f"/api/v1/admin/{path}",
            headers={"Authorization": f"Bearer {token}"},
            json=body or None,
        )
        assert response.status_code in (200, 201), response.text
        parsed: dict[str, Any] = response.json()
        return parsed


def _summary(event: Any) -> tuple[str, str | None, str | None]:
    """What must match between a live and a replayed event: kind, cursor and message id
    (the conversation state inside an event is the current one, so it may differ)."""
    message = event.data.get("message") if isinstance(event.data, dict) else None
    return event.event, event.id, message["id"] if message else None


async def _until(stream: SSEClient, message_id: str) -> list[tuple[str, str | None, str | None]]:
    """Every account event up to and including the message:new of ``message_id``.

    Ends on a known message rather than on a quiet period: a timed-out read would cancel
    the response's line iterator and close the stream under us.
    """
    got: list[tuple[str, str | None, str | None]] = []
    while not got or got[-1][::2] != ("message:new", message_id):
        event = await stream.next(EVENT_TIMEOUT_S)
        if event.id is not None:  # typing and presence are state, not log
            got.append(_summary(event))
    return got


async def test_an_installation_moved_from_sqlite_to_postgresql_keeps_working(
    tmp_path: Path, postgres_url: str
) -> None:
    sqlite_env = _env(tmp_path / "sqlite-data")
    account = cli(sqlite_env, "account", "create", "--name", "Movers")
    account_id, api_key = account["accountID"], account["apiKey"]
    email = "ada@movers.test"
    cli(
        sqlite_env, "operator", "create", "--account", account_id, "--name", "Ada",
        "--email", email, "--password", PASSWORD, "--admin",
    )  # fmt: skip
    with _server(sqlite_env, tmp_path / "sqlite.log") as base:
        old = Tenant(base, account_id, api_key, email)
        old_token = await old.login()
        await old.admin(old_token, "POST", "teams", name="Support", member_ids=[1])
        await old.admin(old_token, "POST", "canned", name="Hi", tag="hi", message="Hello {fname}")
        first = await old.command("sendmessage", message="I need help", clientMsgID="c1",
                                  fname="Vera")  # fmt: skip
        convo = first["convoID"]
        await old.command("sendmessage", convoID=convo, operatorID=1, message="On it")
        async with sse(base, old_token) as stream:
            assert stream.first is not None
            cursor = stream.first.id
            await old.command("sendmessage", convoID=convo, message="Thanks", clientMsgID="c2")
            await old.command("sendmessage", convoID=convo, operatorID=1, canned=1)
            # A plain visitor message appends exactly one event: the end of this stretch.
            marker = await old.command("sendmessage", convoID=convo, message="Bye")
            live = await _until(stream, marker["message"]["id"])
        history = (await old.command("gethistory", convoID=convo))["messages"]
        teams = await old.admin(old_token, "GET", "teams")
        canned = await old.admin(old_token, "GET", "canned")
        await old.client.aclose()
    assert cursor is not None and [m["seq"] for m in history] == [1, 2, 3, 4, 5]

    dump = tmp_path / "liveop.jsonl"
    exported = _liveop(sqlite_env, "export", "--output", str(dump))
    assert exported.returncode == 0, exported.stderr.decode()
    postgres_env = _env(tmp_path / "postgres-data", postgres_url)
    imported = _liveop(postgres_env, "import", "--input", str(dump))
    assert imported.returncode == 0, imported.stderr.decode()
    lines = dump.read_bytes().splitlines()
    assert orjson.loads(imported.stdout) == {"imported": len(lines)}
    # Every value, floats to the last bit, booleans and nulls included, reads back the same
    # (rows compared as sets: the two databases order text keys by different collations).
    assert sorted(_export(postgres_env)) == sorted(lines)

    with _server(postgres_env, tmp_path / "postgres.log") as base:
        new = Tenant(base, account_id, api_key, email)
        try:
            assert (await new.command("gethistory", convoID=convo))["messages"] == history
            assert await new.login()
            assert await new.admin(old_token, "GET", "teams") == teams
            assert await new.admin(old_token, "GET", "canned") == canned
            # The dashboard's old session and cursor resume on the new database.
            async with sse(base, old_token, last_event_id=cursor) as resumed:
                assert resumed.first is not None
                assert (resumed.first.event, resumed.first.id) == ("ready", cursor)
                assert await _until(resumed, marker["message"]["id"]) == live
                sent = await new.command("sendmessage", convoID=convo, message="Still there?")
                assert sent["message"]["seq"] == 6
                # The very next event is the new message, numbered on from the old log: the
                # replay held nothing twice and nothing extra.
                event = await resumed.next(EVENT_TIMEOUT_S)
                while event.id is None:  # typing and presence are state, not log
                    event = await resumed.next(EVENT_TIMEOUT_S)
                assert _summary(event) == (
                    "message:new", str(int(str(live[-1][1])) + 1), sent["message"]["id"]
                )  # fmt: skip
        finally:
            await new.client.aclose()


@pytest.fixture(scope="module")
def dump_lines(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    """An export of a small installation: accounts, api_keys, counters (site and operator ids),
    operators, the default site, in order."""
    env = _env(tmp_path_factory.mktemp("source"))
    account = cli(env, "account", "create", "--name", "Source")
    cli(
        env, "operator", "create", "--account", account["accountID"], "--name", "Sam",
        "--email", "sam@source.test", "--password", PASSWORD,
    )  # fmt: skip
    lines = _export(env)
    assert [orjson.loads(line)["table"] for line in lines] == [
        "accounts", "api_keys", "counters", "counters", "operators", "sites",
    ]  # fmt: skip
    return lines


def _target_env(request: pytest.FixtureRequest, target: str, tmp_path: Path) -> dict[str, str]:
    # Looked up by name so the sqlite variant never asks for a PostgreSQL server.
    url = request.getfixturevalue("postgres_url") if target == "postgres" else None
    return _env(tmp_path / "target", url)


def _import(
    env: dict[str, str], lines: list[bytes], path: Path
) -> subprocess.CompletedProcess[bytes]:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return _liveop(env, "import", "--input", str(path))


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
def test_import_into_a_store_that_holds_an_account_fails_and_writes_nothing(
    request: pytest.FixtureRequest, target: str, tmp_path: Path, dump_lines: list[bytes]
) -> None:
    env = _target_env(request, target, tmp_path)
    cli(env, "account", "create", "--name", "Already here")
    before = _export(env)
    done = _import(env, dump_lines, tmp_path / "dump.jsonl")
    assert done.returncode == 1
    assert "already holds accounts" in done.stderr.decode()
    assert _export(env) == before


BAD_LINES = {
    "not_json": (b'{"table": "accounts", "row": ', "line 3: not JSON"),
    "not_a_row": (b'["accounts", {}]', 'line 3: expected {"table": NAME, "row": {...}}'),
    "unknown_table": (b'{"table": "users", "row": {}}', "line 3: unknown table 'users'"),
    "missing_column": (
        b'{"table": "counters", "row": {"account_id": "x", "kind": "team"}}',
        "line 3: counters: missing columns ['last_id']",
    ),
    "wrong_type": (
        b'{"table": "counters", "row": {"account_id": "x", "kind": "team", "last_id": true}}',
        "line 3: counters.last_id: expected int, got True",
    ),
    # Issue 21 item 6: stored by SQLite (before ids were checked), refused by PostgreSQL.
    "nul_character": (
        b'{"table": "counters", "row": {"account_id": "x\\u0000", "kind": "team", "last_id": 1}}',
        "line 3: counters.account_id: contains a NUL character",
    ),
    "beyond_64_bits": (
        b'{"table": "counters", "row": {"account_id": "x", "kind": "team",'
        b' "last_id": 9223372036854775808}}',
        "line 3: counters.last_id: 9223372036854775808 is beyond 64 bits",
    ),
    # Well-formed but refused by the database: the api_keys row of line 2 again.
    "duplicate_key": (None, "api_keys:"),
}


@pytest.mark.parametrize("target", ["sqlite", "postgres"])
@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_a_bad_line_fails_the_import_clearly_and_writes_nothing(
    request: pytest.FixtureRequest, target: str, case: str, tmp_path: Path, dump_lines: list[bytes]
) -> None:
    env = _target_env(request, target, tmp_path)
    bad, message = BAD_LINES[case]
    # After two good lines, so the accounts row has already been inserted when it fails.
    lines = [*dump_lines[:2], bad or dump_lines[1], *dump_lines[2:]]
    done = _import(env, lines, tmp_path / "bad.jsonl")
    assert done.returncode == 1
    stderr = done.stderr.decode()
    assert stderr.startswith("liveop: import failed: ") and message in stderr, stderr
    assert "Traceback" not in stderr
    assert _export(env) == []
