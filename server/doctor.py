"""``liveop doctor``: checks an installation before (or while) it serves, and says how to fix
what is wrong. It applies no migration and sends no message, email or push.

Checks, in order: the configuration (every ``LIVEOP_*`` setting), the data directory (it takes
a write, and has room), the store (it connects, and its migrations match this version), the
broker (it answers), and each outbound channel whose credentials can be tested without sending
(SMTP: connect and log in; SMS: read the account the credentials belong to).
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import aiosmtplib
import httpx

from server.adapters.email import parse_smtp_url
from server.adapters.sms import API_VERSION
from server.readiness import data_dir_problem
from server.settings import Settings, SettingsError, load_settings
from storage.migrations import load_migrations

# Every network check gives up after this long: a doctor that hangs tells nothing.
TIMEOUT_S = 5.0
# Below this much free space the store and uploads are close to failing writes (a day of a
# busy install's messages and images); the fix is the operator's, before it happens.
MIN_FREE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Finding:
    check: str
    # What is wrong, or None when the check passed.
    problem: str | None
    # How to fix the problem; for a passed check, what was found.
    advice: str


def _ok(check: str, found: str) -> Finding:
    return Finding(check, None, found)


def configuration(environ: Mapping[str, str]) -> tuple[Settings | None, Finding]:
    try:
        settings = load_settings(environ)
    except SettingsError as exc:
        return None, Finding(
            "configuration", str(exc), "correct that variable (docs/deploy.md lists them all)"
        )
    return settings, _ok("configuration", "every LIVEOP_* setting is valid")


def data_directory(data_dir: Path) -> Finding:
    problem = data_dir_problem(data_dir)
    if problem is not None:
        return Finding(
            "data directory", problem,
            "give the server's user write access to it, free space, or point LIVEOP_DATA_DIR "
            "at a writable directory",
        )  # fmt: skip
    free = shutil.disk_usage(data_dir).free
    if free < MIN_FREE_BYTES:
        return Finding(
            "data directory",
            f"only {free // 2**20} MiB free on the disk holding {data_dir}",
            f"free space or move LIVEOP_DATA_DIR: keep at least {MIN_FREE_BYTES // 2**20} MiB",
        )
    return _ok("data directory", f"{data_dir} is writable, {free // 2**20} MiB free")


def _sqlite_versions(path: Path) -> set[int] | None:
    """The applied migrations; None when the database file does not exist yet."""
    if not path.exists():
        return None
    # Read-only: the doctor never creates or changes the database.
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=TIMEOUT_S) as conn:
        try:
            return {row[0] for row in conn.execute("SELECT version FROM schema_migrations")}
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return set()
            raise


async def _postgres_versions(url: str) -> set[int]:
    import asyncpg

    conn = await asyncpg.connect(url, timeout=TIMEOUT_S)
    try:
        rows = await conn.fetch("SELECT version FROM schema_migrations")
    except asyncpg.UndefinedTableError:
        return set()
    finally:
        await conn.close()
    return {row[0] for row in rows}


async def store(url: str) -> Finding:
    scheme = urlsplit(url).scheme
    dialect = "sqlite" if scheme == "sqlite" else "postgres"
    try:
        if dialect == "sqlite":
            path = Path(url[len("sqlite://") :].removeprefix("/"))
            applied = await asyncio.to_thread(_sqlite_versions, path)
            if applied is None:
                return Finding(
                    "store", f"the database {path} does not exist yet",
                    "run `liveop migrate` (or start the server once) to create it",
                )  # fmt: skip
        else:
            applied = await asyncio.wait_for(_postgres_versions(url), TIMEOUT_S)
    except Exception as exc:
        return Finding(
            "store", f"cannot read the database: {type(exc).__name__}: {exc}",
            "check LIVEOP_DATABASE_URL (host, port, user, password, database) and that the "
            "database server runs and accepts this host",
        )  # fmt: skip
    known = {version for version, _ in load_migrations(dialect)}
    if applied - known:
        return Finding(
            "migrations",
            f"the database has migrations this version does not know: {sorted(applied - known)}",
            "a newer version migrated it: run that version, or restore a backup taken before",
        )
    if known - applied:
        return Finding(
            "migrations", f"migrations not applied yet: {sorted(known - applied)}",
            "run `liveop migrate` (the server also applies them when it starts)",
        )  # fmt: skip
    return _ok("store", f"{dialect} answers; all {len(known)} migrations applied")


async def broker(url: str) -> Finding:
    if urlsplit(url).scheme == "memory":
        return _ok("broker", "in-process (memory://): one server process only")
    from redis.asyncio import Redis

    client = Redis.from_url(url, socket_connect_timeout=TIMEOUT_S, socket_timeout=TIMEOUT_S)
    try:
        await client.ping()
    except Exception as exc:
        return Finding(
            "broker", f"Redis does not answer: {type(exc).__name__}: {exc}",
            "check LIVEOP_BROKER_URL and that Redis runs and accepts this host",
        )  # fmt: skip
    finally:
        await client.aclose()
    return _ok("broker", "Redis answers")


async def email(settings: Settings) -> Finding | None:
    if not settings.smtp_url:
        return None
    server = parse_smtp_url(settings.smtp_url)
    smtp = aiosmtplib.SMTP(
        hostname=server.host, port=server.port, use_tls=server.implicit_tls,
        start_tls=server.starttls, timeout=TIMEOUT_S,
    )  # fmt: skip
    try:
        await smtp.connect()
        if server.username is not None:
            await smtp.login(server.username, server.password or "")
        await smtp.quit()
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Finding(
            "email", f"the SMTP server refused the login: {exc.code} {exc.message}",
            "correct the user and password in LIVEOP_SMTP_URL",
        )  # fmt: skip
    except (aiosmtplib.SMTPException, OSError) as exc:
        return Finding(
            "email", f"cannot reach the SMTP server {server.host}:{server.port}: {exc}",
            "check LIVEOP_SMTP_URL's host, port and TLS (smtps:// or ?starttls=1)",
        )  # fmt: skip
    finally:
        smtp.close()
    return _ok("email", f"SMTP {server.host}:{server.port} accepts the connection and login")


async def sms(settings: Settings) -> Finding | None:
    if not (settings.sms_account_sid and settings.sms_auth_token):
        return None
    # Reading the account sends nothing and answers 401 to wrong credentials.
    url = (
        f"{settings.sms_url.rstrip('/')}/{API_VERSION}/Accounts/"
        f"{quote(settings.sms_account_sid, safe='')}.json"
    )
    auth = (settings.sms_account_sid, settings.sms_auth_token)
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            response = await client.get(url, auth=auth)
    except httpx.HTTPError as exc:
        return Finding(
            "sms", f"cannot reach the SMS provider: {type(exc).__name__}: {exc}",
            "check LIVEOP_SMS_URL and this host's outbound access",
        )  # fmt: skip
    if response.status_code in (401, 403, 404):
        return Finding(
            "sms", f"the SMS provider refused the credentials (HTTP {response.status_code})",
            "correct LIVEOP_SMS_ACCOUNT_SID and LIVEOP_SMS_AUTH_TOKEN",
        )  # fmt: skip
    if not response.is_success:
        return Finding(
            "sms", f"the SMS provider answered HTTP {response.status_code}",
            "try again later; if it persists, check the provider's status page",
        )  # fmt: skip
    return _ok("sms", "the SMS provider accepts the credentials")


async def diagnose(settings: Settings) -> list[Finding]:
    checks: list[Callable[[], Awaitable[Finding | None]]] = [
        lambda: asyncio.to_thread(data_directory, settings.data_dir),
        lambda: store(settings.database_url),
        lambda: broker(settings.broker_url),
        lambda: email(settings),
        lambda: sms(settings),
    ]
    found = await asyncio.gather(*(check() for check in checks))
    return [finding for finding in found if finding is not None]


def report(findings: list[Finding]) -> str:
    lines = []
    for finding in findings:
        if finding.problem is None:
            lines.append(f"ok      {finding.check}: {finding.advice}")
        else:
            lines.append(f"PROBLEM {finding.check}: {finding.problem}")
            lines.append(f"        fix: {finding.advice}")
    return "\n".join(lines) + "\n"


def doctor(environ: Mapping[str, str]) -> tuple[str, bool]:
    """The report, and whether everything passed."""
    settings, configured = configuration(environ)
    findings = [configured]
    if settings is not None:
        findings.extend(asyncio.run(diagnose(settings)))
    return report(findings), all(finding.problem is None for finding in findings)
