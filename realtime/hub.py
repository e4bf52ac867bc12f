"""One process's fan-out: broker channels in, connection outboxes out.

A channel is subscribed on the broker while at least one local outbox listens to it. Each
published payload is decoded once per process, whatever the number of listeners.

What this process publishes reaches its own listeners at once, before and whatever the broker
does: the broker carries only what crosses processes, so a broker outage delays other
processes' clients (until they catch up from the store) but never this process's. Each
payload names the hub that sent it, and a hub ignores its own payloads coming back.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time

import orjson
from prometheus_client import Counter

from realtime.broker import Broker
from realtime.outbox import RESYNC, Item, Outbox, ReplayGate

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


# Names one hub (one process) among those sharing a broker; random, so never reused.
ORIGIN_BYTES = 8


def encode(seq: int | None, kind: str, data: bytes, origin: str = "") -> bytes:
    """The broker payload: a JSON header line, then the client-ready JSON untouched, so a
    receiving process never re-serializes it. orjson never emits a raw newline."""
    return orjson.dumps([seq, kind, origin]) + b"\n" + data


def decode(payload: bytes) -> tuple[Item, str]:
    """The item and the hub that sent it ("" from a process that did not say: an older
    version during a rolling upgrade)."""
    header, _, data = payload.partition(b"\n")
    seq, kind, *rest = orjson.loads(header)
    origin = rest[0] if rest else ""
    if (
        not (seq is None or isinstance(seq, int))
        or not isinstance(kind, str)
        or not isinstance(origin, str)
        or not data
    ):
        raise ValueError("malformed payload")
    return Item(seq, kind, data, received=time.monotonic()), origin


class Hub:
    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._listeners: dict[str, set[Outbox]] = {}
        # Channels whose broker subscription is still being confirmed.
        self._subscribing: dict[str, asyncio.Future[None]] = {}
        # Every catch-up of this process's outboxes goes through it: see ReplayGate.
        self.replays = ReplayGate()
        self.origin = secrets.token_hex(ORIGIN_BYTES)
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
        """Delivers to this process's listeners at once, then rings the other processes;
        False when the broker could not (their clients catch up from the store)."""
        self._deliver(channel, Item(seq, kind, data, received=time.monotonic()))
        published = await self._broker.publish(channel, encode(seq, kind, data, self.origin))
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
        if not self._listeners.get(channel):
            return
        try:
            item, origin = decode(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            log.warning("dropping a malformed broker payload on %s", channel)
            return
        if origin != self.origin:  # this process's own were delivered when published
            self._deliver(channel, item)

    def _deliver(self, channel: str, item: Item) -> None:
        for outbox in tuple(self._listeners.get(channel, ())):
            outbox.push(item)

    def _on_reset(self) -> None:
        broker_reconnects.inc()
        if self._outage_since is not None:
            broker_outage.inc(time.monotonic() - self._outage_since)
            self._outage_since = None
        for outboxes in self._listeners.values():
            for outbox in outboxes:
                outbox.push(RESYNC)
