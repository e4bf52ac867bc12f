"""The process's Prometheus metrics, and ``GET /metrics`` that exposes them.

Every name starts with ``liveop_``; every label takes a bounded set of values (route
templates, connection kinds, channels, results): never an id, an account or a raw path.

With several processes per host, set ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory
shared by them before they start: each process then writes its samples there and any of them
answers a scrape with the sum over all of them (prometheus-client's multiprocess mode).
The broker's and the outboxes' families are defined beside them (realtime.hub,
realtime.outbox: the realtime layer does not import the server); docs/operations.md says what
each family means.
"""

from __future__ import annotations

import os
import time

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client import multiprocess as multiprocess_mode

from realtime.outbox import Item

MULTIPROCESS_DIR_VARIABLE = "PROMETHEUS_MULTIPROC_DIR"
# Realtime and HTTP latencies live between a millisecond and a few seconds; past 10 s a
# request or delivery has failed in the client's eyes anyway.
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# Connection kinds, the `kind` label of the connection families.
VISITOR_WS = "visitor_ws"
OPERATOR_SSE = "operator_sse"
TENANT_WS = "tenant_ws"

http_requests = Counter(
    "liveop_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
http_duration = Histogram(
    "liveop_http_request_duration_seconds",
    "Time from a request's arrival to the end of its response, by route template",
    ["route"],
    buckets=LATENCY_BUCKETS_S,
)
connections = Gauge(
    "liveop_connections",
    "Realtime connections open now, by kind",
    ["kind"],
    multiprocess_mode="livesum",
)
connections_opened = Counter(
    "liveop_connections_opened_total", "Realtime connections accepted, by kind", ["kind"]
)
connections_closed = Counter(
    "liveop_connections_closed_total",
    "Realtime connections ended, by kind and reason",
    ["kind", "reason"],
)
messages_committed = Counter(
    "liveop_messages_committed_total",
    "Messages written to the store (duplicates of a retry not counted), by channel",
    ["channel"],
)
events_delivered = Counter(
    "liveop_events_delivered_total",
    "Events written to a realtime connection, by connection kind",
    ["kind"],
)
delivery_lag = Histogram(
    "liveop_delivery_lag_seconds",
    "Time from this process receiving a live event from the broker to writing it on a socket",
    ["kind"],
    buckets=LATENCY_BUCKETS_S,
)
store_latency = Histogram(
    "liveop_store_operation_seconds",
    "Time one store call took, by operation",
    ["operation"],
    buckets=LATENCY_BUCKETS_S,
)
store_errors = Counter(
    "liveop_store_errors_total", "Store calls that raised, by operation", ["operation"]
)
outbound_attempts = Counter(
    "liveop_outbound_attempts_total",
    "Outbound delivery attempts, by channel and result (sent, retry, failed, released, lost)",
    ["channel", "result"],
)
sms_media = Counter(
    "liveop_sms_media_total",
    "Inbound MMS picture fetches, by outcome (stored, queued: to retry, refused, failed, lost:"
    " the claim lapsed first)",
    ["result"],
)
inbound_webhooks = Counter(
    "liveop_inbound_webhooks_total",
    "Provider webhooks received, by provider, kind and result (ok, duplicate: a retried"
    " delivery, bad_signature, error: refused or failed)",
    ["provider", "kind", "result"],
)
outbound_queued = Gauge(
    "liveop_outbound_queued",
    "Outbound messages waiting in the queue (due or backing off), by channel, installation-wide",
    ["channel"],
    # Every process reads the same table: any one's latest reading is the figure.
    multiprocess_mode="mostrecent",
)
outbound_in_flight = Gauge(
    "liveop_outbound_in_flight",
    "Outbound messages claimed and being delivered now, by channel",
    ["channel"],
    multiprocess_mode="livesum",
)


def delivered(kind: str, items: list[Item]) -> None:
    """Counts ``items`` as written on a connection of ``kind``, with the lag of the live ones."""
    events_delivered.labels(kind).inc(len(items))
    now = time.monotonic()
    lag = delivery_lag.labels(kind)
    for item in items:
        if item.received:
            lag.observe(now - item.received)


def multiprocess() -> bool:
    return bool(os.environ.get(MULTIPROCESS_DIR_VARIABLE))


def exposition() -> bytes:
    """The text format of every metric: this process's, or with the multiprocess directory
    set, the sum over every process on this host that writes there."""
    if not multiprocess():
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    # prometheus-client ships no annotations for its multiprocess module.
    multiprocess_mode.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def process_exited() -> None:
    """Drops this process's live gauges from the shared directory; its counters stay, so the
    host's totals never go backwards when a process restarts."""
    if multiprocess():
        multiprocess_mode.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
