"""Counted slots: at most ``limit`` concurrent holders per key in this process.

For long-lived connections that one principal could otherwise open without bound (an
operator's event streams). Process-local on purpose: a slot is held by an open connection
of this process, and is given back when it closes, however it closes.
"""

from __future__ import annotations

from collections import Counter


class Holders:
    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("a limit of holders must be positive")
        self.limit = limit
        self._held: Counter[str] = Counter()

    def acquire(self, key: str) -> bool:
        """Takes a slot of ``key``; False (and nothing taken) when all are held."""
        if self._held[key] >= self.limit:
            return False
        self._held[key] += 1
        return True

    def release(self, key: str) -> None:
        self._held[key] -= 1
        if self._held[key] <= 0:
            del self._held[key]

    def held(self, key: str) -> int:
        return self._held[key]
