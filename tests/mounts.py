"""A small tmpfs of its own for the tests that need a disk that fills up or turns read-only:
the real failure, not a mock of it. Mounting needs root (CAP_SYS_ADMIN), as in CI."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import require_service

# Big enough for a SQLite database and a secret key, small enough to fill in a moment.
SIZE_BYTES = 8 * 1024 * 1024


class Disk:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read_only(self) -> None:
        _mount("-o", "remount,ro", str(self.path))

    def writable(self) -> None:
        _mount("-o", "remount,rw", str(self.path))

    def fill(self) -> None:
        """Writes until the disk refuses: ENOSPC for everyone after."""
        with (self.path / "filler").open("wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 65536)
            except OSError:
                pass

    def free(self) -> None:
        (self.path / "filler").unlink(missing_ok=True)


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True)


@contextmanager
def small_disk(path: Path) -> Iterator[Disk]:
    path.mkdir(parents=True, exist_ok=True)
    try:
        _mount("-t", "tmpfs", "-o", f"size={SIZE_BYTES}", "tmpfs", str(path))
    except (OSError, subprocess.CalledProcessError) as exc:
        require_service(f"mounting a tmpfs (needs root): {exc}")
    try:
        yield Disk(path)
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
