"""The in-process broker of the embedded default: publish is a direct call."""

from __future__ import annotations

from realtime.broker import OnMessage, OnReset


class MemoryBroker:
    def __init__(self) -> None:
        self._on_message: OnMessage | None = None
        self._channels: set[str] = set()

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None:
        # One process never loses its own publishes, so there is nothing to reset.
        del on_reset
        self._on_message = on_message

    async def close(self) -> None:
        self._on_message = None
        self._channels.clear()

    async def publish(self, channel: str, payload: bytes) -> bool:
        if self._on_message is not None and channel in self._channels:
            self._on_message(channel, payload)
        return True

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
