"""The worker inside the app: settings, start and stop with the lifespan, and a reply sent
through the App Command API arriving at the customer's mailbox while the operators' stream
learns that it went out."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.outbound import outbound_worker
from server.services import Services
from server.settings import Settings, SettingsError, load_settings
from tests.conftest import TEST_PASSWORD, Tenant
from tests.outbound.servers import SmtpServer, smtp_server
from tests.server.realtime_clients import serve, sse

DELIVERED_WITHIN_S = 10.0


@pytest.fixture
def mail() -> Iterator[SmtpServer]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path, mail: SmtpServer) -> Settings:
    """Email configured, SMS not: the app's worker delivers email only."""
    return load_settings(
        {
            "LIVEOP_DATA_DIR": str(tmp_path / "data"),
            "LIVEOP_SMTP_URL": f"smtp://127.0.0.1:{mail.port}",
            "LIVEOP_EMAIL_FROM": "Acme <help@acme.test>",
        }
    )


async def _history(tenant: Tenant, convo: str) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = (await tenant.ok("gethistory", convoID=convo))["messages"]
    return messages


async def test_an_email_reply_reaches_the_customer_and_the_operators_hear_of_it(
    app: Starlette, tenant: Tenant, mail: SmtpServer
) -> None:
    sms = await tenant.visitor_says(
        "Text me back", sourceApp="smsbroadcast", userInfo={"phone": "+15550100"}
    )
    email = await tenant.visitor_says(
        "Where is my order?", sourceApp="emailbroadcast",
        userInfo={"fname": "Vera", "email": "vera@customer.test"},
    )  # fmt: skip
    async with serve(app) as base, httpx.AsyncClient(base_url=f"http://{base}") as client:
        login = await client.post(
            "/api/v1/auth/login",
            json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
        )
        async with sse(base, login.json()["token"]) as stream:
            await tenant.ok("sendmessage", convoID=sms, operatorID=tenant.operator_id, message="Hi")
            reply = await tenant.ok(
                "sendmessage", convoID=email, operatorID=tenant.operator_id,
                message="It ships today.",
            )  # fmt: skip
            assert reply["message"]["delivery"] == "queued"
            event = await stream.until("delivery", DELIVERED_WITHIN_S)
    assert event.id is None  # state, not log: never replayed
    assert event.data == {"conversation_id": email, "seq": 2, "delivery": "sent", "error": None}
    (message,) = mail.mailbox.messages()
    assert message["To"] == "Vera <vera@customer.test>"
    assert message["From"] == "Acme <help@acme.test>"
    assert message.get_content().strip() == "It ships today."
    assert [m["delivery"] for m in await _history(tenant, email)] == [None, "sent"]
    # No SMS provider here: the SMS reply, written before the email one, waits queued.
    assert [m["delivery"] for m in await _history(tenant, sms)] == [None, "queued"]


async def test_no_worker_without_a_channel_or_when_turned_off(
    tmp_path: Path, services: Services, mail: SmtpServer
) -> None:
    bare = load_settings({"LIVEOP_DATA_DIR": str(tmp_path)})
    off = load_settings(
        {
            "LIVEOP_DATA_DIR": str(tmp_path),
            "LIVEOP_SMTP_URL": f"smtp://127.0.0.1:{mail.port}",
            "LIVEOP_EMAIL_FROM": "help@acme.test",
            "LIVEOP_OUTBOUND_WORKER": "0",
        }
    )
    for settings in (bare, off):
        async with outbound_worker(settings, services.store, services.feed) as worker:
            assert worker is None


