"""``liveop doctor`` run as an operator runs it: each broken setup is reported with what is
wrong and how to fix it, and a non-zero exit; a healthy one passes with exit 0."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.mounts import Disk, small_disk
from tests.outbound.servers import (
    SMS_FROM,
    SMS_SID,
    SMS_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    sms_server,
    smtp_server,
)
from tests.redis_server import RedisServer
from tests.server.realtime_clients import free_port
from tests.storage import conftest as storage_fixtures
from tests.test_cli import cli_env

# A fresh PostgreSQL database per test, dropped afterwards.
postgres_url = storage_fixtures.postgres_url
SECRET_KEY = "doctor-test-secret-key-0123456789abcdef"


def doctor(data_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server", "doctor"],
        env={**cli_env(data_dir), **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip


def migrate(data_dir: Path, **env: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "migrate"],
        env={**cli_env(data_dir), **env}, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr


def problem(done: subprocess.CompletedProcess[str], check: str) -> str:
    """The problem line (and its fix) reported for ``check``; the run must have failed."""
    assert done.returncode == 1, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    for index, line in enumerate(lines):
        if line.startswith(f"PROBLEM {check}:"):
            assert lines[index + 1].strip().startswith("fix: ")
            return f"{line}\n{lines[index + 1]}"
    raise AssertionError(f"no {check} problem in:\n{done.stdout}")


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    with small_disk(tmp_path / "disk") as mounted:
        yield mounted


def test_a_healthy_installation_passes(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    done = doctor(data)
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines] == [
        "ok      configuration", "ok      data directory", "ok      store", "ok      broker",
    ]  # fmt: skip


def test_a_bad_setting_is_reported_with_its_name(tmp_path: Path) -> None:
    done = doctor(tmp_path / "data", LIVEOP_JWT_TTL_S="soon")
    assert "LIVEOP_JWT_TTL_S must be a whole number" in problem(done, "configuration")


def test_a_database_never_created_says_to_migrate(tmp_path: Path) -> None:
    report = problem(doctor(tmp_path / "data"), "store")
    assert "does not exist yet" in report and "liveop migrate" in report
    assert not (tmp_path / "data" / "liveop.db").exists()  # the doctor created nothing


def test_a_database_migrated_by_a_newer_version_is_reported(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    with sqlite3.connect(data / "liveop.db") as conn:
        conn.execute("INSERT INTO schema_migrations (version) VALUES (9999)")
    report = problem(doctor(data), "migrations")
    assert "[9999]" in report and "newer version" in report


def test_a_read_only_data_dir_is_reported(tmp_path: Path, disk: Disk) -> None:
    database = f"sqlite:///{tmp_path / 'liveop.db'}"
    migrate(disk.path, LIVEOP_SECRET_KEY=SECRET_KEY, LIVEOP_DATABASE_URL=database)
    disk.read_only()
    done = doctor(disk.path, LIVEOP_SECRET_KEY=SECRET_KEY, LIVEOP_DATABASE_URL=database)
    report = problem(done, "data directory")
    assert "Read-only file system" in report and "write access" in report


def test_a_full_disk_is_reported(disk: Disk) -> None:
    migrate(disk.path)
    disk.fill()
    report = problem(doctor(disk.path), "data directory")
    assert "No space left on device" in report


def test_an_unreachable_postgres_is_reported(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/liveop"
    report = problem(doctor(tmp_path / "data", LIVEOP_DATABASE_URL=url), "store")
    assert "cannot read the database" in report and "LIVEOP_DATABASE_URL" in report


async def test_postgres_without_migrations_is_reported_until_migrated(
    tmp_path: Path, postgres_url: str
) -> None:
    data = tmp_path / "data"
    report = problem(doctor(data, LIVEOP_DATABASE_URL=postgres_url), "migrations")
    assert "not applied yet" in report and "liveop migrate" in report
    migrate(data, LIVEOP_DATABASE_URL=postgres_url)
    assert doctor(data, LIVEOP_DATABASE_URL=postgres_url).returncode == 0


async def test_a_wrong_postgres_password_is_reported(tmp_path: Path, postgres_url: str) -> None:
    parts = urlsplit(postgres_url)
    wrong = urlunsplit(parts._replace(netloc=f"nobody:wrong@{parts.hostname}:{parts.port}"))
    report = problem(doctor(tmp_path / "data", LIVEOP_DATABASE_URL=wrong), "store")
    assert "nobody" in report


async def test_an_unreachable_redis_is_reported(tmp_path: Path, redis_server: RedisServer) -> None:
    data = tmp_path / "data"
    migrate(data)
    assert doctor(data, LIVEOP_BROKER_URL=redis_server.url).returncode == 0
    redis_server.stop()
    report = problem(doctor(data, LIVEOP_BROKER_URL=redis_server.url), "broker")
    assert "Redis does not answer" in report and "LIVEOP_BROKER_URL" in report


def test_smtp_credentials_are_tested_without_sending(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    with smtp_server(auth=True) as smtp:
        sender = {"LIVEOP_EMAIL_FROM": "Acme <support@acme.test>"}
        url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{smtp.port}"
        done = doctor(data, LIVEOP_SMTP_URL=url, **sender)
        assert done.returncode == 0, done.stdout
        assert "ok      email" in done.stdout
        wrong = f"smtp://{SMTP_USER}:nope@127.0.0.1:{smtp.port}"
        report = problem(doctor(data, LIVEOP_SMTP_URL=wrong, **sender), "email")
        assert "refused the login" in report and "LIVEOP_SMTP_URL" in report
        assert smtp.mailbox.messages() == []
    gone = f"smtp://127.0.0.1:{free_port()}"
    report = problem(doctor(data, LIVEOP_SMTP_URL=gone, **sender), "email")
    assert "cannot reach the SMTP server" in report


def test_sms_credentials_are_tested_without_sending(tmp_path: Path) -> None:
    data = tmp_path / "data"
    migrate(data)
    with sms_server() as sms:
        env = {
            "LIVEOP_SMS_URL": sms.base, "LIVEOP_SMS_ACCOUNT_SID": SMS_SID,
            "LIVEOP_SMS_AUTH_TOKEN": SMS_TOKEN, "LIVEOP_SMS_FROM": SMS_FROM,
        }  # fmt: skip
        done = doctor(data, **env)
        assert done.returncode == 0, done.stdout
        assert "ok      sms" in done.stdout
        report = problem(doctor(data, **{**env, "LIVEOP_SMS_AUTH_TOKEN": "wrong"}), "sms")
        assert "refused the credentials" in report
        assert sms.twilio.received == []
    report = problem(doctor(data, **env), "sms")
    assert "cannot reach the SMS provider" in report


def test_every_problem_is_reported_in_one_run(tmp_path: Path) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/liveop"
    broker = f"redis://127.0.0.1:{free_port()}/0"
    done = doctor(tmp_path / "data", LIVEOP_DATABASE_URL=url, LIVEOP_BROKER_URL=broker)
    problem(done, "store")
    problem(done, "broker")
    assert "ok      data directory" in done.stdout


def test_a_disk_nearly_full_is_reported_before_writes_fail(disk: Disk) -> None:
    migrate(disk.path)  # the disk takes writes: only its size is wrong
    report = problem(doctor(disk.path), "data directory")
    assert "MiB free" in report and "keep at least 512 MiB" in report
