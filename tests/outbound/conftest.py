"""Fixtures for the outbound tests: local providers, and jobs as a claim returns them."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.events import announce
from storage.base import Store
from storage.models import Change, Conversation, Delivery, Message, SourceApp, UserInfo
from storage.outbound import OutboundChannel, OutboundJob
from tests.outbound.servers import (
    Certificate,
    SmsServer,
    SmtpServer,
    make_certificate,
    sms_server,
    smtp_server,
)
from tests.storage.conftest import postgres_store, postgres_url, sqlite_store, store

__all__ = ["postgres_store", "postgres_url", "sqlite_store", "store"]

CUSTOMER = UserInfo(fname="Vera", lname="Visitor", email="vera@customer.test", phone="+15557654321")
# The claim time store-level tests use; conversations start AGO_S before it, so their
# messages are due by then.
NOW = 1_000_000.0
AGO_S = 100.0


async def new_account(store: Store, name: str = "Acme") -> str:
    account_id = secrets.token_hex(8)
    await store.create_account(account_id, name, secrets.token_hex(32))
    return account_id


async def new_conversation(
    store: Store,
    account_id: str,
    source_app: SourceApp = "emailbroadcast",
    *,
    at: float = NOW - AGO_S,
    contact: UserInfo = CUSTOMER,
) -> Conversation:
    fresh = Conversation(
        id=secrets.token_urlsafe(16), account_id=account_id, source_app=source_app,
        status="open", mode="bot", operator_id=None, team_id=None, user_info=contact,
        created=at, last_activity=at, resolved_at=None,
    )  # fmt: skip
    return (
        await store.write(account_id, None, lambda _: announce(Change(None, fresh)))
    ).conversation


async def append_reply(
    store: Store, conversation: Conversation, text: str, delivery: Delivery | None = "queued"
) -> Message:
    """An operator's reply as the engine queues it (or, with ``delivery=None``, a visitor's
    message, which is not delivered)."""

    def decide(current: Conversation | None) -> Change:
        assert current is not None
        seq = current.last_seq + 1
        message = Message(
            id=secrets.token_urlsafe(12), convo_id=current.id, seq=seq,
            sender="operator" if delivery else "visitor", operator_id=None,
            operator_name="Alex" if delivery else None, text=text,
            created=current.last_activity + 1, client_msg_id=None, delivery=delivery,
        )  # fmt: skip
        after = dataclasses.replace(current, last_seq=seq, last_activity=message.created)
        return announce(Change(current, after, (message,)))

    committed = await store.write(conversation.account_id, conversation.id, decide)
    return committed.messages[0]


def make_job(
    channel: OutboundChannel = "email",
    *,
    text: str = "Your order shipped today.",
    contact: UserInfo = CUSTOMER,
    message_id: str = "Wd_OZv52XStHZyPR",
    attempt: int = 1,
) -> OutboundJob:
    return OutboundJob(
        account_id="acct", account_name="Acme", convo_id="convo-1", seq=2,
        message_id=message_id, channel=channel, text=text, sender="operator",
        operator_name="Alex", contact=contact, created=1795275342.41, attempt=attempt,
    )  # fmt: skip


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def sms() -> Iterator[SmsServer]:
    with sms_server() as server:
        yield server


@pytest.fixture
def certificate(tmp_path: Path) -> Certificate:
    return make_certificate(tmp_path)