def test_outbound_settings(tmp_path: Path) -> None:
    base = {"LIVEOP_DATA_DIR": str(tmp_path)}
    defaults = load_settings(base)
    assert (defaults.smtp_url, defaults.sms_account_sid, defaults.sms_url) == (
        None, None, "https://api.twilio.com",
    )  # fmt: skip
    assert (defaults.outbound_worker, defaults.outbound_lease_s) == (True, 90)
    full = load_settings(
        {
            **base,
            "LIVEOP_SMTP_URL": "smtps://u:p@mail.acme.test",
            "LIVEOP_EMAIL_FROM": "help@acme.test",
            "LIVEOP_SMS_URL": "http://127.0.0.1:9/",
            "LIVEOP_SMS_ACCOUNT_SID": "AC1",
            "LIVEOP_SMS_AUTH_TOKEN": "t",
            "LIVEOP_SMS_FROM": "+15550001111",
            "LIVEOP_OUTBOUND_LEASE_S": "120",
        }
    )
    assert (full.smtp_url, full.email_from) == ("smtps://u:p@mail.acme.test", "help@acme.test")
    assert (full.sms_url, full.sms_account_sid, full.sms_auth_token, full.sms_from) == (
        "http://127.0.0.1:9", "AC1", "t", "+15550001111",
    )  # fmt: skip
    assert full.outbound_lease_s == 120


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"LIVEOP_SMTP_URL": "smtp://mail.acme.test"}, "LIVEOP_EMAIL_FROM must be an email"),
        (
            {"LIVEOP_SMTP_URL": "mail.acme.test", "LIVEOP_EMAIL_FROM": "a@acme.test"},
            "LIVEOP_SMTP_URL: an SMTP URL starts with smtp:// or smtps://",
        ),
        (
            {"LIVEOP_SMTP_URL": "smtp://mail.acme.test", "LIVEOP_EMAIL_FROM": "support"},
            "LIVEOP_EMAIL_FROM must be an email address, not 'support'",
        ),
        (
            {"LIVEOP_SMS_ACCOUNT_SID": "AC1", "LIVEOP_SMS_FROM": "+1555"},
            "missing LIVEOP_SMS_AUTH_TOKEN",
        ),
        ({"LIVEOP_SMS_URL": "ftp://sms.test"}, "LIVEOP_SMS_URL must be an http:// or https://"),
        ({"LIVEOP_OUTBOUND_LEASE_S": "soon"}, "LIVEOP_OUTBOUND_LEASE_S must be a whole number"),
        ({"LIVEOP_OUTBOUND_LEASE_S": "0"}, "LIVEOP_OUTBOUND_LEASE_S must be positive"),
        ({"LIVEOP_OUTBOUND_WORKER": "maybe"}, "LIVEOP_OUTBOUND_WORKER must be 1 or 0"),
    ],
)
def test_bad_outbound_settings_are_refused_at_startup(
    tmp_path: Path, environ: dict[str, str], complaint: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings({"LIVEOP_DATA_DIR": str(tmp_path), **environ})
    assert complaint in str(refused.value)


async def test_an_image_reply_goes_out_as_its_link_and_notes_stay_home(
    app: Starlette, client: httpx.AsyncClient, tenant: Tenant, mail: SmtpServer
) -> None:
    email = await tenant.visitor_says(
        "Which colour?", sourceApp="emailbroadcast", userInfo={"email": "vera@customer.test"}
    )
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": f"alex@{tenant.account_id}.test", "password": TEST_PASSWORD},
    )
    headers = {"Authorization": f"Bearer {login.json()['token']}"}
    for path, body in (
        ("note", {"content": "VIP, be quick"}),
        ("message", {"content": "This one:", "image_url": "https://cdn.acme.test/red.png"}),
    ):
        sent = await client.post(
            f"/api/v1/operator/{path}", json={"conversation_id": email, **body}, headers=headers
        )
        assert sent.status_code == 200, sent.json()
    # The worker records "sent" only after the SMTP server has taken the mail, so the
    # recorded state is what to wait for; waiting on the mailbox raced that write.
    async with asyncio.timeout(DELIVERED_WITHIN_S):
        while [m["delivery"] for m in await _history(tenant, email)] != [None, "sent"]:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
    (message,) = mail.mailbox.messages()
    assert message.get_content().splitlines() == ["This one:", "", "https://cdn.acme.test/red.png"]
