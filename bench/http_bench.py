"""HTTP throughput and latency of one ``liveop serve`` process, measured with wrk.

Every scenario is reported against a bare Starlette app run under the same uvicorn settings in
the same session: the machine is shared and noisy, so absolute numbers drift between runs while
the ratio to the framework's own ceiling stays comparable.

    python -m bench.http_bench [--duration 10] [--connections 50] [--record]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.harness import (
    CLI_TIMEOUT_S,
    CLIENT_CPU,
    DOC,
    HOST,
    SERVER_CPU,
    create_account,
    free_ports,
    git_revision,
    machine,
    pinned,
    record_section,
    server,
)

FORM = "application/x-www-form-urlencoded"
WARMUP_S = 2
# One wrk thread is enough to saturate one server process, and keeps wrk on its own core.
WRK_THREADS = 1
# wrk stops itself after --duration; this is only how long we wait past that before giving up.
WRK_GRACE_S = 30.0
# A chat window that has been open a while: enough history that "after seq" has to skip some.
SEED_MESSAGES = 10
# How many messages the "new messages" poll finds: a burst the visitor has not yet seen.
POLL_BACKLOG = 5
RESULTS_HEADING = "## Results"
LIVEOP_SERVE = (sys.executable, "-m", "server", "serve", "--host", HOST)
BASELINE_SERVE = (sys.executable, "-m", "bench.http_bench", "--serve-baseline")
# Latency units as wrk prints them, in milliseconds.
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}


async def tiny_json(request: Request) -> JSONResponse:
    return JSONResponse({"success": True})


def baseline_app() -> Starlette:
    """The ceiling: routing plus a tiny JSON response, no middleware, no storage."""
    return Starlette(routes=[Route("/", tiny_json, methods=["GET", "POST"])])


def serve_baseline(port: int) -> None:
    # Keep in step with what shapes a plain HTTP request's cost in server/cli.py `_serve`:
    # uvicorn's defaults (uvloop and httptools when installed) with the access log on, so the
    # ratio charges liveop only for what it adds, such as its access log's redacting filter.
    uvicorn.run(baseline_app(), host=HOST, port=port, log_level="info")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    url: str
    lua: str


@dataclass(frozen=True, slots=True)
class Result:
    scenario: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    errors: int


@dataclass(frozen=True, slots=True)
class Setup:
    account_id: str
    api_key: str
    operator_id: int
    convo_id: str
    last_seq: int


def _lua_string(text: str) -> str:
    # A JSON string literal is a valid Lua one for ASCII without control characters, which is
    # all a URL-encoded form body can contain.
    return json.dumps(text)


def post_script(body: str) -> str:
    return (
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(body)}\n"
        f'wrk.headers["Content-Type"] = "{FORM}"\n'
    )


def counting_script(templates: Sequence[str], marker: str) -> str:
    """A POST whose body is each template in turn, ``marker`` replaced by a request counter,
    so every request carries a different message."""
    pairs = ", ".join(
        "{" + ", ".join(_lua_string(part) for part in t.split(marker, 1)) + "}" for t in templates
    )
    return (
        'wrk.method = "POST"\n'
        f'wrk.headers["Content-Type"] = "{FORM}"\n'
        f"local bodies = {{{pairs}}}\n"
        "local n = 0\n"
        "request = function()\n"
        "  n = n + 1\n"
        "  local parts = bodies[n % #bodies + 1]\n"
        "  return wrk.format(nil, nil, nil, parts[1] .. n .. parts[2])\n"
        "end\n"
    )


def form(fields: dict[str, str]) -> str:
    return "&".join(f"{quote_plus(k)}={quote_plus(v)}" for k, v in fields.items())


def command_form(setup: Setup, payload: dict[str, Any]) -> str:
    return form(
        {
            "accountID": setup.account_id,
            "key": setup.api_key,
            "app": "liveoperator",
            "command": "sendmessage",
            "json": json.dumps(payload),
        }
    )


def seed(base: str, account_id: str, api_key: str, operator_id: int) -> Setup:
    """One conversation with SEED_MESSAGES alternating visitor and operator messages."""
    convo_id = ""
    last_seq = 0
    with httpx.Client(base_url=base, timeout=10.0) as client:
        for i in range(SEED_MESSAGES):
            payload: dict[str, Any] = {"message": f"seed {i}"}
            if convo_id:
                payload["convoID"] = convo_id
            if i % 2:
                payload["operatorID"] = operator_id
            response = client.post(
                "/",
                data={
                    "accountID": account_id,
                    "key": api_key,
                    "app": "liveoperator",
                    "command": "sendmessage",
                    "json": json.dumps(payload),
                },
            )
            response.raise_for_status()
            answer = response.json()
            convo_id = answer["convoID"]
            last_seq = answer["message"]["seq"]
    return Setup(account_id, api_key, operator_id, convo_id, last_seq)


def parse_ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if match is None:
        raise ValueError(f"unexpected wrk time {text!r}")
    return float(match[1]) * UNIT_MS[match[2]]


def parse_wrk(scenario: str, output: str) -> Result:
    def find(pattern: str) -> re.Match[str]:
        match = re.search(pattern, output, re.MULTILINE)
        if match is None:
            raise ValueError(f"wrk output lacks {pattern!r}:\n{output}")
        return match

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: " + ", ".join([r"\w+ (\d+)"] * 4), output)
    errors = int(non_2xx[1]) if non_2xx else 0
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return Result(
        scenario=scenario,
        requests_per_s=float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        p50_ms=parse_ms(find(r"^\s+50%\s+(\S+)")[1]),
        p99_ms=parse_ms(find(r"^\s+99%\s+(\S+)")[1]),
        max_ms=parse_ms(find(r"^\s+Latency\s+\S+\s+\S+\s+(\S+)")[1]),
        errors=errors,
    )


def wrk(scenario: Scenario, duration_s: int, connections: int, workdir: Path) -> str:
    script = workdir / f"{re.sub(r'[^a-z0-9]+', '-', scenario.name)}.lua"
    script.write_text(scenario.lua)
    done = subprocess.run(
        [
            *pinned(CLIENT_CPU),
            "wrk",
            f"--threads={WRK_THREADS}",
            f"--connections={connections}",
            f"--duration={duration_s}s",
            "--latency",
            f"--script={script}",
            scenario.url,
        ],
        capture_output=True,
        text=True,
        timeout=duration_s + WRK_GRACE_S,
        check=True,
    )
    return done.stdout


def measure(scenario: Scenario, duration_s: int, connections: int, workdir: Path) -> Result:
    # The warm-up fills connection pools, SQLite's page cache and CPU caches; its numbers are
    # thrown away.
    wrk(scenario, WARMUP_S, connections, workdir)
    result = parse_wrk(scenario.name, wrk(scenario, duration_s, connections, workdir))
    print(
        f"  {result.scenario}: {result.requests_per_s:,.0f} req/s, p99 {result.p99_ms:.2f} ms",
        file=sys.stderr,
        flush=True,
    )
    return result


def scenarios(setup: Setup, liveop: str, baseline: str) -> tuple[Scenario, list[Scenario]]:
    """The baseline, and liveop's scenarios in an order where none disturbs the next: the
    polls run before sendmessage grows the conversation."""
    poll_url = f"{liveop}/{setup.account_id}/liveoperator/chatpoll"
    caught_up = form({"convoID": setup.convo_id, "afterSeq": str(setup.last_seq)})
    backlog = form({"convoID": setup.convo_id, "afterSeq": str(setup.last_seq - POLL_BACKLOG)})
    marker = "COUNTER"
    visitor = command_form(setup, {"convoID": setup.convo_id, "message": f"visitor {marker}"})
    operator = command_form(
        setup,
        {
            "convoID": setup.convo_id,
            "message": f"operator {marker}",
            "operatorID": setup.operator_id,
        },
    )
    # The baseline gets chatpoll's request bytes so both sides parse the same HTTP request.
    return Scenario("baseline", f"{baseline}/", post_script(caught_up)), [
        Scenario("chatpoll, caught up", poll_url, post_script(caught_up)),
        Scenario(f"chatpoll, {POLL_BACKLOG} new", poll_url, post_script(backlog)),
        Scenario("sendmessage", f"{liveop}/", counting_script([visitor, operator], marker)),
    ]


def run(duration_s: int, connections: int) -> list[Result]:
    """Baseline at the start and again at the end, so drift during the session shows."""
    with tempfile.TemporaryDirectory(prefix="liveop-bench-") as tmp:
        workdir = Path(tmp)
        env = {**os.environ, "LIVEOP_DATA_DIR": str(workdir / "data")}
        account = create_account(env, "Bench", "op@bench.test", "benchpass1")
        liveop_port, baseline_port = free_ports(2)
        liveop = f"http://{HOST}:{liveop_port}"
        baseline = f"http://{HOST}:{baseline_port}"
        with contextlib.ExitStack() as stack:
            stack.enter_context(
                server(
                    [*LIVEOP_SERVE, "--port", str(liveop_port)],
                    env,
                    f"{liveop}/healthz",
                    workdir / "liveop.log",
                )
            )
            stack.enter_context(
                server(
                    [*BASELINE_SERVE, "--port", str(baseline_port)],
                    env,
                    f"{baseline}/",
                    workdir / "baseline.log",
                )
            )
            setup = seed(liveop, account.account_id, account.api_key, account.operator_id)
            base, rest = scenarios(setup, liveop, baseline)
            results = [measure(base, duration_s, connections, workdir)]
            results += [measure(s, duration_s, connections, workdir) for s in rest]
            results.append(measure(base, duration_s, connections, workdir))
        return results


def table(results: Sequence[Result], connections: int, duration_s: int) -> str:
    ceiling = sum(r.requests_per_s for r in results if r.scenario == "baseline")
    ceiling /= sum(1 for r in results if r.scenario == "baseline")
    lines = [
        "| scenario | connections | duration | req/s | p50 ms | p99 ms | max ms | errors "
        "| ratio to baseline |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {r.scenario} | {connections} | {duration_s} s | {r.requests_per_s:,.0f} "
        f"| {r.p50_ms:.2f} | {r.p99_ms:.2f} | {r.max_ms:.2f} | {r.errors} "
        f"| {r.requests_per_s / ceiling:.2f} |"
        for r in results
    ]
    return "\n".join(lines)


def record(results: Sequence[Result], connections: int, duration_s: int) -> None:
    wrk_version = subprocess.run(
        ["wrk", "-v"], capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    ).stdout.split(" [")[0]
    when = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    pinning = (
        f"server pinned to CPU {SERVER_CPU}, wrk to CPU {CLIENT_CPU}"
        if pinned(SERVER_CPU)
        else "not pinned"
    )
    section = (
        f"\n### {when}, {git_revision()}\n\n"
        f"- machine: {machine()}\n"
        f"- software: Python {platform.python_version()}, uvicorn {version('uvicorn')}, "
        f"starlette {version('starlette')}, {wrk_version}\n"
        f"- parameters: {connections} connections, {WRK_THREADS} wrk thread, {duration_s} s "
        f"per scenario after a {WARMUP_S} s warm-up, {pinning}\n\n"
        f"{table(results, connections, duration_s)}\n"
    )
    record_section(DOC, RESULTS_HEADING, section)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_bench", description=__doc__)
    parser.add_argument("--duration", type=int, default=10, help="seconds per scenario")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--record", action="store_true", help=f"append the results to {DOC}")
    parser.add_argument(
        "--serve-baseline", action="store_true", help="serve the baseline app (used internally)"
    )
    parser.add_argument("--port", type=int, help="with --serve-baseline")
    args = parser.parse_args(argv)
    if args.serve_baseline:
        if args.port is None:
            parser.error("--serve-baseline needs --port")
        serve_baseline(args.port)
        return 0
    if shutil.which("wrk") is None:
        parser.error("wrk is not installed (apt-get install -y wrk)")
    results = run(args.duration, args.connections)
    print(table(results, args.connections, args.duration))
    if args.record:
        record(results, args.connections, args.duration)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
