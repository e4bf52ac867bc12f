"""Issue 21 item 13: store errors a client can retry answered 500, and nothing bounded how
many requests hung on a stalled store.

A busy SQLite file and a lost PostgreSQL connection are now 503 with Retry-After, and the
requests in flight are bounded: past the limit a request waits briefly, then gets a 503.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path

import asyncpg
import httpx
import pytest
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server.api.wire import InFlightLimit
from server.app import create_app
from server.settings import Settings, load_settings
from tests.conftest import Tenant, assert_error, make_tenant
from tests.storage.conftest import postgres_url  # noqa: F401 (a fixture used by name)


@contextmanager
def write_lock(settings: Settings) -> Iterator[None]:
    """Another process's write transaction on the SQLite file, as a backup tool or a second
    server would hold it."""
    path = settings.database_url.removeprefix("sqlite:///")
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        yield
    finally:
        other.rollback()
        other.close()


def _postmessage(client: httpx.AsyncClient, tenant: Tenant, text: str) -> httpx.Request:
    return client.build_request(
        "POST", f"/{tenant.account_id}/liveoperator/postmessage", data={"message": text}
    )


def _assert_unavailable(response: httpx.Response) -> None:
    assert_error(response, 503, "store_unavailable")
    assert response.headers["Retry-After"].isdigit()


@asynccontextmanager
async def answering(app: ASGIApp) -> AsyncIterator[httpx.AsyncClient]:
    """A client that gets the error response the server sends, as a real client would
    (the server still logs the exception it re-raises)."""
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://liveop.test") as client:
        yield client


async def test_a_busy_sqlite_store_answers_503_with_retry_after_not_500(
    app: Starlette, settings: Settings, tenant: Tenant
) -> None:
    async with answering(app) as client:
        with write_lock(settings):
            busy = await client.send(_postmessage(client, tenant, "hello"))
        _assert_unavailable(busy)
        retried = await client.send(_postmessage(client, tenant, "hello"))
    assert retried.status_code == 200, retried.text


@pytest.fixture
def postgres_settings(tmp_path: Path, postgres_url: str) -> Settings:  # noqa: F811
    return load_settings(
        {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_DATABASE_URL": postgres_url}
    )


async def test_a_lost_postgresql_connection_answers_503_with_retry_after_not_500(
    postgres_settings: Settings,
    postgres_url: str,  # noqa: F811
) -> None:
    app = create_app(postgres_settings)
    async with app.router.lifespan_context(app), answering(app) as client:
        tenant = await make_tenant(client, app.state.services)
        convo = await tenant.visitor_says("hello")
        # The connection is lost in the middle of a write: held on a row lock, then ended.
        locker = await asyncpg.connect(postgres_url)
        try:
            async with locker.transaction():
                await locker.execute("SELECT 1 FROM conversations WHERE id = $1 FOR UPDATE", convo)
                sent = asyncio.create_task(
                    client.post(
                        f"/{tenant.account_id}/liveoperator/postmessage",
                        data={"message": "hi", "convoID": convo},
                    )
                )
                waiting = None
                while waiting is None:
                    await asyncio.sleep(0.05)
                    waiting = await locker.fetchval(
                        "SELECT pid FROM pg_stat_activity"
                        " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                    )
                await locker.execute("SELECT pg_terminate_backend($1)", waiting)
                lost = await sent
        finally:
            await locker.close()
        retried = await client.post(
            f"/{tenant.account_id}/liveoperator/postmessage",
            data={"message": "hi", "convoID": convo},
        )
    _assert_unavailable(lost)
    assert retried.status_code == 200, retried.text


async def test_requests_waiting_on_a_stalled_store_are_bounded(
    app: Starlette, settings: Settings, tenant: Tenant
) -> None:
    async with answering(InFlightLimit(app, limit=2, wait_s=0.2)) as client:
        with write_lock(settings):
            sends = [
                asyncio.create_task(client.send(_postmessage(client, tenant, f"m{i}")))
                for i in range(5)
            ]
            done, pending = await asyncio.wait(sends, return_when=asyncio.FIRST_COMPLETED)
            while len(done) < 3:
                more, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                done |= more
            turned_away = [t.result() for t in done]
        held = [await t for t in pending]
    assert len(held) == 2
    for response in turned_away:
        _assert_unavailable(response)
    # The two that held a slot waited on the store, and finished once it moved.
    assert all(r.status_code in (200, 503) for r in held)
