"""The Store contract runs against every backend listed here."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from server.settings import Settings, load_settings
from storage import create_store
from storage.base import Store
from tests.conftest import require_service

BACKENDS = ["sqlite", "postgres"]
# The database file of sqlite_store, in the test's tmp_path.
SQLITE_FILE = "contract.db"

# A server where the tests may create and drop databases; CI points this at its own service.
ADMIN_URL = os.environ.get(
    "LIVEOP_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
# A reachable server answers at once; this only bounds the wait for one that is not there.
CONNECT_TIMEOUT_S = 5.0


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty database, dropped after the test."""
    try:
        admin = await asyncpg.connect(ADMIN_URL, timeout=CONNECT_TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
        require_service(f"PostgreSQL unreachable at {ADMIN_URL}: {exc}")
    name = f"liveop_test_{secrets.token_hex(6)}"
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        yield urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    finally:
        # FORCE ends the sessions a failed test may have left behind.
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        await admin.close()


def backend_settings(request: pytest.FixtureRequest, tmp_path: Path, **environ: str) -> Settings:
    """The app's settings on the backend ``request.param`` names ("sqlite": a file under
    ``tmp_path``; "postgres": a fresh database), plus ``environ``."""
    environ = {"LIVEOP_DATA_DIR": str(tmp_path / "data"), **environ}
    if request.param == "postgres":
        environ["LIVEOP_DATABASE_URL"] = request.getfixturevalue("postgres_url")
    return load_settings(environ)


@pytest.fixture(params=BACKENDS)
def settings_on_both_backends(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """A test module that imports this as ``settings`` runs every test on SQLite and on
    PostgreSQL."""
    return backend_settings(request, tmp_path)


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    backend = create_store(f"sqlite:///{tmp_path / SQLITE_FILE}")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture
async def postgres_store(postgres_url: str) -> AsyncIterator[Store]:
    backend = create_store(postgres_url)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    # Looked up by name so the sqlite variant never asks for a PostgreSQL server.
    backend: Store = request.getfixturevalue(f"{request.param}_store")
    return backend
