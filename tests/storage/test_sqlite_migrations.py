"""SQLite steps that change data already stored, applied to a store made before them."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from storage import create_store
from storage.base import DuplicateEmail
from storage.migrations import load_migrations

# The step that makes operator emails unique case-insensitively.
EMAIL_NOCASE = 5


def _store_before(path: Path, version: int) -> None:
    """A SQLite store migrated up to (not including) ``version``."""
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY)")
        for step, sql in load_migrations("sqlite"):
            if step < version:
                db.executescript(sql)
                db.execute("INSERT INTO schema_migrations (version) VALUES (?)", (step,))


def _add_operators(path: Path, *operators: tuple[str, int, str, float]) -> None:
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as db:
        for account in sorted({o[0] for o in operators}):
            db.execute(
                "INSERT OR IGNORE INTO accounts (id, name, created) VALUES (?, ?, 0)",
                (account, account),
            )
        db.executemany(
            "INSERT INTO operators (account_id, id, name, email, password_hash, is_admin,"
            " created, lang) VALUES (?, ?, 'Op', ?, 'h', 0, ?, 'en')",
            operators,
        )


async def test_case_variant_emails_keep_the_one_that_could_log_in(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    _store_before(path, EMAIL_NOCASE)
    # Login lowercases what it is given, and SQLite compared exactly: of these three only the
    # lowercase one (the newest) could log in.
    _add_operators(
        path,
        ("acme", 1, "Same@x.test", 1.0),
        ("acme", 2, "same@x.test", 2.0),
        ("globex", 1, "SAME@X.TEST", 0.0),
        ("globex", 2, "other@x.test", 3.0),
    )
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        emails = {
            (o.account_id, o.id): o.email
            for account in ("acme", "globex")
            for o in await store.list_operators(account)
        }
        assert emails == {
            ("acme", 1): "duplicate-acme-1+Same@x.test",
            ("acme", 2): "same@x.test",
            ("globex", 1): "duplicate-globex-1+SAME@X.TEST",
            ("globex", 2): "other@x.test",
        }
        (found,) = await store.get_credentials("SAME@x.test", limit=2)
        assert (found.operator.account_id, found.operator.id) == ("acme", 2)
        # Unique within an account (since migration 0010, no longer across accounts).
        with pytest.raises(DuplicateEmail):
            await store.create_operator("acme", "New", "same@X.test", "h", False)
    finally:
        await store.close()


async def test_case_variant_emails_none_of_which_could_log_in_keep_the_oldest(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    _store_before(path, EMAIL_NOCASE)
    _add_operators(path, ("acme", 1, "Same@x.test", 5.0), ("acme", 2, "SAME@x.test", 4.0))
    store = create_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert [o.email for o in await store.list_operators("acme")] == [
            "duplicate-acme-1+Same@x.test",
            "SAME@x.test",
        ]
        (found,) = await store.get_credentials("same@x.test", limit=2)
        assert found.operator.id == 2
    finally:
        await store.close()
