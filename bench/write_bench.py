"""CPU per message write through the engine alone, on the embedded default.

    python -m bench.write_bench [--conversations 200] [--rounds 20] [--runs 3]
    PYTHONPATH=../other-checkout python bench/write_bench.py     # the same loop on other code

Builds the app's services in-process (``create_app``'s lifespan on a fresh data directory:
SQLite, in-memory broker), one account and one operator, ``--conversations`` conversations,
then ``--rounds`` rounds of one visitor message into each (concurrently, so the writer groups
them as under load) followed by one operator reply into each, all through
``ConversationEngine.send``. It prints CPU microseconds per write: the process's, and the SQLite
writer thread's (from /proc/self/task, so Linux only, counted in clock ticks of 10 ms: keep a
run to thousands of writes, as the defaults' 8,000).

Why beside the closed loop of realtime_bench: each write there is one delivery, but the
sockets, streams and HTTP layers around it, and the client processes sharing the machine, make
runs of one checkout swing by 10-15%. This loop has only the engine and the store, and splits
the CPU between the writer thread and the rest; its runs still spread by about a tenth (287 to
365 us per write over four runs of one checkout), so compare medians of interleaved runs. Its
imports are the app's own and nothing
from bench/, so the file runs unchanged against an older checkout put first on PYTHONPATH (run
it by path, not with -m, then), which is how docs/benchmarks.md compares two commits.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.app import create_app
from server.settings import load_settings

WRITER_THREAD = "liveop-sqlite-writer"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Run:
    writes: int
    wall_us: float
    process_us: float
    writer_us: float


def thread_cpu_s(native_id: int) -> float:
    """User + system CPU seconds of one thread of this process."""
    stat = Path(f"/proc/self/task/{native_id}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


async def run_once(
    conversations: int, rounds: int, on_measured: Callable[[], None] = lambda: None
) -> Run:
    """One run; ``on_measured`` is called where the measured part begins."""
    with tempfile.TemporaryDirectory(prefix="liveop-write-bench-") as data_dir:
        settings = load_settings({"LIVEOP_DATA_DIR": data_dir, "LIVEOP_RATE_LIMITS": "0"})
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            svc = app.state.services
            account, _key = await svc.directory.create_account("write bench")
            operator = await svc.directory.create_operator(
                account.id,
                name="Bench Operator",
                email="operator@bench.test",
                password="bench-password-1",
                is_admin=True,
            )
            convo_ids = []
            for i in range(conversations):
                first = await svc.engine.send(account.id, convo_id=None, text=f"hello {i}")
                convo_ids.append(first.conversation.id)
            writer = next(t for t in threading.enumerate() if t.name == WRITER_THREAD)
            assert writer.native_id is not None, "the writer thread is running"
            on_measured()
            wall, cpu, writer_cpu = (
                time.perf_counter(),
                time.process_time(),
                thread_cpu_s(writer.native_id),
            )
            for r in range(rounds):
                await asyncio.gather(
                    *(
                        svc.engine.send(
                            account.id, convo_id=c, text=f"visitor {r}", client_msg_id=f"{c}-{r}"
                        )
                        for c in convo_ids
                    )
                )
                await asyncio.gather(
                    *(
                        svc.engine.send(
                            account.id, convo_id=c, text=f"operator {r}", operator_id=operator.id
                        )
                        for c in convo_ids
                    )
                )
            writes = 2 * rounds * conversations
            return Run(
                writes,
                (time.perf_counter() - wall) * 1e6 / writes,
                (time.process_time() - cpu) * 1e6 / writes,
                (thread_cpu_s(writer.native_id) - writer_cpu) * 1e6 / writes,
            )


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--conversations", type=positive, default=200)
    parser.add_argument(
        "--rounds", type=positive, default=20, help="visitor + operator messages each"
    )
    parser.add_argument("--runs", type=positive, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        run = asyncio.run(run_once(args.conversations, args.rounds))
        runs.append(run)
        print(
            f"{run.writes:,} writes: CPU per write {run.process_us:.0f} us (writer thread"
            f" {run.writer_us:.0f} us), wall {run.wall_us:.0f} us"
        )
    print(
        f"median of {len(runs)}: process {statistics.median(r.process_us for r in runs):.0f} us,"
        f" writer {statistics.median(r.writer_us for r in runs):.0f} us per write"
    )


if __name__ == "__main__":
    main()
