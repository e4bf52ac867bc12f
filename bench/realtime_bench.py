"""Realtime capacity, throughput and latency of ``liveop serve``, beside a python-socketio
relay measured in the same session.

    python -m bench.realtime_bench [--visitors 2000] [--operators 100] [--broker URL] [--record]
        [--database sqlite|postgres] [--processes N]

One server runs alone on CPU 0 (bench/launcher.py: ``liveop serve``'s uvicorn settings); the
load comes from ``--workers`` client processes on CPU 1 (bench/realtime_clients.py), one account
each. With ``--processes N`` (and a Redis ``--broker``) N servers share the data, one per CPU in
turn, and the client processes are not pinned; each account's visitors, operator streams and
operator replies go to different servers, so every message crosses from one to another through
Redis. ``--database postgres`` runs on a fresh PostgreSQL database, dropped at the end.
Measurements:

- idle: visitor WebSockets and operator SSE streams held open; server RSS before and after,
  per connection; with per-message compression off (as shipped) and on;
- latency: visitors send at a fixed total rate while other visitors sit idle; the time from a
  visitor's send to its arrival on the operator stream, measured in the client process that
  holds both ends;
- throughput: closed-loop conversations (a visitor sends, the operator's stream delivers it, the
  operator replies with App Command ``sendmessage``, the visitor's socket delivers the reply, the
  visitor sends again), on the in-process broker (one server only) and, with ``--broker``,
  through Redis;
- socketio: the same idle and throughput runs against bench/socketio_relay.py (one server).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import multiprocessing
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from bench import realtime_clients as clients
from bench.harness import (
    CLIENT_CPU,
    DOC,
    HOST,
    POSTGRES_ADMIN_URL,
    Account,
    cpu_seconds,
    cpu_seconds_by_name,
    cpu_seconds_since,
    create_account,
    free_ports,
    git_revision,
    machine,
    machine_ticks,
    pinned,
    placement,
    postgres_database,
    raise_open_files_limit,
    record_section,
    rss_kib,
    server,
)
from bench.realtime_clients import (
    Census,
    ChatResult,
    CloseAll,
    Command,
    Failed,
    OpenOperators,
    OpenVisitors,
    PrepareChat,
    RunChat,
    Stop,
    TakeCensus,
    Target,
)

LIVEOP = (sys.executable, "-m", "bench.launcher")
RELAY = (sys.executable, "-m", "bench.socketio_relay")
PASSWORD = "bench-password-1"
PHASES = ("idle", "idle-deflate", "latency", "throughput", "socketio")
DATABASES = ("sqlite", "postgres")
RESULTS_HEADING = "## Realtime results"
# Targets from the issue tracker.
TARGET_KIB_PER_SOCKET = 32.0
TARGET_EMBEDDED_MSG_S = 2500.0
TARGET_REDIS_MSG_S = 1500.0
TARGET_P50_MS = 2.0
TARGET_P99_MS = 10.0
TARGET_MAX_MS = 50.0
# The first connections of a server pay one-time costs (imports, caches, pool threads, the
# allocator's first arenas): the per-connection figure is taken over the connections opened
# after this fraction was already open.
WARM_FRACTION = 0.05
# After opening connections, how long to wait before reading RSS: every handshake has been
# answered by then, but the server may still be finishing replays and freeing buffers.
SETTLE_S = 2.0
# Between sending a run to the client processes and the start of its warm-up.
LEAD_S = 1.0
# How long to wait for client processes past the work's own bound (handshakes queue up).
CALL_GRACE_S = 120.0
GC_STATS_TIMEOUT_S = 5.0
# Under this share of its core busy, a side is not what limits a run.
SATURATED = 0.9
PROFILE_RATE_HZ = 100
PROFILE_TOP = 25
# Frames under every sample of a thread: how the interpreter, the launcher and uvicorn's event
# loop or a pool thread got started. Counted, they would top every list.
TRUNK_FILES = (
    "<frozen runpy>",
    "bench/launcher.py",
    "bench/socketio_relay.py",
    "uvicorn/main.py",
    "uvicorn/server.py",
    "uvicorn/_compat.py",
    "asyncio/runners.py",
    "threading.py",
)

T = TypeVar("T")
Result = Census | ChatResult


class Pool:
    """The client processes, each driven over its own pipe; every call is bounded in time."""

    def __init__(self, count: int, cpu: int | None) -> None:
        context = multiprocessing.get_context("spawn")
        self._conns: list[Connection] = []
        self.processes: list[multiprocessing.process.BaseProcess] = []
        for _ in range(count):
            ours, theirs = context.Pipe()
            process = context.Process(target=clients.main, args=(theirs, cpu), daemon=True)
            process.start()
            theirs.close()
            self._conns.append(ours)
            self.processes.append(process)

    def __len__(self) -> int:
        return len(self._conns)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.processes if p.pid is not None]

    def send(self, commands: Sequence[Command]) -> None:
        for conn, command in zip(self._conns, commands, strict=True):
            conn.send(command)

    def collect(self, timeout_s: float) -> list[Result]:
        deadline = time.monotonic() + timeout_s
        results: list[Result] = []
        for conn in self._conns:
            if not conn.poll(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"a client process did not answer within {timeout_s:.0f} s")
            result = conn.recv()
            if isinstance(result, Failed):
                raise RuntimeError(f"a client process failed:\n{result.error}")
            results.append(result)
        return results

    def call(self, commands: Sequence[Command], timeout_s: float) -> list[Result]:
        self.send(commands)
        return self.collect(timeout_s)

    def census(self, commands: Sequence[Command], timeout_s: float = CALL_GRACE_S) -> Census:
        return merge(only(Census, self.call(commands, timeout_s)))

    def close(self) -> None:
        for conn in self._conns:
            with contextlib.suppress(OSError):
                conn.send(Stop())
        for process in self.processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()


def only(kind: type[T], results: Sequence[Result]) -> list[T]:
    picked: list[T] = [r for r in results if isinstance(r, kind)]
    if len(picked) != len(results):
        raise RuntimeError(f"expected {kind.__name__} from every client process: {results}")
    return picked


def merge(censuses: Sequence[Census]) -> Census:
    return Census(
        visitors=sum(c.visitors for c in censuses),
        operators=sum(c.operators for c in censuses),
        lost=sum(c.lost for c in censuses),
        errors=sum(c.errors for c in censuses),
        opened_s=max((c.opened_s for c in censuses), default=0.0),
        lost_why=dict(sum((Counter(c.lost_why) for c in censuses), Counter[str]())),
    )


def shares(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` as evenly as whole numbers allow."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(samples: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of sorted ``samples``; NaN when there are none."""
    if not samples:
        return float("nan")
    return samples[min(len(samples) - 1, max(0, round(q / 100 * len(samples)) - 1))]


