"""The event catalogue is the one list of event kinds: the inbox listens for exactly the
kinds operators receive and handles each, and the feed refuses to publish a kind where the
catalogue does not send it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from server.event_catalogue import (
    CATALOGUE,
    MESSAGE_NEW,
    PRESENCE,
    SESSION_CONVERSATION,
    Audience,
    kinds_for,
)
from server.services import Services

INBOX = Path(__file__).resolve().parents[2] / "widget_assets" / "app"


def _operator_kinds() -> set[str]:
    return {kind.name for kind in kinds_for(Audience.ACCOUNT)}


def test_kind_names_are_unique() -> None:
    assert len({kind.name for kind in CATALOGUE}) == len(CATALOGUE)


def test_every_kind_has_an_audience() -> None:
    assert all(kind.audiences for kind in CATALOGUE)


def test_the_inbox_listens_for_exactly_the_kinds_operators_receive() -> None:
    """A kind missing from api.js's EVENT_KINDS is dropped by the EventSource without a word."""
    source = (INBOX / "api.js").read_text(encoding="utf-8")
    listed = re.search(r"const EVENT_KINDS = \[(.*?)\];", source, re.DOTALL)
    assert listed is not None, "api.js no longer declares EVENT_KINDS"
    assert set(re.findall(r'"([^"]+)"', listed.group(1))) == _operator_kinds()


def test_the_inbox_handles_every_kind_operators_receive() -> None:
    source = (INBOX / "app.js").read_text(encoding="utf-8")
    handled = set(re.findall(r'case "([^"]+)":', source))
    assert _operator_kinds() <= handled


async def test_the_feed_publishes_no_log_kind_as_state(services: Services) -> None:
    with pytest.raises(ValueError, match="message:new"):
        await services.feed.ephemeral("acct", MESSAGE_NEW, b"{}")
    with pytest.raises(ValueError, match="conversation"):
        await services.feed.ephemeral("acct", SESSION_CONVERSATION, b"{}")
    await services.feed.ephemeral("acct", PRESENCE, b"{}")
