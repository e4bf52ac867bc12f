"""The broker for many processes: Redis pub/sub, one publishing connection and one subscriber.

The subscriber connection is owned by one reader task. When it breaks, the reader opens a
fresh one with capped, jittered backoff, subscribes every channel still wanted, waits for
Redis to confirm them, and only then calls ``on_reset``: a subscriber that catches up from the
store at that point cannot miss an event published after its catch-up read.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from typing import Any, NoReturn

from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from realtime.broker import OnMessage, OnReset

log = logging.getLogger(__name__)

# The first reconnect comes almost at once: most breaks (a killed connection, a failover)
# heal immediately, and every moment unsubscribed is a moment only catch-up can recover.
RECONNECT_INITIAL_S = 0.05
# During a long outage a retry every 2 s per process is negligible load on a recovering
# Redis, and recovery is still noticed within 2 s.
RECONNECT_MAX_S = 2.0
# Each delay is scaled by a random factor in [RECONNECT_JITTER, 1] so that processes which
# lost Redis together do not reconnect, and catch up from the store, in lockstep.
RECONNECT_JITTER = 0.5
# A subscriber connection that lived this long was a recovery, not a flap: the next outage
# starts again from the fast first retry. A flapping connection keeps backing off instead,
# so that on_reset (and every subscriber's catch-up) cannot storm.
STABLE_CONNECTION_S = 10.0
# After this long without a frame from Redis the reader sends a PING; after twice this long
# the connection is declared dead. TCP keepalive alone misses a Redis that is wedged or
# paused (its kernel still acknowledges probes) and takes ~45 s for a vanished host;
# redis-py's health_check_interval sends PINGs but never notices a missing PONG on a read
# with a timeout. One tiny PING per idle interval bounds staleness to ~10 s.
LIVENESS_INTERVAL_S = 5.0
# Connecting (with its handshake) and writing SUBSCRIBE or PING take milliseconds on a
# healthy Redis; this long without progress means it is unreachable, and the reconnect loop
# should try again.
SUBSCRIBER_OP_TIMEOUT_S = 2.0
# A PUBLISH takes well under a millisecond; a request that already committed should not
# wait longer than this for a doorbell (covers a pool wait, connect, write and reply).
PUBLISH_TIMEOUT_S = 1.0
# Every operation is bounded with asyncio.timeout, and redis-py's socket_timeout is off:
# with it set (redis-py 8 defaults to 5 s) every write goes through asyncio.wait_for, which
# on Python 3.11 can swallow a task's cancellation (CPython gh-86296). A reader that ignores
# close(), or a request that ignores its client going away, is worse than no timeout there.
NO_SOCKET_TIMEOUT = None
# Should a cancellation still be swallowed somewhere, close() repeats it this often.
CLOSE_CANCEL_EVERY_S = 0.1
# A process publishes on one connection, in batches: every PUBLISH asked for while the
# previous batch was on the wire goes out in the next one, as one pipelined write. One
# connection keeps the process's own publishes in the order they were asked for (with a
# pool, two concurrent publishes could overtake each other and make the receiving process
# fill a seq hole from the store), and batching turns N round trips under load into one.
# A batch takes everything waiting: what waits is at most one round trip's worth of
# publishes, and a round trip is bounded by PUBLISH_TIMEOUT_S even while Redis is away.
# A DEL that must take effect before a publish (a typing indicator the message ends) rides
# in the same queue, so it costs no round trip of its own and cannot be overtaken.
# A pooled publishing connection may have been closed while idle (restart, idle timeout):
# one immediate retry on a fresh connection turns that into a success. Only connection
# errors are retried; after a timeout the PUBLISH may have gone out.
PUBLISH_RETRY = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
# Only the reader reconnects the subscriber. redis-py's PubSub otherwise reconnects and
# resubscribes inside its failure handler before raising, even with zero retries, and a
# concurrent subscribe() could revive a broken connection unseen. A Retry that handles no
# error lets every failure through to the reader.
SUBSCRIBER_RETRY = Retry(NoBackoff(), 0, supported_errors=())
# Shown by CLIENT LIST, so an operator can tell (and kill) the broker's connections.
PUBLISHER_CLIENT_NAME = "liveop-broker-pub"
SUBSCRIBER_CLIENT_NAME = "liveop-broker-sub"

# Everything an outage can raise: redis-py wraps most socket errors, not all of them.
_OUTAGE = (RedisError, OSError)

# What the publishing connection sends: a command's name and its arguments.
_Command = tuple[bytes | str, ...]


class SubscriberSilent(TimeoutError):
    """Redis answered neither traffic nor PING for two liveness intervals."""


class RedisBroker:
    """Guarantees of ``realtime.broker.Broker`` on Redis pub/sub.

    ``subscribe`` and ``unsubscribe`` never raise for an outage either: they record the wish,
    and the reconnect applies it. A ``subscribe`` that cannot be confirmed (Redis is down, or
    the connection breaks before the confirmation) returns anyway; the ``on_reset`` that
    follows recovery covers anything it missed.
    """

    def __init__(self, url: str, *, liveness_interval_s: float = LIVENESS_INTERVAL_S) -> None:
        self._liveness_interval_s = liveness_interval_s
        publisher_pool = BlockingConnectionPool.from_url(
            url,
            max_connections=1,
            # Each batch bounds its own round trip (PUBLISH_TIMEOUT_S).
            timeout=None,
            socket_timeout=NO_SOCKET_TIMEOUT,
            socket_connect_timeout=PUBLISH_TIMEOUT_S,
            retry=PUBLISH_RETRY,
            client_name=PUBLISHER_CLIENT_NAME,
            decode_responses=False,
        )
        subscriber_pool = ConnectionPool.from_url(
            url,
            # One subscriber connection at a time: a second one would be a leak.
            max_connections=1,
            socket_timeout=NO_SOCKET_TIMEOUT,
            socket_connect_timeout=SUBSCRIBER_OP_TIMEOUT_S,
            retry=SUBSCRIBER_RETRY,
            client_name=SUBSCRIBER_CLIENT_NAME,
            decode_responses=False,
        )
        for pool in (publisher_pool, subscriber_pool):
            # The URL's query string overrides keyword arguments; payloads must stay bytes.
            if pool.connection_kwargs.get("decode_responses"):
                raise ValueError(f"the broker URL must not set decode_responses: {url!r}")
        self._publisher = Redis.from_pool(publisher_pool)
        self._subscriber = Redis.from_pool(subscriber_pool)
        self._on_message: OnMessage | None = None
        self._on_reset: OnReset | None = None
        # The channels wanted, whatever Redis currently knows: what a reconnect subscribes.
        self._channels: set[str] = set()
        # The live subscriber, None during an outage. Set and cleared under the lock, which
        # also covers every write to it, so no command lands on a connection being replaced.
        self._pubsub: PubSub | None = None
        self._lock = asyncio.Lock()
        # Per channel, one slot per SUBSCRIBE sent on the live connection, oldest first:
        # Redis confirms them in order, so each confirmation resolves exactly the call that
        # sent it (None marks a resubscription), even across unsubscribe/subscribe flaps.
        self._unconfirmed: dict[str, deque[asyncio.Future[None] | None]] = {}
        self._reset_pending = False
        self._publish_failing = False
        self._reader: asyncio.Task[NoReturn] | None = None
        # Commands (PUBLISH, DEL) waiting for the next batch, each with what its caller
        # awaits, and the task writing batches while any wait.
        self._pending: deque[tuple[_Command, asyncio.Future[bool]]] = deque()
        self._flusher: asyncio.Task[None] | None = None

    async def start(self, on_message: OnMessage, on_reset: OnReset) -> None:
        """Returns after the first connection attempt; if it failed, the reader keeps
        retrying and the eventual recovery calls ``on_reset``."""
        self._on_message = on_message
        self._on_reset = on_reset
        first_attempt = asyncio.Event()
        self._reader = asyncio.create_task(self._run(first_attempt), name="redis-broker-reader")
        await first_attempt.wait()

    async def close(self) -> None:
        reader, self._reader = self._reader, None
        for task in (reader, self._flusher):
            while task is not None and not task.done():
                task.cancel()
                await asyncio.wait([task], timeout=CLOSE_CANCEL_EVERY_S)
        for _, done in self._pending:
            if not done.done():
                done.set_result(False)
        self._pending.clear()
        await self._subscriber.aclose()
        await self._publisher.aclose()

    async def publish(self, channel: str, payload: bytes) -> bool:
        # A waiter that gives up early is told False; its PUBLISH may still go out, which
        # only means other processes hear of the event (they would catch up from the store).
        return await asyncio.shield(self._queue((b"PUBLISH", channel, payload)))

    def delete(self, key: str) -> asyncio.Future[bool]:
        """Queues a DEL of ``key`` behind every publish already asked for and ahead of every
        one asked for after this call returns: Redis runs it before any later publish of this
        process reaches a subscriber. The future says, once it has gone out, whether Redis
        took it (False during an outage, already logged)."""
        return self._queue((b"DEL", key))

    def _queue(self, command: _Command) -> asyncio.Future[bool]:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((command, done))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="redis-broker-publisher")
        return done

    async def _flush(self) -> None:
        """Writes the waiting commands in order, a batch per round trip, until none wait."""
        while self._pending:
            batch = list(self._pending)
            self._pending.clear()
            ok = await self._send(batch)
            for _, done in batch:
                if not done.done():
                    done.set_result(ok)

    async def _send(self, batch: list[tuple[_Command, asyncio.Future[bool]]]) -> bool:
        try:
            async with asyncio.timeout(PUBLISH_TIMEOUT_S):
                if len(batch) == 1:
                    # redis-py 8 leaves the asyncio client's execute_command unannotated.
                    await self._publisher.execute_command(*batch[0][0])  # type: ignore[no-untyped-call]
                else:
                    pipe = self._publisher.pipeline(transaction=False)
                    for command, _ in batch:
                        pipe.execute_command(*command)
                    await pipe.execute()
        except _OUTAGE as exc:
            # Warn once per outage: under load, one line per publish would flood the log.
            if not self._publish_failing:
                log.warning("redis broker: publish failed, events go unannounced: %r", exc)
            self._publish_failing = True
            return False
        if self._publish_failing:
            log.info("redis broker: publishing again")
            self._publish_failing = False
        return True

    async def subscribe(self, channel: str) -> None:
        self._channels.add(channel)
        async with self._lock:
            pubsub = self._pubsub
            if pubsub is None:
                return
            confirmed = asyncio.get_running_loop().create_future()
            self._unconfirmed.setdefault(channel, deque()).append(confirmed)
            try:
                async with asyncio.timeout(SUBSCRIBER_OP_TIMEOUT_S):
                    await pubsub.subscribe(channel)
            except _OUTAGE as exc:
                # A failed write has dropped the connection; the reader reconnects.
                log.warning("redis broker: subscribe %s deferred to reconnect: %r", channel, exc)
                return
        try:
            # A connection that cannot confirm within this long is declared dead by the
            # reader anyway, which releases this wait.
            async with asyncio.timeout(2 * self._liveness_interval_s):
                await confirmed
        except TimeoutError:
            log.warning("redis broker: subscribe %s not confirmed, relying on reset", channel)

    async def unsubscribe(self, channel: str) -> None:
        self._channels.discard(channel)
        async with self._lock:
            if self._pubsub is None:
                return
            try:
                async with asyncio.timeout(SUBSCRIBER_OP_TIMEOUT_S):
                    await self._pubsub.unsubscribe(channel)
            except _OUTAGE as exc:
                # The reconnect will not resubscribe it, and delivery checks _channels.
                log.warning("redis broker: unsubscribe %s failed: %r", channel, exc)

    async def _run(self, first_attempt: asyncio.Event) -> NoReturn:
        loop = asyncio.get_running_loop()
        delay = RECONNECT_INITIAL_S
        while True:
            pubsub = self._subscriber.pubsub()
            opened = loop.time()
            try:
                async with asyncio.timeout(SUBSCRIBER_OP_TIMEOUT_S):
                    # redis-py 8 leaves PubSub.connect and PubSub.aclose unannotated.
                    await pubsub.connect()  # type: ignore[no-untyped-call]
                resubscribed = await self._go_live(pubsub)
                first_attempt.set()
                await self._read(pubsub, resubscribed)
            except _OUTAGE as exc:
                # Warn when an outage begins, not at every failed attempt during it.
                level = logging.DEBUG if self._reset_pending else logging.WARNING
                log.log(level, "redis broker: subscriber connection lost: %r", exc)
            except Exception:
                # A bug here must not leave the process deaf for good: treat it as an
                # outage, so the subscribers are reset once the reader is back.
                log.exception("redis broker: reader failed")
            finally:
                await self._go_dark(pubsub)
            first_attempt.set()
            self._reset_pending = True
            if loop.time() - opened >= STABLE_CONNECTION_S:
                delay = RECONNECT_INITIAL_S
            await asyncio.sleep(delay * random.uniform(RECONNECT_JITTER, 1.0))
            delay = min(delay * 2, RECONNECT_MAX_S)

    async def _go_live(self, pubsub: PubSub) -> set[str]:
        """Subscribes every wanted channel and makes ``pubsub`` the live one; returns the
        channels whose confirmation completes the recovery."""
        async with self._lock:
            wanted = set(self._channels)
            if wanted:
                for channel in wanted:
                    self._unconfirmed[channel] = deque([None])
                async with asyncio.timeout(SUBSCRIBER_OP_TIMEOUT_S):
                    await pubsub.subscribe(*wanted)
            self._pubsub = pubsub
        if not wanted:
            self._finish_reset()
        return wanted

    async def _go_dark(self, pubsub: PubSub) -> None:
        async with self._lock:
            self._pubsub = None
            # Nothing will confirm these now; the reset after recovery stands in for them.
            for slots in self._unconfirmed.values():
                for confirmed in slots:
                    if confirmed is not None and not confirmed.done():
                        confirmed.set_result(None)
            self._unconfirmed.clear()
            try:
                # Not under a timeout: an interrupted aclose could skip returning the
                # connection to its pool of one. It bounds its own disconnect.
                await pubsub.aclose()
                # A connect cut short mid-handshake goes back to the pool still open;
                # the next attempt must start from a fresh socket.
                await self._subscriber.connection_pool.disconnect()
            except _OUTAGE as exc:
                log.debug("redis broker: closing a broken subscriber: %r", exc)

    async def _read(self, pubsub: PubSub, resubscribed: set[str]) -> NoReturn:
        loop = asyncio.get_running_loop()
        heard = loop.time()
        pinged = False
        while True:
            message: dict[str, Any] | None = await pubsub.get_message(
                timeout=self._liveness_interval_s
            )
            if message is not None:
                heard = loop.time()
                pinged = False
                self._dispatch(message, resubscribed)
            elif loop.time() - heard >= 2 * self._liveness_interval_s:
                raise SubscriberSilent("no reply to PING from Redis")
            elif not pinged:
                async with self._lock, asyncio.timeout(SUBSCRIBER_OP_TIMEOUT_S):
                    await pubsub.ping()
                pinged = True

    def _dispatch(self, message: dict[str, Any], resubscribed: set[str]) -> None:
        kind = message["type"]
        if kind == "message":
            channel = message["channel"].decode()
            # Filters what was already in flight when unsubscribe() returned.
            if channel in self._channels and self._on_message is not None:
                try:
                    self._on_message(channel, message["data"])
                except Exception:
                    log.exception("redis broker: on_message failed for %s", channel)
        elif kind == "subscribe":
            channel = message["channel"].decode()
            slots = self._unconfirmed.get(channel)
            if slots:
                confirmed = slots.popleft()
                if not slots:
                    del self._unconfirmed[channel]
                if confirmed is not None and not confirmed.done():
                    confirmed.set_result(None)
            if channel in resubscribed:
                resubscribed.discard(channel)
                if not resubscribed:
                    self._finish_reset()

    def _finish_reset(self) -> None:
        if not self._reset_pending or self._on_reset is None:
            return
        self._reset_pending = False
        log.info("redis broker: subscriptions restored, subscribers catch up")
        try:
            self._on_reset()
        except Exception:
            log.exception("redis broker: on_reset failed")
