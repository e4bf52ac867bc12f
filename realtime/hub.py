"""One process's fan-out: broker channels in, connection outboxes out.

A channel is subscribed on the broker while at least one local outbox listens to it. Each
published payload is decoded once per process, whatever the number of listeners.
"""

from __future__ import annotations

import asyncio
import logging
import time

import orjson
from prometheus_client import Counter

from realtime.broker import Broker
from realtime.outbox import RESYNC, Item, Outbox

log = logging.getLogger(__name__)

# The broker's health, in the process's metrics (docs/operations.md).
events_published = Counter(
    "liveop_events_published_total",
    "Events rung on the broker after a commit, by result (ok, failed: the broker was down)",
    ["result"],
)
broker_reconnects = Counter(
    "liveop_broker_reconnects_total",
    "Times the broker connection was lost and regained (subscribers then catch up)",
)
broker_outage = Counter(
    "liveop_broker_outage_seconds_total",
    "Seconds from the first publish that failed to the broker's reconnection",
)
_PUBLISHED_OK = events_published.labels("ok")
_PUBLISHED_FAILED = events_published.labels("failed")


def encode(seq: int | None, kind: str, data: bytes) -> bytes:
    """The broker payload: a JSON header line, then the client-ready JSON untouched, so a
    receiving process never re-serializes it. orjson never emits a raw newline."""
    return orjson.dumps([seq, kind]) + b"\n" + data


def decode(payload: bytes) -> Item:
    header, _, data = payload.partition(b"\n")
    seq, kind = orjson.loads(header)
    if not (seq is None or isinstance(seq, int)) or not isinstance(kind, str) or not data:
        raise ValueError("malformed payload")
    return Item(seq, kind, data, received=time.monotonic())


class Hub:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._listeners: dict[str, set[Outbox]] = {}
        # Channels whose broker subscription is still being confirmed.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        # When a publish first failed since the broker was last known up (monotonic).
        self._outage_since: float | None = None

    async def start(self) -> None:
        await self._broker.start(self._on_message, self._on_reset)

    async def close(self) -> None:
        for outboxes in self._listeners.values():
            for outbox in outboxes:
                outbox.close()
        self._listeners.clear()
        await self._broker.close()

    async def publish(self, channel: str, seq: int | None, kind: str, data: bytes) -> bool:
        published = await self._broker.publish(channel, encode(seq, kind, data))
        if published:
            _PUBLISHED_OK.inc()
        else:
            _PUBLISHED_FAILED.inc()
            if self._outage_since is None:
                self._outage_since = time.monotonic()
        return published

    async def attach(self, channel: str, outbox: Outbox) -> None:
        """Returns once events published from now on reach ``outbox``."""
        listeners = self._listeners.get(channel)
        if listeners is not None:
            listeners.add(outbox)
            pending = self._subscribing.get(channel)
            if pending is not None:
                await asyncio.shield(pending)
            return
        self._listeners[channel] = {outbox}
        pending = self._subscribing[channel] = asyncio.get_running_loop().create_future()
        try:
            await self._broker.subscribe(channel)
        except BaseException as exc:
            pending.set_exception(exc)
            pending.exception()  # retrieved here so a lone attach leaves no warning
            await self.detach(channel, outbox)
            raise
        else:
            pending.set_result(None)
        finally:
            del self._subscribing[channel]

    async def detach(self, channel: str, outbox: Outbox) -> None:
        outbox.close()
        listeners = self._listeners.get(channel)
        if listeners is None:
            return
        listeners.discard(outbox)
        if not listeners:
            del self._listeners[channel]
            await self._broker.unsubscribe(channel)

    def listening(self) -> int:
        return sum(len(outboxes) for outboxes in self._listeners.values())

    def _on_message(self, channel: str, payload: bytes) -> None:
        listeners = self._listeners.get(channel)
        if not listeners:
            return
        try:
            item = decode(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("dropping a malformed broker payload on %s", channel)
            return
        for outbox in tuple(listeners):
            outbox.push(item)

    def _on_reset(self) -> None:
        broker_reconnects.inc()
        if self._outage_since is not None:
            broker_outage.inc(time.monotonic() - self._outage_since)
            self._outage_since = None
        for outboxes in self._listeners.values():
            for outbox in outboxes:
                outbox.push(RESYNC)
