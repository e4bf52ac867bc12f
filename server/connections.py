"""Connection guards below the app: a deadline for request headers, a cap on the connections
one client address holds, and a cap for the whole process that keeps descriptors in reserve.

uvicorn has none of these: its keep-alive timeout starts only after a first response, and
``limit_concurrency`` answers 503 to a *complete* request but accepts every connection. A
client sending one header byte every few seconds could therefore hold a descriptor for good,
and a thousand of them shut everyone out. These protocol classes (passed to uvicorn as
``http=`` and ``ws=``) close such connections instead.

Guarantees:
- a connection that has not sent a request's complete headers within HEADER_TIMEOUT_S of
  opening (or of its previous response) is closed;
- one address holds at most ``per_address`` connections (HTTP and WebSocket alike); more are
  closed at once. Trusted proxies (FORWARDED_ALLOW_IPS) are exempt: every client behind them
  shares their address, and the proxy must limit its clients itself;
- the process holds at most ``total`` connections. At the cap, a new connection evicts the
  one that has waited longest without a request in progress (a half-open or idle
  keep-alive connection), so a flood of half-open connections cannot keep others out; when
  every connection is busy, the new one is closed.
"""

from __future__ import annotations

import asyncio
import resource
from collections import Counter
from dataclasses import dataclass, field

from uvicorn._types import ASGISendEvent
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol

# Browsers and proxies send a request's headers in one packet; ten seconds is generous for
# a slow mobile link and short enough that a slow sender holds a descriptor only briefly.
HEADER_TIMEOUT_S = 10.0
# An office behind one NAT: fifty operators, each with an inbox (a socket or a stream and a
# few parallel requests), stays well under this.
MAX_CONNECTIONS_PER_ADDRESS = 256
# Descriptors kept back from client connections for the store, the broker, uploads and logs,
# so that a full house of clients never makes the server itself fail to open a file.
RESERVED_DESCRIPTORS = 128
MIN_CONNECTIONS = 32


def process_connection_cap() -> int:
    """What the descriptor limit (``ulimit -n``) allows, less the reserve."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    return max(MIN_CONNECTIONS, soft - RESERVED_DESCRIPTORS)


@dataclass
class ConnectionLedger:
    """One process's connections: how many, per address, and those with no request open
    (oldest first, as dicts keep insertion order), each with its header deadline."""

    total: int
    per_address: int
    trusted: _TrustedHosts
    open: int = 0
    by_address: Counter[str] = field(default_factory=Counter)
    idle: dict[GuardedHttpProtocol, asyncio.TimerHandle] = field(default_factory=dict)

    def admit(self, address: str) -> bool:
        if address not in self.trusted and self.by_address[address] >= self.per_address:
            return False
        if self.open >= self.total:
            if not self.idle:
                return False
            oldest = next(iter(self.idle))
            self.idle.pop(oldest).cancel()
            oldest.transport.close()
        self.open += 1
        self.by_address[address] += 1
        return True

    def release(self, address: str) -> None:
        self.open -= 1
        self.by_address[address] -= 1
        if self.by_address[address] <= 0:
            del self.by_address[address]


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol (its fastest, and its default where httptools is
    installed) with the guarantees above."""

    ledger: ConnectionLedger
    # One attribute of its own, defaulted here (the header deadline is the ledger's):
    # uvicorn's protocol sets 28, and past 29 CPython stops sharing the instance dict's
    # keys and gives every connection a dict of its own, 1.3 KiB more for each open
    # connection and event stream (issue 20).
    # The address whose slot this connection holds; None when it holds none.
    _slot: str | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        address = self.client[0] if self.client else ""
        if not self.ledger.admit(address):
            transport.close()
            return
        self._slot = address
        self._await_headers()

    def on_headers_complete(self) -> None:
        self._request_started()
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        # A pipelined request may have started in super(): its headers are already in.
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self._await_headers()

    def handle_websocket_upgrade(self) -> None:
        self._request_started()
        # The slot moves with the transport to the WebSocket protocol, which releases it.
        address, self._slot = self._slot, None
        super().handle_websocket_upgrade()
        protocol = self.transport.get_protocol()
        if address is not None and isinstance(protocol, GuardedWebSocketProtocol):
            protocol.hold_slot(address)

    def connection_lost(self, exc: Exception | None) -> None:
        self._request_started()
        if self._slot is not None:
            self.ledger.release(self._slot)
            self._slot = None
        super().connection_lost(exc)

    def _await_headers(self) -> None:
        if self not in self.ledger.idle:
            deadline = self.loop.call_later(HEADER_TIMEOUT_S, self._headers_too_slow)
            self.ledger.idle[self] = deadline

    def _request_started(self) -> None:
        deadline = self.ledger.idle.pop(self, None)
        if deadline is not None:
            deadline.cancel()

    def _headers_too_slow(self) -> None:
        self.ledger.idle.pop(self, None)
        self.transport.close()


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """Only ever reached by an upgrade from GuardedHttpProtocol, whose slot it inherits."""

    ledger: ConnectionLedger
    _slot: str | None = None

    def hold_slot(self, address: str) -> None:
        self._slot = address

    async def send(self, message: ASGISendEvent) -> None:
        await super().send(message)
        if message["type"] == "websocket.accept" and self.handshake_complete:
            # The handshake is written and nothing reads it again, but uvicorn keeps its
            # request and response (both header sets, parsed) for the socket's lifetime:
            # about 4 KiB and 50 blocks of every idle socket (issue 20). The ASGI scope
            # keeps its own copy of the request's headers for the app.
            del self.request, self.response

    def connection_lost(self, exc: Exception | None) -> None:
        if self._slot is not None:
            self.ledger.release(self._slot)
            self._slot = None
        super().connection_lost(exc)


def guarded_protocols(
    forwarded_allow_ips: str, *, total: int, per_address: int = MAX_CONNECTIONS_PER_ADDRESS
) -> tuple[type[GuardedHttpProtocol], type[GuardedWebSocketProtocol]]:
    """Protocol classes for one uvicorn server, sharing one ledger."""
    shared = ConnectionLedger(total, per_address, _TrustedHosts(forwarded_allow_ips))

    class Http(GuardedHttpProtocol):
        ledger = shared

    class WebSocket(GuardedWebSocketProtocol):
        ledger = shared

    return Http, WebSocket
