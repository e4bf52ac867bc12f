"""A webhook receiver on loopback, as an integrator would write one: it checks every
delivery's ``X-Liveop-Signature`` with its own HMAC code (and the timestamp against a
tolerance window), records what it accepted, and refuses everything while told to fail."""

from __future__ import annotations

import hashlib
import hmac
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

# How far a delivery's t may be from the receiver's clock before it is taken for a replay.
TOLERANCE_S = 300


@dataclass
class Receiver:
    url: str
    now: Callable[[], float]
    secret: str = ""
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Answer this status (and record nothing) while set.
    failing_with: int | None = None
    refused: int = 0
    bad_signatures: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def verified(self, header: str, body: bytes) -> bool:
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        if not parts.get("t", "").isdigit() or "v1" not in parts:
            return False
        if abs(self.now() - int(parts["t"])) > TOLERANCE_S:
            return False
        expected = hmac.new(
            self.secret.encode(), parts["t"].encode() + b"." + body, hashlib.sha256
        ).hexdigest()
        return hmac.compare_digest(expected, parts["v1"])

    def events(self) -> list[str]:
        with self.lock:
            return [d["event"] for d in self.deliveries]


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with receiver.lock:
                status = receiver.failing_with
                if status is not None:
                    receiver.refused += 1
                elif not receiver.verified(self.headers.get("X-Liveop-Signature", ""), body):
                    receiver.bad_signatures += 1
                    status = 401
                else:
                    receiver.deliveries.append(orjson.loads(body))
                    status = 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def webhook_receiver(now: Callable[[], float]) -> Iterator[Receiver]:
    receiver = Receiver("", now)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    receiver.url = f"http://127.0.0.1:{server.server_port}/hooks/liveop"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
