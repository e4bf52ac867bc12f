"""A Store that times every call: the store boundary's metrics, kept out of the backends.

Wrapping the store once, where the app builds it, measures every caller (engine, directory,
inbox, outbound worker, feed) without a hook in each, and leaves the backends untouched.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

from server import metrics
from storage.base import Store
from storage.models import Committed

# Calls that return an async iterator (not awaited), timed by the caller if at all.
_STREAMS = frozenset({"export_rows"})


class MeteredStore:
    """Delegates every attribute to the wrapped store; coroutine methods are timed under
    their own name, so the ``operation`` label has one value per Store method."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._store, name)
        if name.startswith("_") or name in _STREAMS or not callable(found):
            return found
        timed = _timed(name, found)
        # Cached on the instance: __getattr__ runs once per method, not per call.
        setattr(self, name, timed)
        return timed


def _timed(name: str, call: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    latency = metrics.store_latency.labels(name)
    errors = metrics.store_errors.labels(name)

    @functools.wraps(call)
    async def timed(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            result = await call(*args, **kwargs)
        except Exception:
            errors.inc()
            raise
        finally:
            latency.observe(time.perf_counter() - start)
        if isinstance(result, Committed) and not result.duplicate:
            channel = metrics.messages_committed.labels(result.conversation.source_app)
            channel.inc(len(result.messages))
        return result

    return timed


def metered(store: Store) -> Store:
    return cast(Store, MeteredStore(store))
