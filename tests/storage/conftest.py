"""The Store contract runs against every backend listed here."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import create_store
from storage.base import Store

BACKENDS = ["sqlite"]


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    assert request.param == "sqlite"
    backend = create_store(f"sqlite:///{tmp_path / 'contract.db'}")
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()
