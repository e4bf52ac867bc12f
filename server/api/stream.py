"""Seed 001's operator SSE stream, ``GET /api/v1/operator/stream?token=JWT``.

Every event of the operator's account, ``id:`` set to the account event seq. A reconnecting
EventSource sends ``Last-Event-ID`` and receives exactly what it missed; a cursor that cannot
be replayed (unknown, or too far behind) gets a ``reset`` event whose id is the present, after
which the dashboard reloads and continues. Otherwise the first event is ``ready``, whose id is
the cursor the stream continues from.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial

from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from realtime.outbox import Idle, Outbox, Overflow, Reset
from server import metrics
from server.api.wire import parse_integer
from server.auth import Principal, Recheck
from server.errors import Invalid, TooManyRequests
from server.events import account_channel
from server.services import Services, services

ROUTE = "/api/v1/operator/stream"
# A comment line after this long without an event keeps proxies and load balancers from
# closing an idle stream.
KEEPALIVE_S = 15
KEEPALIVE = ServerSentEvent(comment="ping")
# A client that takes longer than this to accept one write is gone; drop it.
SEND_TIMEOUT_S = 30
# Streams one operator (or the API key) holds open in one process: a browser tab needs one,
# so this is a dozen tabs, not a way to hold a process's memory and sockets with one token.
MAX_STREAMS_PER_OPERATOR = 12
RESET = "reset"
READY = "ready"


def _cursor(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    cursor = parse_integer(raw)
    if cursor is None or cursor < 0:
        raise Invalid("invalid_field", "Last-Event-ID must be a whole number")
    return cursor


async def _principal(request: Request, svc: Services) -> Principal:
    # EventSource cannot send headers, so the seed puts the JWT in the query string;
    # server.logs keeps it out of the access log.
    token = request.query_params.get("token")
    if token:
        return await svc.auth.token(token)
    return await svc.auth.headers(request.headers)


class _HeldStream(EventSourceResponse):
    """The stream, giving its operator's slot back when it ends, however it ends."""

    def __init__(self, events: AsyncIterator[ServerSentEvent], release: Callable[[], None]) -> None:
        # The stream's own wait sends the keep-alive (KEEPALIVE): sse-starlette's ping would
        # be one more task, with its task-group state, for every idle stream (issue 20).
        super().__init__(events, ping=0, send_timeout=SEND_TIMEOUT_S)
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _events(
    svc: Services, principal: Principal, resume: int | None
) -> AsyncIterator[ServerSentEvent]:
    # A function of its own, not a closure in ``stream``: its arguments live in its frame,
    # which every idle stream keeps anyway, instead of in cells beside it.
    account_id = principal.account_id
    channel = account_channel(account_id)
    outbox = Outbox(0, svc.hub.replays.gated(svc.feed.account_fetch(account_id)))
    # A stream whose token is revoked ends; the EventSource's reconnect is then refused.
    recheck = Recheck(svc.auth, principal)
    await svc.hub.attach(channel, outbox)
    try:
        head = await svc.feed.account_head(account_id)
        outbox.cursor = head if resume is None or resume > head else resume
        if resume is not None and resume > head:
            yield ServerSentEvent(data="{}", event=RESET, id=str(head))
        else:
            # Live from here: a client that starts without a cursor learns one at once,
            # so even its first reconnect resumes exactly.
            yield ServerSentEvent(data="{}", event=READY, id=str(outbox.cursor))
        while True:
            try:
                batch = await outbox.next_batch(recheck.wait(KEEPALIVE_S))
            except Idle:
                if await recheck.revoked():
                    return
                yield KEEPALIVE
                continue
            except Reset:
                outbox.cursor = await svc.feed.account_head(account_id)
                yield ServerSentEvent(data="{}", event=RESET, id=str(outbox.cursor))
                continue
            except Overflow:
                return  # the EventSource reconnects with Last-Event-ID and catches up
            if not batch:
                return
            metrics.delivered(metrics.OPERATOR_SSE, batch)
            for item in batch:
                yield ServerSentEvent(
                    data=item.data.decode(),
                    event=item.kind,
                    id=None if item.seq is None else str(item.seq),
                )
            # Not kept through the wait for the next batch: an idle stream would hold its
            # last events' payloads for as long as it stays idle.
            del batch, item
            if await recheck.revoked():
                return
    finally:
        await svc.hub.detach(channel, outbox)


async def stream(request: Request) -> Response:
    svc = services(request)
    principal = await _principal(request, svc)
    resume = _cursor(request)
    holder = f"{principal.account_id}:{principal.operator.id if principal.operator else 'key'}"
    # Taken last, right before the response that gives it back: nothing between can raise.
    if not svc.streams.acquire(holder):
        raise TooManyRequests(
            "too_many_streams",
            f"at most {MAX_STREAMS_PER_OPERATOR} open streams per operator: close one",
            1,
        )
    events = _events(svc, principal, resume)
    return _HeldStream(events, partial(svc.streams.release, holder))


routes = [Route(ROUTE, stream, methods=["GET"])]
