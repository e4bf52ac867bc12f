"""Broker fixtures: every backend, and a private redis-server the fault tests may break.

The private server runs on its own loopback port and directory, so killing or restarting
it never touches a Redis the machine shares (6379).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from realtime.broker import Broker, create_broker
from tests.redis_server import RedisServer

# How long a test waits for something that should happen "soon" (a reconnect, a delivery)
# before calling it a failure; generous so a loaded CI machine does not flake.
EVENTUALLY_S = 10.0


async def eventually(
    condition: Callable[[], bool | Awaitable[bool]], what: str, within_s: float = EVENTUALLY_S
) -> None:
    """Polls ``condition`` (plain or async) until it holds; fails naming ``what`` after
    ``within_s``. Tests wait with this, never with fixed sleeps."""

    async def holds() -> bool:
        result = condition()
        return await result if inspect.isawaitable(result) else result

    try:
        async with asyncio.timeout(within_s):
            # Conditions are plain state the callbacks leave behind: there is no event to await.
            while not await holds():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
    except TimeoutError:
        pytest.fail(f"timed out after {within_s} s waiting for {what}")


@dataclass
class Inbox:
    """What one broker handed to its subscriber."""

    messages: list[tuple[str, bytes]] = field(default_factory=list)
    resets: int = 0

    def on_message(self, channel: str, payload: bytes) -> None:
        self.messages.append((channel, payload))

    def on_reset(self) -> None:
        self.resets += 1

    def payloads(self, channel: str) -> list[bytes]:
        return [payload for name, payload in self.messages if name == channel]


@dataclass
class StartedBroker:
    broker: Broker
    inbox: Inbox


@pytest.fixture(params=["memory", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    if request.param == "memory":
        return "memory://"
    server: RedisServer = request.getfixturevalue("redis_server")
    return server.url


@pytest.fixture
async def broker(broker_url: str) -> AsyncIterator[StartedBroker]:
    """A started broker of each backend (made by create_broker), recording into an Inbox."""
    inbox = Inbox()
    made = create_broker(broker_url)
    await made.start(inbox.on_message, inbox.on_reset)
    yield StartedBroker(made, inbox)
    await made.close()