@dataclass(frozen=True, slots=True)
class GcStats:
    count: int
    total_ms: float
    max_ms: float
    max_generation: int


def merge_gc(stats: Sequence[GcStats]) -> GcStats:
    """Several servers' GC pauses as one: the counts added up, the longest pause kept."""
    longest = max(stats, key=lambda s: s.max_ms)
    return GcStats(
        count=sum(s.count for s in stats),
        total_ms=sum(s.total_ms for s in stats),
        max_ms=longest.max_ms,
        max_generation=longest.max_generation,
    )


@dataclass(frozen=True, slots=True)
class IdleRun:
    server: str
    deflate: bool
    visitors: int
    operators: int
    rss_before_kib: int
    rss_after_kib: int
    kib_per_visitor: float
    kib_per_operator: float
    open_s: float
    census: Census
    gc: GcStats


@dataclass(frozen=True, slots=True)
class ChatRun:
    server: str
    broker: str
    database: str
    processes: int
    clients_pinned: bool
    active: int
    idle: int
    rate_per_s: float | None
    duration_s: float
    deliveries: int
    sent: int
    undelivered: int
    census: Census
    server_cpu_s: float  # all server processes
    client_cpu_s: float
    # Busy share of all the machine's CPUs: the servers, the clients, PostgreSQL, Redis and
    # whatever else ran.
    machine_busy: float
    # Every process of the PostgreSQL server, and of the Redis server on the broker's port,
    # whoever they worked for; None where the run did not use it.
    postgres_cpu_s: float | None
    redis_cpu_s: float | None
    to_operator_ms: list[float]
    to_visitor_ms: list[float]
    max_send_lag_ms: float
    gc: GcStats

    @property
    def per_s(self) -> float:
        return self.deliveries / self.duration_s

    @property
    def per_cpu_s(self) -> float:
        return self.deliveries / self.server_cpu_s if self.server_cpu_s else float("nan")

    @property
    def server_busy(self) -> float:
        """Server CPU time per second: 1.0 is one core's worth, whatever the processes."""
        return self.server_cpu_s / self.duration_s

    @property
    def client_busy(self) -> float:
        return self.client_cpu_s / self.duration_s

    def per_delivery_us(self, cpu_s: float | None) -> float | None:
        """Microseconds of ``cpu_s`` per delivered message."""
        if cpu_s is None or not self.deliveries:
            return None
        return cpu_s / self.deliveries * 1e6

    def limited_by(self) -> str:
        if self.server_busy / self.processes >= SATURATED:
            return "server CPU"
        if self.clients_pinned and self.client_busy >= SATURATED:
            return "load generator CPU"
        if self.machine_busy >= SATURATED:
            return "all CPUs (servers, clients, PostgreSQL and Redis share them)"
        if self.census.lost:
            # A conversation whose socket or stream closed stops taking part in the loop.
            return "connections the server closed"
        if self.rate_per_s is not None:
            return "offered rate"
        return "round trips, with neither core saturated (raise --active)"


@dataclass(frozen=True, slots=True)
class Options:
    database: str
    postgres_admin: str
    processes: int
    workers: int
    visitors: int
    operators: int
    latency_idle: int
    latency_rate: float
    latency_active: int
    active: int
    duration_s: float
    warmup_s: float
    broker: str | None
    phases: tuple[str, ...]
    profile: Path | None
    workdir: Path | None


@dataclass
class Report:
    idle: list[IdleRun]
    chats: list[ChatRun]
    latency: ChatRun | None


@dataclass(frozen=True, slots=True)
class Usage:
    """CPU time used so far: by the servers, the client processes, the whole machine (busy and
    total clock ticks), and by PostgreSQL's and Redis's processes (by pid) where a run uses
    them."""

    servers_s: float
    clients_s: float
    machine_busy: int
    machine_total: int
    postgres: dict[int, float] | None
    redis: dict[int, float] | None


def since(before: dict[int, float] | None, after: dict[int, float] | None) -> float | None:
    return None if before is None or after is None else cpu_seconds_since(before, after)


