"""What the outbound worker asks of a channel adapter (SMS, email)."""

from __future__ import annotations

from typing import Protocol

from storage.outbound import OutboundJob


class DeliveryFailed(Exception):
    """Not delivered. ``retryable`` says whether the same message may go through later (an
    outage, a rate limit, a greylisting server) or will be refused again (a bad number, a
    rejected address, a message the provider will not take). ``code`` is the provider's own
    error code, when it gave one."""

    def __init__(self, reason: str, *, retryable: bool, code: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable
        self.code = code


class ChannelAdapter(Protocol):
    async def send(self, job: OutboundJob) -> str:
        """Delivers ``job``'s message to the customer and returns the provider's id for it;
        raises DeliveryFailed when it was not delivered."""
        ...

    async def aclose(self) -> None: ...
