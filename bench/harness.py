"""What every benchmark here shares: loopback ports, CPU pinning, server processes, throwaway
PostgreSQL databases, accounts made with the ``liveop`` CLI, process and machine statistics from
/proc, and the provenance of a recorded run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "benchmarks.md"
HOST = "127.0.0.1"
# With two cores, the server and the load generator each get one; left to the scheduler they
# would trade places and the numbers would measure migrations as much as the server.
SERVER_CPU = 0
CLIENT_CPU = 1
READY_TIMEOUT_S = 20.0
READY_POLL_S = 0.1
CLI_TIMEOUT_S = 60.0
# A server holding thousands of sockets closes them during a graceful shutdown (5 s in
# server/cli.py); past this it is killed.
STOP_TIMEOUT_S = 10.0
# /proc/PID/stat counts CPU time in clock ticks.
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# A server where benchmarks may create and drop databases (the tests' default, and variable).
POSTGRES_ADMIN_URL = os.environ.get(
    "LIVEOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
POSTGRES_CONNECT_TIMEOUT_S = 5.0


@dataclass(frozen=True, slots=True)
class Account:
    """An account and one operator of it, made with the CLI before the server starts."""

    account_id: str
    api_key: str
    operator_id: int
    email: str
    password: str


def free_ports(count: int) -> list[int]:
    # All sockets stay bound until every port is known, so the kernel cannot hand one out twice.
    with contextlib.ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in socks:
            sock.bind((HOST, 0))
        return [int(sock.getsockname()[1]) for sock in socks]


def can_pin() -> bool:
    return {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)


def pinned(cpu: int) -> list[str]:
    """The command prefix that runs a program on ``cpu`` alone, or nothing where we cannot."""
    if shutil.which("taskset") and can_pin():
        return ["taskset", "-c", str(cpu)]
    return []


def pin_self(cpu: int | None) -> None:
    if cpu is not None and can_pin():
        os.sched_setaffinity(0, {cpu})


def placement(servers: int) -> tuple[list[int | None], int | None]:
    """The CPU of each server process and of the load generator (None: not pinned).

    One server gets CPU 0 and the load generator CPU 1. Several servers get one CPU each, in
    turn, and the load generator is left to the scheduler: with two cores there is no core
    left to give it, so it competes with the servers (as PostgreSQL and Redis always do)."""
    if not can_pin():
        return [None] * servers, None
    if servers == 1:
        return [SERVER_CPU], CLIENT_CPU
    cpus = sorted(os.sched_getaffinity(0))
    return [cpus[k % len(cpus)] for k in range(servers)], None


def raise_open_files_limit() -> int:
    """Lifts this process's soft RLIMIT_NOFILE to the hard limit (often 1024 by default, too
    few for thousands of sockets) and returns it."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def run_cli(args: Sequence[str], env: dict[str, str]) -> Any:
    done = subprocess.run(
        [sys.executable, "-m", "server", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    )
    return json.loads(done.stdout)


def create_account(env: dict[str, str], name: str, email: str, password: str) -> Account:
    """An account and an operator in the data directory ``env`` names, made the way an
    administrator would: ``liveop account create`` and ``liveop operator create``."""
    account = run_cli(["account", "create", "--name", name], env)
    operator = run_cli(
        [
            "operator",
            "create",
            "--account",
            account["accountID"],
            "--name",
            f"{name} operator",
            "--email",
            email,
            "--password",
            password,
        ],
        env,
    )
    return Account(account["accountID"], account["apiKey"], operator["operatorID"], email, password)


@contextlib.contextmanager
def server(
    command: Sequence[str],
    env: dict[str, str],
    ready_url: str,
    log: Path,
    cpu: int | None = SERVER_CPU,
) -> Iterator[subprocess.Popen[bytes]]:
    """A server process pinned to ``cpu`` (None: not pinned), ready when ``ready_url`` answers
    200, stopped on exit whatever happens.

    Its stdout (the access log) is discarded: a pipe nobody reads would fill and stall it."""
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            [*(pinned(cpu) if cpu is not None else []), *command],
            env=env,
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
    try:
        wait_ready(proc, ready_url, log)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log.read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=READY_POLL_S * 10).status_code == 200:
                return
        time.sleep(READY_POLL_S)
    raise RuntimeError(f"server not ready at {url} after {READY_TIMEOUT_S} s:\n{log.read_text()}")


