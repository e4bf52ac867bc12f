"""Serve an ASGI app the way ``liveop serve`` does, with what a benchmark needs on top.

    python -m bench.launcher --port 8000 [--deflate] [--gc-stats PATH]

It runs ``server.app.create_app(load_settings())`` under uvicorn with the settings of
``server/cli.py``'s ``_serve`` (the WebSocket limits are imported from there, so the two stay in
step), and adds three things without touching server code:

- ``--deflate`` turns on WebSocket per-message compression (``liveop serve`` ships with it off),
  so both can be measured;
- the open-files limit is raised to the hard limit, so thousands of sockets fit;
- every garbage collection is timed (``gc.callbacks``). On SIGUSR1 the longest pause, the number
  of collections and their total time since the previous SIGUSR1 are written as JSON to
  ``--gc-stats``, so a benchmark can frame exactly its measured window.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from bench.harness import HOST, raise_open_files_limit
from server.app import create_app
from server.cli import uvicorn_options
from server.logs import uvicorn_log_config
from server.settings import load_settings


class GcPauses:
    """Times each collection between gc's "start" and "stop" callbacks."""

    def __init__(self) -> None:
        self._started = 0.0
        self.count = 0
        self.total_s = 0.0
        self.max_s = 0.0
        self.max_generation = -1

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        if phase == "start":
            self._started = now
            return
        pause = now - self._started
        self.count += 1
        self.total_s += pause
        if pause > self.max_s:
            self.max_s = pause
            self.max_generation = int(info["generation"])

    def take(self) -> dict[str, float | int]:
        """The statistics since the previous take, and a fresh start."""
        stats: dict[str, float | int] = {
            "count": self.count,
            "total_ms": self.total_s * 1000,
            "max_ms": self.max_s * 1000,
            "max_generation": self.max_generation,
        }
        self.count, self.total_s, self.max_s, self.max_generation = 0, 0.0, 0.0, -1
        return stats


def report_gc_on_sigusr1(path: Path) -> None:
    pauses = GcPauses()
    gc.callbacks.append(pauses)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        # Written beside and renamed into place, so a reader never sees half a file.
        partial = path.with_suffix(".partial")
        partial.write_text(json.dumps(pauses.take()))
        os.replace(partial, path)

    signal.signal(signal.SIGUSR1, on_signal)


def serve(
    app: Any,
    port: int,
    *,
    deflate: bool,
    log_config: dict[str, Any] | None,
    access_log: bool = True,
) -> None:
    """``uvicorn.run`` with ``liveop serve``'s options; ``log_config`` None is uvicorn's own."""
    raise_open_files_limit()
    options = uvicorn_options(access_log=access_log)
    options.update(ws_per_message_deflate=deflate, log_config=log_config or LOGGING_CONFIG)
    uvicorn.run(app, host=HOST, port=port, **options)


def parser(prog: str, description: str | None) -> argparse.ArgumentParser:
    """The options every benchmark server takes (this launcher and the socket.io relay)."""
    args = argparse.ArgumentParser(prog=prog, description=description)
    args.add_argument("--port", type=int, required=True)
    args.add_argument("--deflate", action="store_true", help="per-message compression on")
    args.add_argument("--gc-stats", type=Path, help="where SIGUSR1 writes GC pause statistics")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parser("python -m bench.launcher", __doc__).parse_args(argv)
    if args.gc_stats is not None:
        report_gc_on_sigusr1(args.gc_stats)
    settings = load_settings()
    serve(
        create_app(settings),
        args.port,
        deflate=args.deflate,
        log_config=uvicorn_log_config(),
        access_log=settings.access_log,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
