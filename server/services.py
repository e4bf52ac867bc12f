"""The long-lived objects one running app holds, built in its lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import HTTPConnection

from realtime.hub import Hub
from server.auth import Authenticator
from server.availability import Availability
from server.conversations import ConversationEngine
from server.directory import Directory
from server.events import EventFeed
from server.settings import Settings
from storage.base import Store


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    store: Store
    engine: ConversationEngine
    directory: Directory
    auth: Authenticator
    hub: Hub
    feed: EventFeed
    availability: Availability


def services(conn: HTTPConnection) -> Services:
    found = conn.app.state.services
    assert isinstance(found, Services)
    return found
