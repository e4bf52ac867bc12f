"""Sizing figures for several server processes: closed-loop throughput on PostgreSQL + Redis
with one process and with ``--processes``, interleaved with the realtime baseline in one session.

    python -m bench.scale_bench --broker redis://127.0.0.1:6379/15 [--processes 2] [--rounds 2]
        [--record]

Every round runs, in this order, each in a session of its own (bench/realtime_bench.py: fresh
accounts, client processes and, for PostgreSQL, a fresh database dropped afterwards):

- baseline: the embedded default (SQLite, in-process broker) and the python-socketio relay,
  one server pinned to CPU 0 and the load generator to CPU 1, as bench/realtime_bench.py runs
  them;
- A: one server on PostgreSQL through Redis, pinned the same way;
- B: ``--processes`` servers on PostgreSQL through Redis, one per CPU, the load generator not
  pinned; each account's visitors, operator streams and replies on different servers.

So the order is A B A B with the baseline before each pair, and a ratio to the relay measured in
the same round drifts with the machine. Reported per configuration: the median and the range
over the rounds of delivered messages/s, server CPU per delivery, and PostgreSQL's and Redis's
CPU per delivery.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from importlib.metadata import version

import asyncpg
from redis import Redis

from bench.harness import DOC, git_revision, machine, raise_open_files_limit, record_section
from bench.realtime_bench import (
    PHASES,
    ChatRun,
    Options,
    add_run_arguments,
    chat_table,
    ms,
    percentile,
    pinning,
    redis_url,
    session,
)

RESULTS_HEADING = "## Scale-out results"
BASELINE = "socket.io relay"


@dataclass(frozen=True, slots=True)
class Round:
    embedded: ChatRun
    relay: ChatRun
    one: ChatRun
    several: ChatRun


def measure(options: Options) -> Round:
    """One round: the baseline session, then A, then B."""
    with session(replace(options, database="sqlite", processes=1)) as base:
        base.prepare(0)
        embedded = base.chat(base.label(None), "liveop", active=options.active, rate_per_s=None)
        relay = base.chat(BASELINE, "socketio", active=options.active, rate_per_s=None)

    def through_redis(processes: int) -> ChatRun:
        with session(replace(options, database="postgres", processes=processes)) as current:
            current.prepare(0)
            return current.chat(
                current.label(options.broker),
                "liveop",
                active=options.active,
                rate_per_s=None,
                broker=options.broker,
            )

    one = through_redis(1)
    return Round(embedded, relay, one, through_redis(options.processes))


def load_1min() -> float:
    return os.getloadavg()[0]


def spread(values: Sequence[float], text: Callable[[float], str]) -> str:
    """The median, and the range when there is more than one value."""
    middle = text(statistics.median(values))
    if len(values) < 2:
        return middle
    return f"{middle} ({text(min(values))} to {text(max(values))})"


def whole(value: float) -> str:
    return f"{value:,.0f}"


def ratio(value: float) -> str:
    return f"{value:.2f}"


def median_us(runs: Sequence[ChatRun], cpu_s: Callable[[ChatRun], float | None]) -> str:
    """The median CPU µs per delivery of a process group, over the runs that measured it."""
    known = [v for r in runs if (v := r.per_delivery_us(cpu_s(r))) is not None]
    return whole(statistics.median(known)) if known else "n/a"


def median_latency(runs: Sequence[ChatRun], samples: Callable[[ChatRun], list[float]]) -> str:
    p50 = statistics.median(percentile(samples(r), 50) for r in runs)
    p99 = statistics.median(percentile(samples(r), 99) for r in runs)
    return f"{ms(p50)} / {ms(p99)}"


def summary_table(rounds: Sequence[Round]) -> str:
    lines = [
        "| configuration | runs | delivered msg/s | ÷ relay, same round | server CPU, cores "
        "| server CPU µs per delivery | deliveries per server CPU-s "
        "| PostgreSQL / Redis CPU µs per delivery | all CPUs busy "
        "| to operator p50 / p99 ms | to visitor p50 / p99 ms | undelivered / errors / lost |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    pick: list[Callable[[Round], ChatRun]] = [
        lambda r: r.embedded,
        lambda r: r.relay,
        lambda r: r.one,
        lambda r: r.several,
    ]
    for get in pick:
        runs = [get(r) for r in rounds]
        relative = [get(r).per_s / r.relay.per_s for r in rounds]
        lines.append(
            f"| {runs[0].server} | {len(runs)} | {spread([r.per_s for r in runs], whole)} "
            f"| {spread(relative, ratio)} "
            f"| {statistics.median(r.server_busy for r in runs):.2f} "
            f"| {spread([r.server_cpu_s / max(1, r.deliveries) * 1e6 for r in runs], whole)} "
            f"| {spread([r.per_cpu_s for r in runs], whole)} "
            f"| {median_us(runs, lambda r: r.postgres_cpu_s)} "
            f"/ {median_us(runs, lambda r: r.redis_cpu_s)} "
            f"| {statistics.median(r.machine_busy for r in runs):.0%} "
            f"| {median_latency(runs, lambda r: r.to_operator_ms)} "
            f"| {median_latency(runs, lambda r: r.to_visitor_ms)} "
            f"| {sum(r.undelivered for r in runs)} / {sum(r.census.errors for r in runs)} "
            f"/ {sum(r.census.lost for r in runs)} |"
        )
    return "\n".join(lines)


def scaling(rounds: Sequence[Round]) -> str:
    """B against A, round by round."""
    several = rounds[0].several.processes
    throughput = [r.several.per_s / r.one.per_s for r in rounds]
    cost = [r.several.per_cpu_s / r.one.per_cpu_s for r in rounds]
    return (
        f"{several} processes ÷ 1 process, same round: delivered msg/s "
        f"{spread(throughput, ratio)}; deliveries per server CPU-second {spread(cost, ratio)}."
    )


def tables(rounds: Sequence[Round]) -> str:
    every = [run for r in rounds for run in (r.embedded, r.relay, r.one, r.several)]
    return "\n\n".join(
        [
            "Median (and range) over the rounds",
            summary_table(rounds),
            scaling(rounds),
            "Every run, in the order run",
            chat_table(every),
        ]
    )


def service_versions(options: Options) -> str:
    """The PostgreSQL and Redis servers' own versions."""

    async def postgres() -> str:
        conn = await asyncpg.connect(options.postgres_admin)
        try:
            return str(conn.get_server_version().major)
        finally:
            await conn.close()

    assert options.broker is not None
    with Redis.from_url(options.broker) as client:
        redis = client.info("server")["redis_version"]
    return f"PostgreSQL {asyncio.run(postgres())}, Redis {redis}"


