"""Admin REST /api/v1/admin/channels (issue 14): per-account channels whose credentials go in
and never come out, sealed at rest with the installation's encryption keys."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from cryptography.fernet import Fernet, InvalidToken

from server.app import create_app
from server.channels import TEST_MESSAGE, Channels
from server.crypto import Sealer, new_key
from server.services import Services
from server.settings import Settings, SettingsError, load_settings
from tests.conftest import Tenant, assert_error, bearer
from tests.outbound.servers import SMS_SID, SMS_TOKEN, SmsServer, sms_server
from tests.server.test_admin import admin_token, operator_token
from tests.storage.conftest import (
    BACKENDS,
    backend_settings,
    postgres_url,  # noqa: F401 (a fixture used by name)
)
from tests.test_cli import liveop, new_account

ROOT = "/api/v1/admin/channels"
# The installation's encryption key in these tests.
KEY = new_key()
AUTH_TOKEN = "f00dfacef00dfacef00dfacef00dface"
SMS = {
    "kind": "sms",
    "name": "Support line",
    "account_sid": "AC" + "0123456789abcdef" * 2,
    "auth_token": AUTH_TOKEN,
    "from": "+15550100100",
    "public_url": "https://chat.example.test/",
}


@pytest.fixture(params=BACKENDS)
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    return backend_settings(request, tmp_path, LIVEOP_ENCRYPTION_KEYS=KEY)


def key(tenant: Tenant) -> dict[str, str]:
    return {"X-Api-Key": tenant.api_key}


async def create(client: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    response = await client.post(ROOT, headers=key(tenant), json={**SMS, **fields})
    assert response.status_code == 201, response.text
    assert AUTH_TOKEN not in response.text
    channel: dict[str, Any] = response.json()["channel"]
    return channel


async def listing(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, Any]]:
    response = await client.get(ROOT, headers=key(tenant))
    assert response.status_code == 200, response.text
    assert AUTH_TOKEN not in response.text
    channels: list[dict[str, Any]] = response.json()["channels"]
    return channels


async def raw_channel_rows(settings: Settings) -> str:
    """Every channel row as the database holds it, as text: what a dump would show."""
    url = settings.database_url
    if url.startswith("sqlite:///"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return repr(db.execute("SELECT * FROM channels").fetchall())
    conn = await asyncpg.connect(url)
    try:
        return repr(await conn.fetch("SELECT row_to_json(c)::text FROM channels c"))
    finally:
        await conn.close()


async def test_an_sms_channel_is_created_listed_updated_and_deleted(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    channel = await create(client, tenant)
    base = f"https://chat.example.test/webhooks/twilio/{channel['key']}"
    assert channel["id"] == 1
    assert channel["kind"] == "sms"
    assert channel["name"] == "Support line"
    assert channel["from"] == "+15550100100"
    assert channel["account_sid"] == SMS["account_sid"]
    assert channel["api_url"] == "https://api.twilio.com"
    assert channel["public_url"] == "https://chat.example.test"
    assert channel["after_resolved"] == "reopen"
    assert channel["webhooks"] == {"sms": f"{base}/sms", "status": f"{base}/status"}
    assert channel["health"] == {
        "last_inbound": None, "last_outbound": None, "last_error": None, "last_error_at": None,
    }  # fmt: skip
    assert "auth_token" not in channel and "credentials" not in channel
    assert await listing(client, tenant) == [channel]

    changes = {"name": "Sales", "from": "MG" + "ab" * 16, "after_resolved": "new"}
    response = await client.patch(f"{ROOT}/1", headers=key(tenant), json=changes)
    assert response.status_code == 200, response.text
    updated = response.json()["channel"]
    assert (updated["name"], updated["from"], updated["key"], updated["after_resolved"]) == (
        "Sales", "MG" + "ab" * 16, channel["key"], "new",
    )  # fmt: skip

    response = await client.delete(f"{ROOT}/1", headers=key(tenant))
    assert response.status_code == 200, response.text
    assert await listing(client, tenant) == []
    assert_error(await client.delete(f"{ROOT}/1", headers=key(tenant)), 404, "channel_not_found")


async def test_channel_keys_are_unguessable_and_distinct(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    keys = {(await create(client, tenant))["key"] for _ in range(5)}
    assert len(keys) == 5
    # 24 random bytes in url-safe base64.
    assert all(len(k) == 32 and k.replace("-", "").replace("_", "").isalnum() for k in keys)


async def test_no_credential_in_a_dump_of_the_store(
    client: httpx.AsyncClient, tenant: Tenant, settings: Settings, services: Services
) -> None:
    await create(client, tenant)
    response = await client.patch(
        f"{ROOT}/1", headers=key(tenant), json={"auth_token": "rotated-token-0123456789"}
    )
    assert "rotated-token" not in response.text
    dump = await raw_channel_rows(settings)
    assert AUTH_TOKEN not in dump and "rotated-token" not in dump
    channel = await services.store.get_channel(tenant.account_id, 1)
    assert channel is not None and "rotated-token" not in channel.credentials
    # Sealed, not dropped: the installation's key opens it, another key does not.
    assert services.channels.credentials(channel).auth_token == "rotated-token-0123456789"
    with pytest.raises(InvalidToken):
        Fernet(new_key()).decrypt(channel.credentials.encode())


async def test_only_admins_list_create_change_or_delete_channels(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    operator = bearer(await operator_token(client, tenant))
    assert_error(await client.post(ROOT, headers=operator, json=SMS), 403, "admin_required")
    admin = bearer(await admin_token(client, tenant))
    response = await client.post(ROOT, headers=admin, json=SMS)
    assert response.status_code == 201, response.text
    # The listing shows each channel's key: an operator who is not an admin sees none of it.
    assert_error(await client.get(ROOT, headers=operator), 403, "admin_required")
    listed = await client.get(ROOT, headers=admin)
    assert listed.status_code == 200, listed.text
    assert [c["key"] for c in listed.json()["channels"]] == [response.json()["channel"]["key"]]
    assert_error(
        await client.patch(f"{ROOT}/1", headers=operator, json={"name": "x"}), 403, "admin_required"
    )
    assert_error(await client.delete(f"{ROOT}/1", headers=operator), 403, "admin_required")
    assert_error(await client.get(ROOT), 401, "missing_credentials")


async def test_another_accounts_channels_are_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create(client, tenant)
    assert await listing(client, other_tenant) == []
    other = key(other_tenant)
    patched = await client.patch(f"{ROOT}/1", headers=other, json={"auth_token": "stolen-token"})
    assert_error(patched, 404, "channel_not_found")
    assert_error(await client.delete(f"{ROOT}/1", headers=other), 404, "channel_not_found")
    assert len(await listing(client, tenant)) == 1


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"kind": None}, "missing_field"),
        ({"kind": "fax"}, "invalid_field"),
        ({"kind": "web"}, "invalid_field"),
        ({"name": ""}, "missing_field"),
        ({"name": "x" * 101}, "invalid_field"),
        ({"account_sid": None}, "missing_field"),
        ({"account_sid": "AC123"}, "invalid_field"),
        ({"account_sid": "MG" + "0" * 32}, "invalid_field"),
        ({"auth_token": None}, "missing_field"),
        ({"auth_token": "has space"}, "invalid_field"),
        ({"auth_token": "x" * 257}, "invalid_field"),
        ({"auth_token": {"a": 1}}, "invalid_field"),
        ({"from": None}, "missing_field"),
        ({"from": "555-0100"}, "invalid_field"),
        ({"from": "+0555010010"}, "invalid_field"),
        ({"from": "+1555010010012345"}, "invalid_field"),
        ({"public_url": None}, "missing_field"),
        ({"public_url": "chat.example.test"}, "invalid_field"),
        ({"public_url": "ftp://chat.example.test"}, "invalid_field"),
        ({"public_url": "https://chat.example.test/?a=1"}, "invalid_field"),
        ({"public_url": "https://user:pw@chat.example.test"}, "invalid_field"),
        ({"api_url": "javascript:alert(1)"}, "invalid_field"),
        ({"api_url": ["https://api.twilio.com"]}, "invalid_field"),
        ({"after_resolved": "forever"}, "invalid_field"),
        ({"after_resolved": "NEW"}, "invalid_field"),
        ({"after_resolved": ["new"]}, "invalid_field"),
    ],
)
async def test_bad_channel_fields_are_refused_and_nothing_is_written(
    client: httpx.AsyncClient, tenant: Tenant, fields: dict[str, Any], code: str
) -> None:
    body = {k: v for k, v in {**SMS, **fields}.items() if v is not None}
    assert_error(await client.post(ROOT, headers=key(tenant), json=body), 400, code)
    assert await listing(client, tenant) == []


@pytest.mark.parametrize(
    "fields",
    [
        {"from": "nope"},
        {"public_url": "nope"},
        {"account_sid": "nope"},
        {"auth_token": " "},
        {"after_resolved": "close"},
    ],
)
async def test_a_bad_update_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, services: Services, fields: dict[str, Any]
) -> None:
    before = await create(client, tenant)
    sealed = await services.store.get_channel(tenant.account_id, 1)
    response = await client.patch(f"{ROOT}/1", headers=key(tenant), json={"name": "New", **fields})
    assert_error(response, 400, "invalid_field")
    assert await listing(client, tenant) == [before]
    assert await services.store.get_channel(tenant.account_id, 1) == sealed


def test_a_rotated_key_still_opens_what_the_old_key_sealed() -> None:
    old, new = new_key(), new_key()
    sealed = Sealer([old]).seal({"auth_token": AUTH_TOKEN})
    rotated = Sealer([new, old])
    assert rotated.open(sealed) == {"auth_token": AUTH_TOKEN}
    resealed = rotated.reseal(sealed)
    assert Sealer([new]).open(resealed) == {"auth_token": AUTH_TOKEN}


@pytest.mark.parametrize("raw", ["short", "x" * 44, f"{new_key()},not-a-key"])
def test_a_bad_encryption_key_stops_the_start(tmp_path: Path, raw: str) -> None:
    with pytest.raises(SettingsError, match="LIVEOP_ENCRYPTION_KEYS"):
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_ENCRYPTION_KEYS": raw})


def test_without_keys_one_is_derived_from_the_secret_key(tmp_path: Path) -> None:
    secret = {"LIVEOP_DATA_DIR": str(tmp_path), "LIVEOP_SECRET_KEY": "s" * 40}
    first = load_settings(secret).encryption_keys
    assert first == load_settings(secret).encryption_keys and len(first) == 1
    other = load_settings({**secret, "LIVEOP_SECRET_KEY": "t" * 40}).encryption_keys
    assert other != first
    sealed = Sealer(first).seal({"auth_token": AUTH_TOKEN})
    assert AUTH_TOKEN not in sealed and "s" * 40 not in sealed


async def test_rotate_credentials_reseals_every_channel_and_webhook_with_the_new_key(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    old, new = new_key(), new_key()
    account = new_account(data)["accountID"]
    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(data), "LIVEOP_ENCRYPTION_KEYS": old}))
    async with app.router.lifespan_context(app):
        channels: Channels = app.state.services.channels
        fields = {k.replace("from", "sender"): v for k, v in SMS.items() if k != "name"}
        await channels.create(account, name="Line", **fields)
        made = await app.state.services.webhooks.create(
            account, "https://crm.example.test/hook", ["message.created"]
        )

    refused = liveop(data, "rotate-credentials", env={"LIVEOP_ENCRYPTION_KEYS": new})
    assert refused.returncode == 1 and "no configured encryption key" in refused.stderr
    done = liveop(data, "rotate-credentials", env={"LIVEOP_ENCRYPTION_KEYS": f"{new},{old}"})
    assert done.returncode == 0, done.stderr
    assert orjson.loads(done.stdout) == {"resealed": 2}  # the channel and the webhook

    app = create_app(load_settings({"LIVEOP_DATA_DIR": str(data), "LIVEOP_ENCRYPTION_KEYS": new}))
    async with app.router.lifespan_context(app):
        services: Services = app.state.services
        channel = await services.channels.get(account, 1)
        assert services.channels.credentials(channel).auth_token == AUTH_TOKEN
        [webhook] = await services.store.list_webhooks(account)
        assert services.webhooks.secret(webhook.secret) == made.secret


# the test message an admin sends from a new channel


@pytest.fixture
def provider() -> Iterator[SmsServer]:
    with sms_server() as server:
        yield server


async def test_a_test_message_leaves_from_the_channel_and_lands_on_its_health_line(
    client: httpx.AsyncClient, tenant: Tenant, provider: SmsServer
) -> None:
    made = await create(
        client, tenant, account_sid=SMS_SID, auth_token=SMS_TOKEN, api_url=provider.base
    )
    response = await client.post(
        f"{ROOT}/{made['id']}/test", headers=key(tenant), json={"to": "+15557654321"}
    )
    assert response.status_code == 200, response.text
    (received,) = provider.twilio.received
    assert response.json()["sid"].startswith("SM")
    assert (received.account_sid, received.form["From"], received.form["To"]) == (
        SMS_SID, "+15550100100", "+15557654321",
    )  # fmt: skip
    assert received.form["Body"] == TEST_MESSAGE
    (channel,) = await listing(client, tenant)
    assert channel["health"]["last_outbound"] is not None
    assert channel["health"]["last_error"] is None


async def test_a_refused_test_message_says_why_and_lands_on_the_health_line(
    client: httpx.AsyncClient, tenant: Tenant, provider: SmsServer
) -> None:
    made = await create(client, tenant, account_sid=SMS_SID, api_url=provider.base)
    response = await client.post(
        f"{ROOT}/{made['id']}/test",
        headers=key(tenant),
        json={"to": "+15557654321", "message": "Hi"},
    )
    assert_error(response, 409, "channel_send_failed")
    assert "20003" in response.json()["error"]["message"]
    (channel,) = await listing(client, tenant)
    assert channel["health"]["last_error"] == "SMS provider: 20003: Authenticate"
    assert channel["health"]["last_outbound"] is None
    assert provider.twilio.received == []


async def test_bad_test_messages_are_refused_before_any_send(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, provider: SmsServer
) -> None:
    made = await create(client, tenant, api_url=provider.base)
    path = f"{ROOT}/{made['id']}/test"
    assert_error(await client.post(path, headers=key(tenant), json={}), 400, "missing_field")
    for to in ("555-0100", "+0123", "+1555\n0100"):
        bad = await client.post(path, headers=key(tenant), json={"to": to})
        assert_error(bad, 400, "invalid_field")
    long = {"to": "+15557654321", "message": "x" * 5001}
    assert_error(await client.post(path, headers=key(tenant), json=long), 400, "invalid_field")
    good = {"to": "+15557654321"}
    missing = await client.post(f"{ROOT}/99/test", headers=key(tenant), json=good)
    assert_error(missing, 404, "channel_not_found")
    theirs = await client.post(path, headers=key(other_tenant), json=good)
    assert_error(theirs, 404, "channel_not_found")
    operator = bearer(await operator_token(client, tenant))
    assert_error(await client.post(path, headers=operator, json=good), 403, "admin_required")
    assert provider.twilio.received == []
