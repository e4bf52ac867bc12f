"""``liveop``: run the server and manage accounts from the command line."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

import orjson
import uvicorn

from server.app import create_app
from server.connections import guarded_protocols, process_connection_cap
from server.crypto import Sealer, UnreadableSecret
from server.demo import create_demo
from server.directory import Directory
from server.doctor import doctor
from server.errors import LiveOpError, NotFound
from server.logs import JSON, TEXT, uvicorn_log_config
from server.readiness import ShutdownState, data_dir_problem
from server.services import Services
from server.settings import Settings, SettingsError, load_settings
from server.shutdown import GracefulServer
from storage import create_store
from storage.base import Store, StoreError
from storage.transfer import ImportFailed, export_to, import_from

T = TypeVar("T")
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# Frames carry one chat message (5,000 characters, at most 20 KB of UTF-8) plus JSON framing.
WS_MAX_FRAME_BYTES = 64 * 1024
# Protocol pings find dead peers behind NATs that drop idle flows after ~30-60 s.
WS_PING_INTERVAL_S = 20.0
WS_PING_TIMEOUT_S = 20.0
# In-flight requests get this long to finish after SIGTERM (and the drain); SSE streams and
# sockets are ended at once (clients reconnect and resume), so only real work waits.
GRACEFUL_SHUTDOWN_S = 5
# uvicorn's own default for the proxies whose X-Forwarded-For it believes.
TRUSTED_PROXIES = "127.0.0.1,::1"
DEMO_FILE = "demo.json"


def _print(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


async def _with_store(settings: Settings, fn: Callable[[Store], Awaitable[T]]) -> T:
    """Runs ``fn`` on the configured store, opened (and so migrated) first."""
    store = create_store(settings.database_url)
    await store.open()
    try:
        return await fn(store)
    finally:
        await store.close()


async def _with_directory(settings: Settings, fn: Callable[[Directory], Awaitable[T]]) -> T:
    return await _with_store(
        settings, lambda store: fn(Directory(store, settings.max_message_chars))
    )


async def _migrated(store: Store) -> None:
    """Nothing to do: opening the store applied the migrations."""


async def _create_account(directory: Directory, name: str) -> dict[str, str]:
    account, key = await directory.create_account(name)
    return {"accountID": account.id, "apiKey": key}


async def _create_operator(directory: Directory, args: argparse.Namespace) -> dict[str, int]:
    await directory.get_account(args.account)
    operator = await directory.create_operator(
        args.account, name=args.name, email=args.email, password=args.password, is_admin=args.admin
    )
    return {"operatorID": operator.id}


async def _demo(settings: Settings) -> dict[str, Any]:
    """The demo account of this data directory, created on first run through the app's own
    services (server/demo.py), so its sample conversations are written as the APIs write."""
    path = settings.data_dir / DEMO_FILE
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        svc: Services = app.state.services
        if path.exists():
            saved: dict[str, Any] = orjson.loads(path.read_bytes())
            try:
                await svc.directory.get_account(str(saved["accountID"]))
                return saved
            except NotFound:
                # The database was reset (or moved) under the file: its credentials are dead.
                path.unlink()
        created = await create_demo(svc)
    demo = {
        "accountID": created.account_id,
        "apiKey": created.api_key,
        "operatorID": created.operator_id,
        "email": created.email,
        "password": created.password,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(orjson.dumps(demo))
    return demo


def _serve(settings: Settings, host: str, port: int, demo: bool) -> None:
    problem = data_dir_problem(settings.data_dir)
    if problem is not None:
        # Refused now, not discovered by the first visitor whose message cannot be written.
        raise SettingsError(f"{problem}; the server needs to write there (see `liveop doctor`)")
    if demo:
        info = asyncio.run(_demo(settings))
        base = settings.public_url or f"http://{host}:{port}"
        sys.stdout.write(
            "Live Operator Chat demo\n"
            f"  inbox:        {base}/app/\n"
            f"  chat window:  {base}/{info['accountID']}/liveoperator/loadchat\n"
            f'  embed:        <script src="{base}/widget.js" data-account="{info["accountID"]}"'
            " async></script>\n"
            f"  operator:     {info['email']} / {info['password']}\n"
            f"  operatorID:   {info['operatorID']}\n"
            f"  account:      {info['accountID']}\n"
            f"  API key:      {info['apiKey']}\n"
            f"  data dir:     {settings.data_dir}\n\n"
        )
        sys.stdout.flush()
    shutdown = ShutdownState()
    config = uvicorn.Config(
        create_app(settings, shutdown),
        host=host,
        port=port,
        **uvicorn_options(
            # In JSON, server.api.telemetry writes the access line (with route and request id).
            access_log=settings.access_log and settings.log_format != JSON,
            log_format=settings.log_format,
        ),
    )
    GracefulServer(config, shutdown, settings.shutdown_drain_s).run()


def uvicorn_options(*, access_log: bool, log_format: str = TEXT) -> dict[str, Any]:
    """How ``liveop serve`` runs uvicorn; the benchmarks' launcher starts from the same."""
    # Read once here so that the connection caps and uvicorn exempt the same proxies.
    trusted_proxies = os.environ.get("FORWARDED_ALLOW_IPS", TRUSTED_PROXIES)
    http, ws = guarded_protocols(trusted_proxies, total=process_connection_cap())
    return {
        "http": http,
        "ws": ws,
        "forwarded_allow_ips": trusted_proxies,
        "log_config": uvicorn_log_config(log_format),
        "access_log": access_log,
        "ws_max_size": WS_MAX_FRAME_BYTES,
        # Deflate keeps a zlib context per socket: 73 KiB per idle socket instead of 31 KiB
        # (bench/realtime_bench.py), for chat frames of a few hundred bytes.
        "ws_per_message_deflate": False,
        "ws_ping_interval": WS_PING_INTERVAL_S,
        "ws_ping_timeout": WS_PING_TIMEOUT_S,
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="liveop", description="Live Operator Chat server")
    sub = parser.add_subparsers(dest="command", required=True)
    # Left as text for argparse to convert: a bad $PORT then fails only `serve`, with a usage
    # message, instead of crashing every command while the parser is built.
    port = os.environ.get("PORT") or str(DEFAULT_PORT)
    for name, help_text in (
        ("serve", "run the server"),
        ("demo", "create a demo account on first run, print how to use it, and serve"),
    ):
        serve = sub.add_parser(name, help=help_text)
        serve.add_argument("--host", default=DEFAULT_HOST)
        serve.add_argument("--port", type=int, default=port, help="default: $PORT or 8000")
        if name == "serve":
            serve.add_argument("--demo", action="store_true", help="same as `liveop demo`")

    account = sub.add_parser("account", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    create_account = account.add_parser("create", help="create an account and its API key")
    create_account.add_argument("--name", required=True)

    operator = sub.add_parser("operator", help="manage operators").add_subparsers(
        dest="action", required=True
    )
    create_operator = operator.add_parser("create", help="create an operator")
    create_operator.add_argument("--account", required=True)
    create_operator.add_argument("--name", required=True)
    create_operator.add_argument("--email", required=True)
    create_operator.add_argument("--password", required=True)
    create_operator.add_argument("--admin", action="store_true")

    sub.add_parser("migrate", help="apply pending migrations to $LIVEOP_DATABASE_URL and exit")
    sub.add_parser(
        "rotate-credentials",
        help="re-seal every channel's credentials, assistant's API key and webhook secret with"
        " the first of"
        " LIVEOP_ENCRYPTION_KEYS",
    )
    sub.add_parser(
        "doctor",
        help="check the configuration, data directory, store, broker and channel credentials",
    )
    export = sub.add_parser("export", help="write the whole installation as JSON Lines")
    export.add_argument("--output", type=Path, help="default: stdout")
    import_ = sub.add_parser("import", help="load an export into an empty store")
    import_.add_argument("--input", type=Path, help="default: stdin")
    return parser


def _run(args: argparse.Namespace, settings: Settings) -> None:
    if args.command in ("serve", "demo"):
        _serve(settings, args.host, args.port, args.command == "demo" or args.demo)
    elif args.command == "account":
        _print(asyncio.run(_with_directory(settings, lambda d: _create_account(d, args.name))))
    elif args.command == "operator":
        _print(asyncio.run(_with_directory(settings, lambda d: _create_operator(d, args))))
    elif args.command == "migrate":
        asyncio.run(_with_store(settings, _migrated))
        _print({"database": urlsplit(settings.database_url).scheme, "migrated": True})
    elif args.command == "rotate-credentials":
        sealer = Sealer(settings.encryption_keys)
        # Channels, then webhooks: each all or nothing, and a second run after a failure
        # re-seals again what the first did (both keys open it).
        count = asyncio.run(_with_store(settings, lambda s: s.reseal_channels(sealer.reseal)))
        count += asyncio.run(_with_store(settings, lambda s: s.reseal_webhooks(sealer.reseal)))
        _print({"resealed": count})
    elif args.command == "export":
        count = asyncio.run(_with_store(settings, lambda store: export_to(store, args.output)))
        if args.output is not None:  # stdout carries the rows themselves
            _print({"exported": count})
    else:
        count = asyncio.run(_with_store(settings, lambda store: import_from(store, args.input)))
        _print({"imported": count})


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "doctor":
        # Before load_settings: a bad setting is one of the findings, not the end of the run.
        text, healthy = doctor(os.environ)
        sys.stdout.write(text)
        return 0 if healthy else 1
    try:
        _run(args, load_settings())
    except LiveOpError as exc:
        sys.stderr.write(f"liveop: {exc.code}: {exc.message}\n")
        return 1
    except (StoreError, ImportFailed, UnreadableSecret) as exc:
        sys.stderr.write(f"liveop: {args.command} failed: {exc}\n")
        return 1
    except SettingsError as exc:
        sys.stderr.write(f"liveop: {exc}\n")
        return 2
    return 0
