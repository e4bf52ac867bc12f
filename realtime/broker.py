"""The broker: a doorbell between processes, never the log.

Events are committed to the store first and published after; a subscriber that may have
missed a publish (its connection to the broker dropped) is told so and catches up from the
store. Backends are chosen by URL scheme and imported lazily.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol
from urllib.parse import urlsplit

# Called on the event loop for every message on a subscribed channel.
OnMessage = Callable[[str, bytes], None]
# Called on the event loop after the broker lost and regained its subscriptions: anything
# published in between may be lost, so every subscriber must catch up from the store.
OnReset = Callable[[], None]


class Broker(Protocol):
    """Guarantees every backend keeps:

    - Delivery is at most once, in publish order per publishing process and channel.
    - ``publish`` never raises for a broker outage: it logs and returns False, because a
      committed write must not fail for want of a doorbell.
    - After an outage the backend reconnects with capped backoff, resubscribes every channel
      still subscribed, and then calls ``on_reset`` once.
    - ``subscribe`` returns once messages published afterwards will be delivered.
    """

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None: ...

    async def close(self) -> None: ...

    async def publish(self, channel: str, payload: bytes) -> bool: ...

    async def subscribe(self, channel: str) -> None: ...

    async def unsubscribe(self, channel: str) -> None: ...


class UnsupportedBrokerURL(ValueError):
    pass


def create_broker(url: str) -> Broker:
    """``memory://`` (one process) or ``redis://host:port/db`` (any number of processes)."""
    scheme = urlsplit(url).scheme
    if scheme == "memory":
        from realtime.backends.memory import MemoryBroker

        return MemoryBroker()
    if scheme in ("redis", "rediss", "unix"):
        from realtime.backends.redis import RedisBroker

        return RedisBroker(url)
    raise UnsupportedBrokerURL(f"unsupported broker URL scheme {scheme!r} in {url!r}")