class Session:
    """One run of the benchmark: a data directory (with the SQLite file, or beside a fresh
    PostgreSQL database), accounts, client processes, and servers started on it one run at a
    time."""

    def __init__(
        self,
        workdir: Path,
        pool: Pool,
        options: Options,
        database_url: str | None,
        server_cpus: Sequence[int | None],
        clients_pinned: bool,
    ) -> None:
        self.workdir = workdir
        self.pool = pool
        self.options = options
        self.server_cpus = list(server_cpus)
        self.clients_pinned = clients_pinned
        # The bench drives one visitor far past the per-conversation limit on purpose.
        self.env = {
            **os.environ,
            "LIVEOP_DATA_DIR": str(workdir / "data"),
            "LIVEOP_RATE_LIMITS": "0",
        }
        if database_url is not None:
            self.env["LIVEOP_DATABASE_URL"] = database_url
        self.ports = free_ports(options.processes)
        self.base_urls = [f"http://{HOST}:{port}" for port in self.ports]
        # Runs that do not compare brokers: several servers can only share events through Redis.
        self.broker = options.broker if options.processes > 1 else None
        self.accounts: list[Account] = []
        self.tokens: list[str] = []
        self.idle_tokens: list[tuple[str, ...]] = []
        # Per client process, conversations created before any measurement: (id, last seq).
        self.conversations: list[list[tuple[str, int]]] = []

    def label(self, broker: str | None, *details: str) -> str:
        """``liveop`` and what sets the run apart from the embedded default."""
        parts = ["liveop", *details]
        if self.options.database == "postgres":
            parts.append("PostgreSQL")
        if broker is not None:
            parts.append("Redis")
        if self.options.processes > 1:
            parts.append(f"{self.options.processes} processes")
        return ", ".join(parts)

    def gc_path(self, k: int) -> Path:
        return self.workdir / f"gc-{k}.json"

    @contextlib.contextmanager
    def servers(
        self,
        label: str,
        kind: clients.Kind,
        *,
        deflate: bool = False,
        broker: str | None = None,
        count: int | None = None,
    ) -> Iterator[list[subprocess.Popen[bytes]]]:
        """``count`` servers (all of --processes by default; the relay is always one), on a
        flushed Redis database when ``broker`` names one."""
        if count is None:
            count = 1 if kind == "socketio" else self.options.processes
        env = dict(self.env)
        if broker is not None:
            env["LIVEOP_BROKER_URL"] = broker
            flush_redis(broker)
        print(f"{label}: starting {count} server process(es)", file=sys.stderr, flush=True)
        try:
            with contextlib.ExitStack() as stack:
                procs: list[subprocess.Popen[bytes]] = []
                for k in range(count):
                    command = [
                        *(LIVEOP if kind == "liveop" else RELAY),
                        "--port",
                        str(self.ports[k]),
                    ]
                    command += ["--gc-stats", str(self.gc_path(k))]
                    if deflate:
                        command.append("--deflate")
                    log = self.workdir / f"{label.replace(', ', '-').replace(' ', '-')}-{k}.log"
                    ready = f"{self.base_urls[k]}/healthz"
                    procs.append(
                        stack.enter_context(server(command, env, ready, log, self.server_cpus[k]))
                    )
                yield procs
        finally:
            if broker is not None:
                flush_redis(broker)

    def targets(self, kind: clients.Kind, across: int | None = None) -> list[Target]:
        """One per client process. Over ``across`` servers (by default all of them), client
        process i puts its visitors on server i, its operator streams on server i + 1 and its
        replies on server i - 1 (modulo the count): with two servers a visitor's message and
        the operator's reply each cross from one server to the other; with three, all three
        parts of a conversation are on different servers."""
        if kind == "socketio":
            relay = self.base_urls[0]
            return [
                Target(kind, relay, f"acct{i}", "", 0, "", relay, relay)
                for i in range(len(self.pool))
            ]
        count = across or self.options.processes

        def url(i: int) -> str:
            return self.base_urls[i % count]

        return [
            Target(
                kind,
                url(i),
                a.account_id,
                a.api_key,
                a.operator_id,
                token,
                url(i + 1),
                url(i - 1),
                idle,
            )
            for i, (a, token, idle) in enumerate(
                zip(self.accounts, self.tokens, self.idle_tokens, strict=True)
            )
        ]

    def prepare(self, count: int) -> None:
        """Accounts (one per client process), operator tokens, and ``count`` conversations
        spread over the accounts, made once on one server and reused by every run."""
        self.accounts = [
            create_account(self.env, f"Bench {i}", f"op{i}@bench.test", PASSWORD)
            for i in range(len(self.pool))
        ]
        with self.servers("setup", "liveop", count=1):
            self.tokens = [
                asyncio.run(clients.login(self.base_urls[0], a.email, PASSWORD))
                for a in self.accounts
            ]
            self.idle_tokens = [()] * len(self.accounts)
            if {"idle", "idle-deflate"} & set(self.options.phases):
                self.idle_tokens = [
                    asyncio.run(clients.create_operators(target, n, PASSWORD))
                    for target, n in zip(
                        self.targets("liveop", across=1),
                        shares(self.options.operators, len(self.pool)),
                        strict=True,
                    )
                ]
            started = time.monotonic()
            self.conversations = [
                asyncio.run(clients.create_conversations(target, n))
                for target, n in zip(
                    self.targets("liveop", across=1), shares(count, len(self.pool)), strict=True
                )
            ]
        print(
            f"setup: {count:,} conversations in {time.monotonic() - started:.1f} s",
            file=sys.stderr,
            flush=True,
        )

    def visitor_commands(
        self, kind: clients.Kind, counts: Sequence[int], skip: Sequence[int] | None = None
    ) -> list[Command]:
        """Per process, OpenVisitors for ``counts[i]`` of its conversations after the first
        ``skip[i]``. The relay stores nothing: its visitors join fresh rooms of the same names."""
        skip = skip or [0] * len(counts)
        commands: list[Command] = []
        for target, mine, first, n in zip(
            self.targets(kind), self.conversations, skip, counts, strict=True
        ):
            picked = mine[first : first + n]
            if len(picked) < n:
                raise RuntimeError(f"only {len(mine)} conversations were prepared for {n}")
            if kind == "socketio":
                picked = [(convo_id, 0) for convo_id, _ in picked]
            commands.append(OpenVisitors(target, tuple(picked)))
        return commands

    def gc_stats(self, procs: Sequence[subprocess.Popen[bytes]]) -> GcStats:
        """The servers' GC pauses since the previous call (bench/launcher.py, on SIGUSR1)."""
        for k, proc in enumerate(procs):
            self.gc_path(k).unlink(missing_ok=True)
            os.kill(proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + GC_STATS_TIMEOUT_S
        stats: list[GcStats] = []
        for k in range(len(procs)):
            while not self.gc_path(k).exists():
                if time.monotonic() > deadline:
                    raise TimeoutError("a server did not write its GC statistics")
                time.sleep(0.02)
            found = json.loads(self.gc_path(k).read_text())
            stats.append(
                GcStats(
                    int(found["count"]),
                    float(found["total_ms"]),
                    float(found["max_ms"]),
                    int(found["max_generation"]),
                )
            )
        return merge_gc(stats)

    def idle(self, label: str, kind: clients.Kind, *, deflate: bool) -> IdleRun:
        visitors, operators = self.options.visitors, self.options.operators
        workers = len(self.pool)
        warm_visitors, rest_visitors = warm_and_rest(visitors, workers)
        warm_operators, rest_operators = warm_and_rest(operators, workers)
        targets = self.targets(kind)

        def operators_command(counts: Sequence[int]) -> list[Command]:
            return [OpenOperators(t, n) for t, n in zip(targets, counts, strict=True)]

        broker = None if kind == "socketio" else self.broker
        with self.servers(label, kind, deflate=deflate, broker=broker) as procs:
            pids = [p.pid for p in procs]
            self.gc_stats(procs)
            self.pool.census(self.visitor_commands(kind, warm_visitors))
            rss_start = settled_rss(pids)
            opened = self.pool.census(self.visitor_commands(kind, rest_visitors, warm_visitors))
            rss_visitors = settled_rss(pids)
            self.pool.census(operators_command(warm_operators))
            rss_operators_start = settled_rss(pids)
            self.pool.census(operators_command(rest_operators))
            rss_end = settled_rss(pids)
            census = self.pool.census([TakeCensus()] * workers)
            gc = self.gc_stats(procs)
            self.pool.census([CloseAll()] * workers)
        run = IdleRun(
            server=label,
            deflate=deflate,
            visitors=census.visitors,
            operators=census.operators,
            rss_before_kib=rss_start,
            rss_after_kib=rss_end,
            kib_per_visitor=(rss_visitors - rss_start) / max(1, sum(rest_visitors)),
            kib_per_operator=(rss_end - rss_operators_start) / max(1, sum(rest_operators)),
            open_s=opened.opened_s,
            census=replace(census, opened_s=opened.opened_s),
            gc=gc,
        )
        progress(
            f"{label}: {run.kib_per_visitor:.1f} KiB per visitor socket, "
            f"{run.kib_per_operator:.1f} KiB per operator connection",
            run.census,
        )
        return run

    def chat(
        self,
        label: str,
        kind: clients.Kind,
        *,
        active: int,
        rate_per_s: float | None,
        idle: int = 0,
        broker: str | None = None,
    ) -> ChatRun:
        workers = len(self.pool)
        duration, warmup = self.options.duration_s, self.options.warmup_s
        targets = self.targets(kind)
        with self.servers(label, kind, broker=broker) as procs:
            if idle:
                self.pool.census(self.visitor_commands(kind, shares(idle, workers)))
            self.pool.census(
                [PrepareChat(t, n) for t, n in zip(targets, shares(active, workers), strict=True)]
            )
            start_at = time.time() + LEAD_S + warmup
            end_at = start_at + duration
            share = None if rate_per_s is None else rate_per_s / workers
            self.pool.send([RunChat(start_at, end_at, warmup, share)] * workers)
            sleep_until(start_at)
            before = self.usage(procs, broker)
            self.gc_stats(procs)
            with self.profiling(label, procs[0].pid, duration):
                sleep_until(end_at)
                after = self.usage(procs, broker)
                gc = self.gc_stats(procs)
            results = only(ChatResult, self.pool.collect(clients.DRAIN_S + CALL_GRACE_S))
            self.pool.census([CloseAll()] * workers)
        run = ChatRun(
            server=label,
            broker=broker or ("none" if kind == "socketio" else "memory"),
            database="none" if kind == "socketio" else self.options.database,
            processes=len(procs),
            clients_pinned=self.clients_pinned,
            active=active,
            idle=idle,
            rate_per_s=rate_per_s,
            duration_s=duration,
            deliveries=sum(r.deliveries for r in results),
            sent=sum(r.sent for r in results),
            undelivered=sum(r.undelivered for r in results),
            census=merge([r.census for r in results]),
            server_cpu_s=after.servers_s - before.servers_s,
            client_cpu_s=after.clients_s - before.clients_s,
            machine_busy=(after.machine_busy - before.machine_busy)
            / max(1, after.machine_total - before.machine_total),
            postgres_cpu_s=since(before.postgres, after.postgres),
            redis_cpu_s=since(before.redis, after.redis),
            to_operator_ms=sorted(s * 1000 for r in results for s in r.to_operator_s),
            to_visitor_ms=sorted(s * 1000 for r in results for s in r.to_visitor_s),
            max_send_lag_ms=max(r.max_send_lag_s for r in results) * 1000,
            gc=gc,
        )
        p50, p99 = percentile(run.to_operator_ms, 50), percentile(run.to_operator_ms, 99)
        progress(
            f"{label}: {run.per_s:,.0f} delivered msg/s, server CPU {run.server_busy:.0%}, "
            f"client CPU {run.client_busy:.0%}, machine {run.machine_busy:.0%}, "
            f"to operator p50 {p50:.2f} ms p99 {p99:.2f} ms",
            run.census,
        )
        return run

    def usage(self, procs: Sequence[subprocess.Popen[bytes]], broker: str | None) -> Usage:
        busy, total = machine_ticks()
        postgres = None
        if self.options.database == "postgres":
            postgres = cpu_seconds_by_name("postgres")
        redis = None
        if broker is not None:
            redis = cpu_seconds_by_name("redis-server", f":{urlsplit(broker).port or 6379}")
        return Usage(
            servers_s=sum(cpu_seconds(p.pid) for p in procs),
            clients_s=sum(cpu_seconds(pid) for pid in self.pool.pids),
            machine_busy=busy,
            machine_total=total,
            postgres=postgres,
            redis=redis,
        )

    @contextlib.contextmanager
    def profiling(self, label: str, pid: int, duration_s: float) -> Iterator[None]:
        """With --profile, py-spy samples the server for the measured window."""
        directory = self.options.profile
        if directory is None:
            yield
            return
        directory.mkdir(parents=True, exist_ok=True)
        output = directory / f"{label.replace(' ', '-').replace(',', '')}.txt"
        spy = subprocess.Popen(
            [
                *pinned(CLIENT_CPU),
                str(Path(sys.executable).parent / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(max(1, int(duration_s))),
                "--rate",
                str(PROFILE_RATE_HZ),
                "--format",
                "raw",
                "--nonblocking",
                "--threads",
                "--output",
                str(output),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            yield
        finally:
            spy.wait(timeout=duration_s + CALL_GRACE_S)
        summary = profile_summary(output.read_text())
        (directory / f"{output.stem}-top.txt").write_text(summary)
        print(f"{label}: py-spy, top frames\n{summary}", file=sys.stderr, flush=True)


def profile_summary(collapsed: str) -> str:
    """What py-spy found, from its raw output (``--threads``: one collapsed stack per line,
    the thread first): each thread's share of the samples, then the functions seen most often,
    inclusive (anywhere on the stack) and self (the innermost frame), as shares of all samples.
    Line numbers are dropped so that a function counts once however many lines it spent on;
    the frames every request shares (the interpreter's start, uvicorn's loop) are left out."""
    threads: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        thread, *frames = stack.split(";")
        threads[thread.partition(": ")[2] or thread] += count
        names = [frame_name(f) for f in frames]
        for name in {n for f, n in zip(frames, names, strict=True) if not in_trunk(f)}:
            inclusive[name] += count
        own[names[-1] if names else thread] += count
    lines = [f"{total} samples", "threads:"]
    lines += [f"  {100 * n / total:5.1f} %  {name}" for name, n in threads.most_common()]
    for title, counter in (("inclusive", inclusive), ("self", own)):
        lines.append(f"{title}:")
        lines += [
            f"  {100 * n / total:5.1f} %  {name}" for name, n in counter.most_common(PROFILE_TOP)
        ]
    return "\n".join(lines) + "\n"


def frame_path(frame: str) -> str:
    """The file of a py-spy frame, ``function (path/to/file.py:123)``."""
    return frame.partition(" (")[2].rstrip(")").rsplit(":", 1)[0]


def frame_name(frame: str) -> str:
    """``function (path/to/file.py:123)`` -> ``function (to/file.py)``."""
    path = frame_path(frame)
    name = frame.partition(" (")[0]
    return f"{name} ({'/'.join(Path(path).parts[-2:])})" if path else frame


def in_trunk(frame: str) -> bool:
    return frame_path(frame).endswith(TRUNK_FILES)


def warm_and_rest(total: int, workers: int) -> tuple[list[int], list[int]]:
    """Per client process, how many connections to open before the first RSS reading (the
    warm-up share, at least one each) and how many after."""
    warm = shares(max(workers, round(total * WARM_FRACTION)), workers)
    return warm, [n - w for n, w in zip(shares(total, workers), warm, strict=True)]


def losses(census: Census) -> str:
    return "; ".join(f"{n}x {why}" for why, n in sorted(census.lost_why.items()))


def progress(text: str, census: Census) -> None:
    if census.lost:
        text += f" (lost connections: {losses(census)})"
    print(text, file=sys.stderr, flush=True)


def settled_rss(pids: Sequence[int]) -> int:
    """The servers' resident memory, added up, once they have settled."""
    time.sleep(SETTLE_S)
    return sum(rss_kib(pid) for pid in pids)


def sleep_until(wall_time: float) -> None:
    time.sleep(max(0.0, wall_time - time.time()))


def flush_redis(url: str) -> None:
    from redis import Redis

    with Redis.from_url(url) as client:
        client.flushdb()


@contextlib.contextmanager
def session(options: Options) -> Iterator[Session]:
    """A data directory (a temporary one unless --workdir), a fresh PostgreSQL database with
    --database postgres (dropped at the end), and the client processes, placed on the CPUs."""
    with contextlib.ExitStack() as stack:
        workdir = options.workdir
        if workdir is None:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="liveop-rt-")))
        elif workdir.exists():
            raise SystemExit(f"--workdir {workdir} exists: give a new directory")
        workdir.mkdir(parents=True, exist_ok=True)
        database_url = None
        if options.database == "postgres":
            database_url = stack.enter_context(postgres_database(options.postgres_admin))
        server_cpus, client_cpu = placement(options.processes)
        pool = stack.enter_context(contextlib.closing(Pool(options.workers, client_cpu)))
        yield Session(workdir, pool, options, database_url, server_cpus, client_cpu is not None)


def run(options: Options) -> Report:
    report = Report(idle=[], chats=[], latency=None)
    with session(options) as current:
        wanted = {"idle", "idle-deflate", "socketio"} & set(options.phases)
        needed = options.visitors if wanted else 0
        if "latency" in options.phases:
            needed = max(needed, options.latency_idle)
        current.prepare(needed)
        if "idle" in options.phases:
            report.idle.append(current.idle(current.label(current.broker), "liveop", deflate=False))
        if "idle-deflate" in options.phases:
            label = current.label(current.broker, "deflate")
            report.idle.append(current.idle(label, "liveop", deflate=True))
        if "latency" in options.phases:
            report.latency = current.chat(
                current.label(current.broker, "latency"),
                "liveop",
                active=options.latency_active,
                rate_per_s=options.latency_rate,
                idle=options.latency_idle,
                broker=current.broker,
            )
        if "throughput" in options.phases:
            # One server can run on its in-process broker; several need Redis.
            brokers: list[str | None] = [] if options.processes > 1 else [None]
            if options.broker is not None:
                brokers.append(options.broker)
            for broker in brokers:
                report.chats.append(
                    current.chat(
                        current.label(broker),
                        "liveop",
                        active=options.active,
                        rate_per_s=None,
                        broker=broker,
                    )
                )
        if "socketio" in options.phases:
            report.idle.append(current.idle("socket.io relay", "socketio", deflate=False))
            report.chats.append(
                current.chat("socket.io relay", "socketio", active=options.active, rate_per_s=None)
            )
    return report


def ms(value: float) -> str:
    return f"{value:.2f}"


def met(ok: bool) -> str:
    return "met" if ok else "**missed**"


def gc_text(gc: GcStats) -> str:
    return f"{gc.max_ms:.1f} ms (gen {gc.max_generation}, {gc.count} collections)"


def idle_table(runs: Sequence[IdleRun]) -> str:
    lines = [
        "| server | compression | idle visitor sockets | operator connections "
        "| server RSS before → after | KiB per visitor socket | KiB per operator connection "
        "| time to open the sockets | lost / failed | longest GC pause | target ≤ 32 KiB/socket |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    for r in runs:
        liveop = not r.server.startswith("socket.io")
        lines.append(
            f"| {r.server} | {'on' if r.deflate else 'off'} | {r.visitors:,} | {r.operators:,} "
            f"| {r.rss_before_kib / 1024:,.0f} → {r.rss_after_kib / 1024:,.0f} MiB "
            f"| {r.kib_per_visitor:.1f} | {r.kib_per_operator:.1f} | {r.open_s:.1f} s "
            f"| {r.census.lost} / {r.census.errors} | {gc_text(r.gc)} "
            f"| {met(r.kib_per_visitor <= TARGET_KIB_PER_SOCKET) if liveop else 'n/a'} |"
        )
    return "\n".join(lines)


def target_msg_s(run: ChatRun) -> float | None:
    """The issue tracker's throughput targets are for one process: embedded, or through Redis."""
    if run.processes != 1:
        return None
    if run.broker == "memory" and run.database == "sqlite":
        return TARGET_EMBEDDED_MSG_S
    return TARGET_REDIS_MSG_S if run.broker.startswith("redis") else None


def us(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.0f}"


def chat_table(runs: Sequence[ChatRun]) -> str:
    lines = [
        "| server | database | broker | processes | conversations | delivered msg/s "
        "| server CPU | client CPU | machine CPU | deliveries per server CPU-s "
        "| CPU µs per delivery: server / PostgreSQL / Redis | to operator p50 / p99 ms "
        "| to visitor p50 / p99 ms | undelivered / errors / lost | longest GC pause | limited by "
        "| target |",
        "|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|---|",
    ]
    for r in runs:
        target = target_msg_s(r)
        goal = "n/a" if target is None else f"≥ {target:,.0f}: {met(r.per_s >= target)}"
        lines.append(
            f"| {r.server} | {r.database} | {urlsplit(r.broker).scheme or r.broker} "
            f"| {r.processes} | {r.active:,} | {r.per_s:,.0f} | {r.server_busy:.0%} "
            f"| {r.client_busy:.0%} | {r.machine_busy:.0%} | {r.per_cpu_s:,.0f} "
            f"| {us(r.per_delivery_us(r.server_cpu_s))} "
            f"/ {us(r.per_delivery_us(r.postgres_cpu_s))} "
            f"/ {us(r.per_delivery_us(r.redis_cpu_s))} "
            f"| {ms(percentile(r.to_operator_ms, 50))} / {ms(percentile(r.to_operator_ms, 99))} "
            f"| {ms(percentile(r.to_visitor_ms, 50))} / {ms(percentile(r.to_visitor_ms, 99))} "
            f"| {r.undelivered} / {r.census.errors} / {r.census.lost} | {gc_text(r.gc)} "
            f"| {r.limited_by()} | {goal} |"
        )
    return "\n".join(lines)


def latency_table(r: ChatRun) -> str:
    samples = r.to_operator_ms
    p50, p99, worst = percentile(samples, 50), percentile(samples, 99), samples[-1]
    return "\n".join(
        [
            "| offered msg/s | delivered msg/s | idle visitor sockets | sending conversations "
            "| samples | p50 ms | p99 ms | max ms | sender behind schedule, max ms "
            "| server CPU | longest GC pause | undelivered / errors / lost "
            "| targets p50 ≤ 2, p99 ≤ 10, max ≤ 50 ms |",
            "|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|",
            f"| {r.rate_per_s or 0:,.0f} | {r.per_s:,.0f} | {r.idle:,} | {r.active:,} "
            f"| {len(samples):,} "
            f"| {ms(p50)} | {ms(p99)} | {ms(worst)} | {ms(r.max_send_lag_ms)} "
            f"| {r.server_busy:.0%} | {gc_text(r.gc)} "
            f"| {r.undelivered} / {r.census.errors} / {r.census.lost} "
            f"| p50 {met(p50 <= TARGET_P50_MS)}, p99 {met(p99 <= TARGET_P99_MS)}, "
            f"max {met(worst <= TARGET_MAX_MS)} |",
        ]
    )


def comparison_table(report: Report) -> str | None:
    def relay(run: IdleRun | ChatRun) -> bool:
        return run.server.startswith("socket.io")

    ours_idle = next((r for r in report.idle if not relay(r) and not r.deflate), None)
    their_idle = next((r for r in report.idle if relay(r)), None)
    # liveop's first run on its in-process broker, or else through Redis.
    ours = min(
        (r for r in report.chats if not relay(r)), key=lambda r: r.broker != "memory", default=None
    )
    theirs = next((r for r in report.chats if relay(r)), None)
    rows: list[tuple[str, float, float]] = []
    if ours and theirs:
        rows.append(("deliveries per server CPU-second", ours.per_cpu_s, theirs.per_cpu_s))
        rows.append(("delivered msg/s, closed loop", ours.per_s, theirs.per_s))
    if ours_idle and their_idle:
        rows.append(
            ("KiB per idle visitor socket", ours_idle.kib_per_visitor, their_idle.kib_per_visitor)
        )
        rows.append(
            ("KiB per operator connection", ours_idle.kib_per_operator, their_idle.kib_per_operator)
        )
    if not rows:
        return None
    lines = [
        "| measure | liveop | python-socketio relay | liveop ÷ relay |",
        "|---|--:|--:|--:|",
    ]
    lines += [
        f"| {name} | {a:,.1f} | {b:,.1f} | {a / b if b else float('nan'):.2f} |"
        for name, a, b in rows
    ]
    return "\n".join(lines)


def tables(report: Report) -> str:
    parts: list[str] = []
    if report.idle:
        parts += ["Idle capacity and memory", idle_table(report.idle)]
    if report.latency is not None:
        parts += ["Latency at a fixed rate (visitor send → operator stream)"]
        parts.append(latency_table(report.latency))
    if report.chats:
        parts += ["Throughput, closed loop (both directions count)", chat_table(report.chats)]
    comparison = comparison_table(report)
    if comparison is not None:
        parts += ["liveop against the python-socketio relay, same session", comparison]
    return "\n\n".join(parts)


def limits(report: Report, options: Options) -> list[str]:
    """What bounds each number, as far as the run itself can tell."""
    notes: list[str] = []
    for r in report.idle:
        notes.append(
            f"{r.server}: memory grows "
            f"{r.kib_per_visitor:.1f} KiB per idle visitor socket, so 1 GiB holds about "
            f"{1024 * 1024 / max(r.kib_per_visitor, 0.1):,.0f}; the count is also capped by the "
            "server's open-files limit (the launcher raises it to the hard limit)."
        )
    chats = [*report.chats, *([report.latency] if report.latency else [])]
    for run in chats:
        notes.append(
            f"{run.server}: servers {run.server_busy:.0%} of a core ({run.processes} "
            f"process(es)), clients {run.client_busy:.0%}, all CPUs {run.machine_busy:.0%} busy: "
            f"limited by {run.limited_by()}."
        )
    held: list[IdleRun | ChatRun] = [*report.idle, *chats]
    notes += [f"{r.server}: connections lost: {losses(r.census)}." for r in held if r.census.lost]
    if options.broker is not None or options.database == "postgres":
        notes.append(
            "PostgreSQL and Redis run unpinned; their CPU time is not counted as the servers' but "
            "apart, per delivery: every process of the PostgreSQL server and of the Redis server "
            "on the broker's port, whoever it worked for."
        )
    if options.processes > 1:
        notes.append(
            f"{options.processes} servers on {len(os.sched_getaffinity(0))} CPUs: the client "
            "processes, PostgreSQL and Redis compete with the servers for the same cores, so "
            "this is a lower bound for servers on hosts of their own."
        )
    return notes


def pinning(processes: int) -> str:
    server_cpus, client_cpu = placement(processes)
    if client_cpu is not None:
        return f"server pinned to CPU {server_cpus[0]}, clients to CPU {client_cpu}"
    if any(cpu is not None for cpu in server_cpus):
        cpus = ", ".join(str(cpu) for cpu in server_cpus)
        return f"servers pinned to CPUs {cpus}, clients not pinned"
    return "not pinned"


def record(report: Report, options: Options) -> None:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    software = ", ".join(
        f"{name} {version(name)}"
        for name in ("uvicorn", "starlette", "websockets", "sse-starlette", "python-socketio")
    )
    broker = options.broker or "not measured (no --broker)"
    database = "SQLite" if options.database == "sqlite" else "PostgreSQL (a fresh database)"
    section = (
        f"\n### {when}, {git_revision()}\n\n"
        f"- machine: {machine()}\n"
        f"- software: Python {platform.python_version()}, {software}\n"
        f"- parameters: {options.processes} server process(es) on {database}; "
        f"{options.workers} client processes ({pinning(options.processes)}); idle: "
        f"{options.visitors:,} visitor sockets + {options.operators:,} operator connections; "
        f"latency: {options.latency_rate:,.0f} msg/s over {options.latency_active:,} "
        f"conversations with {options.latency_idle:,} idle visitors; throughput: "
        f"{options.active:,} closed-loop conversations; runs of {options.duration_s:.0f} s after "
        f"{options.warmup_s:.0f} s of warm-up; Redis: {broker}\n\n"
        f"{tables(report)}\n\n"
        "What limits each number:\n\n" + "\n".join(f"- {n}" for n in limits(report, options)) + "\n"
    )
    record_section(DOC, RESULTS_HEADING, section)


def redis_url(text: str) -> str:
    """The bench flushes the broker's database before and after: it must be named, not 0."""
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss") or parts.path.strip("/") in ("", "0"):
        raise argparse.ArgumentTypeError(
            "a redis:// URL naming a spare database, e.g. redis://127.0.0.1:6379/15 "
            "(it is flushed before and after the run)"
        )
    return text


def parse_phases(text: str) -> tuple[str, ...]:
    phases = tuple(p.strip() for p in text.split(",") if p.strip())
    unknown = set(phases) - set(PHASES)
    if unknown or not phases:
        raise argparse.ArgumentTypeError(f"phases are a comma-separated subset of {PHASES}")
    return phases


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of a throughput run, shared with bench/scale_bench.py."""
    parser.add_argument("--workers", type=int, default=4, help="client processes (accounts)")
    parser.add_argument("--active", type=int, default=200, help="closed-loop conversations")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds measured per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each window")
    parser.add_argument(
        "--postgres-admin",
        default=POSTGRES_ADMIN_URL,
        help="a PostgreSQL server where the bench may create and drop its database "
        "(default: $LIVEOP_TEST_POSTGRES_URL or %(default)s)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.realtime_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_run_arguments(parser)
    parser.add_argument("--visitors", type=int, default=2000, help="idle visitor sockets")
    parser.add_argument("--operators", type=int, default=100, help="idle operator connections")
    parser.add_argument("--latency-idle", type=int, default=1000, help="idle visitors meanwhile")
    parser.add_argument("--latency-rate", type=float, default=1000.0, help="messages per second")
    parser.add_argument("--latency-active", type=int, default=500, help="sending conversations")
    parser.add_argument("--broker", type=redis_url, help="also run throughput through this Redis")
    parser.add_argument("--database", choices=DATABASES, default="sqlite", help="the store")
    parser.add_argument(
        "--processes", type=int, default=1, help="server processes (more than 1 needs --broker)"
    )
    parser.add_argument(
        "--phases", type=parse_phases, default=PHASES, help=f"subset of {','.join(PHASES)}"
    )
    parser.add_argument("--record", action="store_true", help=f"append the results to {DOC}")
    parser.add_argument(
        "--profile", type=Path, help="py-spy the server in each run's window, into this directory"
    )
    parser.add_argument(
        "--workdir", type=Path, help="keep the data directory and server logs here (a new one)"
    )
    args = parser.parse_args(argv)
    if args.record and args.profile:
        parser.error("--profile slows the server down: do not --record a profiled run")
    if args.workers < 1 or min(args.visitors, args.operators, args.active) < args.workers:
        parser.error("every client process needs at least one visitor, operator and conversation")
    if args.profile and shutil.which("py-spy", path=str(Path(sys.executable).parent)) is None:
        parser.error("--profile needs py-spy in the virtualenv (pip install py-spy)")
    if args.processes < 1 or args.processes > args.workers:
        parser.error("--processes must be between 1 and --workers")
    if args.processes > 1:
        if args.broker is None:
            parser.error("several processes share events only through Redis: give --broker")
        if "socketio" in args.phases:
            parser.error("the socket.io relay runs as one process: leave socketio out of --phases")
        if args.profile:
            parser.error("--profile samples one server: use it with --processes 1")
    if "socketio" in args.phases:
        try:
            version("python-socketio")
        except ModuleNotFoundError:
            parser.error("the socketio phase needs python-socketio (pip install python-socketio)")
    options = Options(
        database=args.database,
        postgres_admin=args.postgres_admin,
        processes=args.processes,
        workers=args.workers,
        visitors=args.visitors,
        operators=args.operators,
        latency_idle=args.latency_idle,
        latency_rate=args.latency_rate,
        latency_active=args.latency_active,
        active=args.active,
        duration_s=args.duration,
        warmup_s=args.warmup,
        broker=args.broker,
        phases=args.phases,
        profile=args.profile,
        workdir=args.workdir,
    )
    # Not pinned itself: the server and the client processes get their CPUs from here, and a
    # process confined to one CPU could no longer tell that the machine has two.
    raise_open_files_limit()
    report = run(options)
    print(tables(report))
    if args.record:
        record(report, options)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
