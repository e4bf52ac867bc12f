"""SMS replies leave through their conversation's own channel (issue 14): its number, its
credentials, its provider; the health line shows the outcome; and conversations from before
channels keep going out with the installation-wide LIVEOP_SMS_* settings."""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

import storage.postgres
import storage.sqlite
from realtime.broker import create_broker
from realtime.hub import Hub
from server.channels import Channels
from server.crypto import Sealer, new_key
from server.events import EventFeed, announce
from server.outbound import outbound_worker
from server.settings import Settings, load_settings
from storage import create_store, rows
from storage.base import Store
from storage.migrations import load_migrations
from storage.models import Change, Channel, Conversation, default_site
from tests.outbound.conftest import CUSTOMER, append_reply, new_account, new_conversation
from tests.outbound.servers import SMS_FROM, SMS_SID, SMS_TOKEN, SmsServer
from tests.storage.conftest import postgres_url  # noqa: F401 (a fixture used by name)

WAIT_S = 10.0
OTHER_SID = "AC" + "f" * 32
OTHER_TOKEN = "other-account-token"


def _settings(tmp_path: Path, sms: SmsServer | None = None) -> Settings:
    environ = {"LIVEOP_DATA_DIR": str(tmp_path / "data"), "LIVEOP_ENCRYPTION_KEYS": new_key()}
    if sms is not None:
        environ |= {
            "LIVEOP_SMS_URL": sms.base, "LIVEOP_SMS_ACCOUNT_SID": SMS_SID,
            "LIVEOP_SMS_AUTH_TOKEN": SMS_TOKEN, "LIVEOP_SMS_FROM": SMS_FROM,
        }  # fmt: skip
    return load_settings(environ)


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    found = Hub(create_broker("memory://"))
    await found.start()
    try:
        yield found
    finally:
        await found.close()


async def _bound_conversation(store: Store, account_id: str, channel: Channel) -> Conversation:
    convo = await new_conversation(store, account_id, "smsbroadcast")
    bound = dataclasses.replace(convo, channel_id=channel.id)
    committed = await store.write(account_id, convo.id, lambda c: announce(Change(c, bound)))
    return committed.conversation


async def _delivered(store: Store, convo: Conversation, seq: int) -> str | None:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        messages = await store.list_messages(convo.account_id, convo.id)
        found = next(m.delivery for m in messages if m.seq == seq)
        if found != "queued" or asyncio.get_running_loop().time() > deadline:
            return found
        await asyncio.sleep(0.05)


async def test_each_reply_leaves_with_its_own_channels_number_and_credentials(
    store: Store, sms: SmsServer, hub: Hub, tmp_path: Path
) -> None:
    sms.twilio.accounts[OTHER_SID] = OTHER_TOKEN
    settings = _settings(tmp_path)  # no LIVEOP_SMS_*: only channels send
    channels = Channels(store, Sealer(settings.encryption_keys))
    acme, globex = await new_account(store, "Acme"), await new_account(store, "Globex")
    acme_line = await channels.create(
        acme, kind="sms", name="Acme", account_sid=SMS_SID, auth_token=SMS_TOKEN,
        sender="+15550002222", public_url="https://acme.test", api_url=sms.base,
    )  # fmt: skip
    globex_line = await channels.create(
        globex, kind="sms", name="Globex", account_sid=OTHER_SID, auth_token=OTHER_TOKEN,
        sender="MG" + "1" * 32, public_url="https://globex.test", api_url=sms.base,
    )  # fmt: skip
    acme_convo = await _bound_conversation(store, acme, acme_line)
    globex_convo = await _bound_conversation(store, globex, globex_line)
    unbound = await new_conversation(store, acme, "smsbroadcast")
    await append_reply(store, acme_convo, "From Acme")
    await append_reply(store, globex_convo, "From Globex")
    await append_reply(store, unbound, "Nobody's settings")

    async with outbound_worker(settings, store, EventFeed(hub, store), channels) as worker:
        assert worker is not None
        assert await _delivered(store, acme_convo, 1) == "sent"
        assert await _delivered(store, globex_convo, 1) == "sent"

    sent = {r.form["Body"]: r for r in sms.twilio.received}
    assert set(sent) == {"From Acme", "From Globex"}
    assert (sent["From Acme"].account_sid, sent["From Acme"].form["From"]) == (
        SMS_SID, "+15550002222",
    )  # fmt: skip
    assert sent["From Acme"].form["To"] == CUSTOMER.phone
    assert sent["From Globex"].account_sid == OTHER_SID
    assert sent["From Globex"].form["MessagingServiceSid"] == "MG" + "1" * 32
    # No installation-wide settings: a conversation without a channel is not even claimed.
    (outbound,) = [m for m in await store.list_messages(acme, unbound.id) if m.seq == 1]
    assert outbound.delivery == "queued"
    health = await channels.get(acme, acme_line.id)
    assert health.last_outbound is not None and health.last_error is None