def rss_kib(pid: int) -> int:
    """Resident memory of a process, as the kernel counts it (VmRSS, in KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, all its threads included."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # The command name (field 2) may contain spaces; the fields after it are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    # utime and stime are fields 14 and 15 of stat, so 11 and 12 after the name.
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def cpu_seconds_by_name(name: str, suffix: str | None = None) -> dict[int, float]:
    """CPU time of every process called ``name`` (``/proc/PID/comm``), by pid, whoever
    started them, so a shared service's other clients count too. With ``suffix``, only those
    with a command-line word ending in it (``:6379`` picks the Redis on that port, not the one
    on 63790)."""
    found: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        # A process may exit between the listing and the reads.
        with contextlib.suppress(OSError):
            if (entry / "comm").read_text().strip() != name:
                continue
            words = (entry / "cmdline").read_text().replace("\0", " ").split()
            if suffix is not None and not any(word.endswith(suffix) for word in words):
                continue
            found[int(entry.name)] = cpu_seconds(int(entry.name))
    return found


def cpu_seconds_since(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU time spent between two ``cpu_seconds_by_name`` readings: processes started in
    between count whole; those that exited in between are lost (their time is unknown)."""
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def machine_ticks() -> tuple[int, int]:
    """Busy and total clock ticks of all CPUs since boot (/proc/stat). Busy is user, nice,
    system, irq and softirq time; idle, iowait and steal (the hypervisor's) are not."""
    fields = [int(f) for f in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy, busy + idle + iowait + steal


@contextlib.contextmanager
def postgres_database(admin_url: str = POSTGRES_ADMIN_URL) -> Iterator[str]:
    """The URL of a fresh, empty database on ``admin_url``'s server, dropped on exit."""

    async def admin(statement: str) -> None:
        conn = await asyncpg.connect(admin_url, timeout=POSTGRES_CONNECT_TIMEOUT_S)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    name = f"liveop_bench_{secrets.token_hex(6)}"
    asyncio.run(admin(f"CREATE DATABASE {name}"))
    try:
        yield urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))
    finally:
        # FORCE ends the sessions of a server that could not be stopped cleanly.
        asyncio.run(admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))


def git_revision() -> str:
    sha = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=True,
    ).stdout.strip()
    # Untracked files do not count: they cannot change what HEAD's tracked code does.
    dirty = subprocess.run(["git", "diff", "--quiet", "HEAD"], cwd=REPO, timeout=CLI_TIMEOUT_S)
    return f"{sha} (with uncommitted changes)" if dirty.returncode else sha


def cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def machine() -> str:
    return (
        f"{len(os.sched_getaffinity(0))} CPUs (nproc), {cpu_model()}, "
        f"{platform.system()} {platform.release()}"
    )


def heading_level(line: str) -> int | None:
    """The level of a Markdown ATX heading (``## Results`` is 2), None for any other line."""
    marks = len(line) - len(line.lstrip("#"))
    return marks if 0 < marks <= 6 and line[marks : marks + 1] == " " else None


def record_section(doc: Path, heading: str, text: str) -> None:
    """Appends ``text`` at the end of the section under ``heading`` (the whole line), before
    the next heading of the same or a higher level; a missing heading is added at the end."""
    level = heading_level(heading)
    if level is None:
        raise ValueError(f"not a heading: {heading!r}")
    lines = doc.read_text(encoding="utf-8").splitlines()
    if heading not in lines:
        lines += ["", heading]
    start = lines.index(heading)
    end = len(lines)
    fenced = False
    for i in range(start + 1, len(lines)):
        if lines[i].startswith("```"):
            fenced = not fenced
        found = None if fenced else heading_level(lines[i])
        if found is not None and found <= level:
            end = i
            break
    before = "\n".join(lines[:end]).rstrip("\n")
    after = "\n".join(lines[end:])
    text = text.strip("\n")
    doc.write_text(f"{before}\n\n{text}\n" + (f"\n{after}\n" if after else ""), encoding="utf-8")
