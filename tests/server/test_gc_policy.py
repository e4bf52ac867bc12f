"""The server's garbage-collection policy (server/gc_policy.py): what survives is kept out of
the collector's walks, young garbage is never frozen, frozen cyclic garbage is freed by the
next reclaim, and a stopped policy gives everything back."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from server.gc_policy import RECLAIM_GROWTH, GcPolicy


class Node:
    """A weak-referenceable object that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


class Memory:
    def __init__(self) -> None:
        self.peak = 1000

    def __call__(self) -> int:
        return self.peak


@pytest.fixture
def policy() -> Iterator[GcPolicy]:
    found = GcPolicy(Memory())
    yield found
    # The test process builds more apps: nothing of this test stays frozen.
    found.stop()
    assert gc.get_freeze_count() == 0


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


def test_survivors_leave_the_collectors_walks(policy: GcPolicy) -> None:
    kept = Node()
    policy.settle()
    assert gc.get_freeze_count() > 0
    assert all(o is not kept for o in gc.get_objects())


def test_young_garbage_is_freed_not_frozen(policy: GcPolicy) -> None:
    garbage = _cycle()
    policy.settle()
    assert garbage() is None


def test_frozen_cyclic_garbage_waits_for_the_reclaim(policy: GcPolicy) -> None:
    a = Node()
    a.other = Node()
    a.other.other = a
    alive = weakref.ref(a)
    policy.settle()
    del a
    gc.collect()
    assert alive() is not None, "frozen: a full collection does not walk it"
    policy.reclaim()
    assert alive() is None


def test_settle_reclaims_once_memory_has_grown_enough() -> None:
    memory = Memory()
    policy = GcPolicy(memory)
    try:
        a = Node()
        a.other = a
        alive = weakref.ref(a)
        policy.settle()
        del a
        memory.peak = int(1000 * RECLAIM_GROWTH)
        policy.settle()
        assert alive() is not None
        memory.peak += 1
        policy.settle()
        assert alive() is None
    finally:
        policy.stop()