async def test_a_refused_send_is_on_the_channels_health_line(
    store: Store, sms: SmsServer, hub: Hub, tmp_path: Path
) -> None:
    settings = _settings(tmp_path)
    channels = Channels(store, Sealer(settings.encryption_keys))
    account = await new_account(store)
    line = await channels.create(
        account, kind="sms", name="Line", account_sid=SMS_SID, auth_token="a-wrong-token",
        sender=SMS_FROM, public_url="https://acme.test", api_url=sms.base,
    )  # fmt: skip
    convo = await _bound_conversation(store, account, line)
    await append_reply(store, convo, "Will not go")
    async with outbound_worker(settings, store, EventFeed(hub, store), channels):
        assert await _delivered(store, convo, 1) == "failed"
    health = await channels.get(account, line.id)
    assert health.last_outbound is None
    assert health.last_error == "SMS provider: 20003: Authenticate"
    assert health.last_error_at is not None
    assert sms.twilio.received == []


async def test_a_reply_in_a_deleted_channels_conversation_fails_with_the_reason(
    store: Store, sms: SmsServer, hub: Hub, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, sms)
    channels = Channels(store, Sealer(settings.encryption_keys))
    account = await new_account(store)
    line = await channels.create(
        account, kind="sms", name="Line", account_sid=SMS_SID, auth_token=SMS_TOKEN,
        sender=SMS_FROM, public_url="https://acme.test", api_url=sms.base,
    )  # fmt: skip
    convo = await _bound_conversation(store, account, line)
    await channels.delete(account, line.id)
    await append_reply(store, convo, "Orphaned")
    async with outbound_worker(settings, store, EventFeed(hub, store), channels):
        assert await _delivered(store, convo, 1) == "failed"
    # Not sent with the installation's settings instead: the customer wrote to another number.
    assert sms.twilio.received == []


# the upgrade: a store written before channels existed


async def _insert_old(url: str, table: str, row: dict[str, object]) -> None:
    """``row`` as the code before migration 0011 wrote it: only the columns the old schema
    has (those of later migrations get their defaults when the store migrates)."""
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            old = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
            kept = {k: int(v) if isinstance(v, bool) else v for k, v in row.items() if k in old}
            marks = ", ".join("?" for _ in kept)
            db.execute(
                f"INSERT INTO {table} ({', '.join(kept)}) VALUES ({marks})", list(kept.values())
            )
        return
    conn = await asyncpg.connect(url)
    try:
        found = await conn.fetch(
            "SELECT column_name FROM information_schema.columns WHERE table_name = $1", table
        )
        old = {r["column_name"] for r in found}
        kept = {k: v for k, v in row.items() if k in old}
        marks = ", ".join(f"${i}" for i in range(1, len(kept) + 1))
        await conn.execute(
            f"INSERT INTO {table} ({', '.join(kept)}) VALUES ({marks})", *kept.values()
        )
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'upgrade.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


async def test_sms_conversations_from_before_channels_still_go_out_with_the_installations_settings(
    database_url: str, sms: SmsServer, hub: Hub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = storage.sqlite if database_url.startswith("sqlite") else storage.postgres
    account = secrets.token_hex(8)
    with monkeypatch.context() as before_0011:
        before_0011.setattr(
            backend, "load_migrations", lambda d: [m for m in load_migrations(d) if m[0] < 11]
        )
        old = create_store(database_url)
        await old.open()  # the schema before 0011
        await old.close()
    created = 1000.0
    await _insert_old(
        database_url, "accounts", {"id": account, "name": "Acme", "created": created,
                                   "last_event_seq": 0},
    )  # fmt: skip
    await _insert_old(database_url, "sites", rows.site_row(default_site(account, created)))
    convo = Conversation(
        id=secrets.token_urlsafe(16), account_id=account, source_app="smsbroadcast",
        status="open", mode="bot", operator_id=None, team_id=None, user_info=CUSTOMER,
        created=1000.0, last_activity=1000.0, resolved_at=None,
    )  # fmt: skip
    await _insert_old(database_url, "conversations", rows.convo_row(convo))

    store = create_store(database_url)
    await store.open()
    try:
        found = await store.get_conversation(account, convo.id)
        assert found is not None and found.channel_id is None
        await append_reply(store, found, "Still here")
        settings = _settings(tmp_path, sms)
        channels = Channels(store, Sealer(settings.encryption_keys))
        async with outbound_worker(settings, store, EventFeed(hub, store), channels):
            assert await _delivered(store, found, 1) == "sent"
    finally:
        await store.close()
    ((received),) = sms.twilio.received
    assert (received.account_sid, received.form["From"], received.form["Body"]) == (
        SMS_SID, SMS_FROM, "Still here",
    )  # fmt: skip