def record(
    rounds: Sequence[Round], options: Options, loads: tuple[float, float], took_s: float
) -> None:
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    software = ", ".join(
        f"{name} {version(name)}"
        for name in ("uvicorn", "starlette", "websockets", "sse-starlette", "asyncpg")
    )
    software += f", redis-py {version('redis')}, {service_versions(options)}"
    section = (
        f"\n### {when}, {git_revision()}\n\n"
        f"- machine: {machine()}; load average (1 min) {loads[0]:.2f} at the start, "
        f"{loads[1]:.2f} at the end; {took_s / 60:.1f} minutes in all\n"
        f"- software: Python {platform.python_version()}, {software}\n"
        f"- parameters: {len(rounds)} rounds of baseline, A, B; {options.workers} client "
        f"processes, {options.active:,} closed-loop conversations, runs of "
        f"{options.duration_s:.0f} s after {options.warmup_s:.0f} s of warm-up; Redis "
        f"{options.broker}; one process: {pinning(1)}; {options.processes} processes: "
        f"{pinning(options.processes)}\n\n"
        f"{tables(rounds)}\n"
    )
    record_section(DOC, RESULTS_HEADING, section)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale_bench", description=__doc__)
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    add_run_arguments(parser)
    parser.add_argument("--broker", type=redis_url, required=True, help="the Redis every run uses")
    parser.add_argument("--processes", type=int, default=2, help="server processes of B")
    parser.add_argument("--rounds", type=int, default=2, help="how many times to run the set")
    parser.add_argument("--record", action="store_true", help=f"append the results to {DOC}")
    args = parser.parse_args(argv)
    if not 2 <= args.processes <= args.workers:
        parser.error("--processes must be between 2 and --workers")
    if args.rounds < 1 or args.active < args.workers:
        parser.error("give at least one round, and one conversation per client process")
    options = Options(
        database="sqlite",
        postgres_admin=args.postgres_admin,
        processes=args.processes,
        workers=args.workers,
        visitors=args.workers,
        operators=args.workers,
        latency_idle=0,
        latency_rate=0.0,
        latency_active=0,
        active=args.active,
        duration_s=args.duration,
        warmup_s=args.warmup,
        broker=args.broker,
        phases=PHASES,
        profile=None,
        workdir=None,
    )
    raise_open_files_limit()
    started, load_before = time.monotonic(), load_1min()
    rounds: list[Round] = []
    for n in range(args.rounds):
        print(f"round {n + 1} of {args.rounds}", file=sys.stderr, flush=True)
        rounds.append(measure(options))
    took_s, load_after = time.monotonic() - started, load_1min()
    print(tables(rounds))
    print(f"{took_s / 60:.1f} minutes", file=sys.stderr)
    if args.record:
        record(rounds, options, (load_before, load_after), took_s)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
