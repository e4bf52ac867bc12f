"""Schema migrations, one numbered SQL file per step and per dialect."""

from __future__ import annotations

from importlib import resources


def load_migrations(dialect: str) -> list[tuple[int, str]]:
    """The (version, sql) steps for ``dialect``, in order. Files are named ``NNNN_name.sql``."""
    folder = resources.files(__package__).joinpath(dialect)
    steps = [
        (int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8"))
        for entry in folder.iterdir()
        if entry.name.endswith(".sql")
    ]
    return sorted(steps)
