"""Durable state: the Store protocol and its backends, chosen by URL scheme."""

from __future__ import annotations

from urllib.parse import urlsplit

from storage.base import Store


class UnsupportedStoreURL(ValueError):
    pass


def create_store(url: str) -> Store:
    """``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (a file: readers and
    the writer need to share it, so there is no in-memory variant), or a PostgreSQL URL,
    ``postgresql://user:password@host:port/database`` (``postgres://`` also works).

    Backends are imported lazily so an installation only needs the driver it uses.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from storage.sqlite import SQLiteStore

        path = url[len("sqlite://") :]
        path = path[1:] if path.startswith("/") else path
        if not path:
            raise UnsupportedStoreURL(f"no database path in {url!r}")
        return SQLiteStore(path)
    if scheme in ("postgresql", "postgres"):
        from storage.postgres import PostgresStore

        return PostgresStore(url)
    raise UnsupportedStoreURL(f"unsupported database URL scheme {scheme!r} in {url!r}")


__all__ = ["Store", "UnsupportedStoreURL", "create_store"]
