"""The long-lived objects one running app holds, built in its lifespan."""

from __future__ import annotations

import math
from dataclasses import dataclass

from starlette.requests import HTTPConnection

from realtime.holders import Holders
from realtime.hub import Hub
from realtime.ratelimit import RateLimiter, Rule
from server.assistants import Assistants
from server.auth import Authenticator
from server.availability import Availability
from server.channels import Channels
from server.contacts import Contacts
from server.conversations import ConversationEngine
from server.directory import Directory
from server.email_ingest import EmailIngest
from server.errors import TooManyRequests
from server.events import EventFeed
from server.inbox import Inbox
from server.settings import Settings
from server.uploads import FileStore, ImageStore
from server.webhooks import Webhooks
from server.widgets import Widgets
from storage.base import Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    engine: ConversationEngine
    # Inbound mail, from every source (server/email_ingest.py).
    email: EmailIngest
    directory: Directory
    channels: Channels
    webhooks: Webhooks
    contacts: Contacts
    assistants: Assistants
    widgets: Widgets
    auth: Authenticator
    hub: Hub
    feed: EventFeed
    availability: Availability
    images: ImageStore
    # Files customers' mail carried that are no image: served for download only.
    files: FileStore
    inbox: Inbox
    limiter: RateLimiter
    # Open operator event streams in this process, per operator (server.api.stream).
    streams: Holders

    async def limit(self, rule: Rule, purpose: str, *subject: str) -> None:
        """Spends one hit of ``rule`` on the key ``rl:PURPOSE:SUBJECT...``, shared by every
        process; TooManyRequests (429) when none is left."""
        decision = await self.limiter.hit(":".join(("rl", purpose, *subject)), rule)
        if not decision.allowed:
            wait_s = max(1, math.ceil(decision.retry_after_s))
            raise TooManyRequests("rate_limited", f"too many requests: retry in {wait_s} s", wait_s)


def services(conn: HTTPConnection) -> Services:
    found = conn.app.state.services
    assert isinstance(found, Services)
    return found


def client_ip(conn: HTTPConnection) -> str:
    """The caller's address, as uvicorn reports it: the proxy's X-Forwarded-For when the
    proxy is trusted (FORWARDED_ALLOW_IPS), the peer's address otherwise."""
    return conn.client.host if conn.client else "unknown"
