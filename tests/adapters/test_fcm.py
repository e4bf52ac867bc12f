"""The FCM HTTP v1 sender against a local server that speaks Google's OAuth2 token endpoint
and FCM's messages:send, and checks the signed assertion with the test key's public half."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.adapters.fcm import FcmV1, Push, PushFailed, create_push_sender
from tests.adapters.providers import FakeGoogle
from tests.fake_google import pem, service_account, write
from tests.server.realtime_clients import free_port

PUSH = Push(title="New message", body="Anna: is anyone there?", data={"conversationID": "c1"})


@pytest.fixture
async def sender(credentials: str, google: FakeGoogle) -> AsyncIterator[FcmV1]:
    client = FcmV1.from_file(credentials, fcm_url=google.url)
    yield client
    await client.aclose()


async def test_a_push_reaches_fcm_as_a_v1_message(sender: FcmV1, google: FakeGoogle) -> None:
    assert await sender.send("device-1", PUSH) is True
    assert google.received == [
        {
            "message": {
                "token": "device-1",
                "notification": {"title": "New message", "body": "Anna: is anyone there?"},
                "data": {"conversationID": "c1"},
            }
        }
    ]


async def test_one_access_token_serves_many_pushes_even_when_sent_together(
    sender: FcmV1, google: FakeGoogle
) -> None:
    results = await asyncio.gather(*(sender.send(f"device-{n}", PUSH) for n in range(5)))
    assert await sender.send("device-5", PUSH) is True
    assert results == [True] * 5
    assert len(google.issued) == 1
    assert len(google.received) == 6


async def test_a_token_is_replaced_a_minute_before_it_expires(
    sender: FcmV1, google: FakeGoogle
) -> None:
    google.expires_in = 61  # usable for one second
    assert await sender.send("device-1", PUSH) is True
    assert await sender.send("device-1", PUSH) is True
    assert len(google.issued) == 1
    await asyncio.sleep(1.1)
    assert await sender.send("device-1", PUSH) is True
    assert len(google.issued) == 2


async def test_a_rejected_token_is_refreshed_once_and_the_push_retried(
    sender: FcmV1, google: FakeGoogle
) -> None:
    assert await sender.send("device-1", PUSH) is True
    google.revoke_tokens()
    assert await sender.send("device-1", PUSH) is True
    assert len(google.issued) == 2
    assert google.send_attempts == 3
    assert len(google.received) == 2


async def test_credentials_fcm_keeps_refusing_fail_without_looping(
    sender: FcmV1, google: FakeGoogle
) -> None:
    google.accept_tokens = False
    with pytest.raises(PushFailed, match="HTTP 401") as failed:
        await sender.send("device-1", PUSH)
    assert failed.value.retryable is False
    assert len(google.issued) == 2
    assert google.send_attempts == 2


@pytest.mark.parametrize("device", ["uninstalled", "not a registration token", ""])
async def test_a_dead_or_malformed_device_token_is_reported_for_forgetting(
    sender: FcmV1, google: FakeGoogle, device: str
) -> None:
    google.dead.add("uninstalled")
    assert await sender.send(device, PUSH) is False
    assert google.received == []


async def test_a_refused_message_is_a_failure_not_a_dead_token(sender: FcmV1) -> None:
    reserved = Push(title="t", body="b", data={"from": "operator"})
    with pytest.raises(PushFailed, match="HTTP 400: Invalid data payload key") as failed:
        await sender.send("device-1", reserved)
    assert failed.value.retryable is False


async def test_an_unavailable_fcm_is_a_retryable_failure(sender: FcmV1, google: FakeGoogle) -> None:
    google.flaky.add("device-1")
    with pytest.raises(PushFailed, match="HTTP 503") as failed:
        await sender.send("device-1", PUSH)
    assert failed.value.retryable is True
    assert await sender.send("device-2", PUSH) is True


async def test_an_assertion_signed_with_another_key_gets_no_token(
    tmp_path: Path, google: FakeGoogle
) -> None:
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = write(tmp_path / "stolen.json", service_account(stranger, google.token_uri))
    client = FcmV1.from_file(path, fcm_url=google.url)
    try:
        with pytest.raises(PushFailed, match="HTTP 400: Invalid JWT") as failed:
            await client.send("device-1", PUSH)
    finally:
        await client.aclose()
    assert failed.value.retryable is False
    assert google.issued == []
    assert google.send_attempts == 0


async def test_an_unreachable_fcm_is_a_retryable_failure(credentials: str) -> None:
    client = FcmV1.from_file(credentials, fcm_url=f"http://127.0.0.1:{free_port()}")
    try:
        with pytest.raises(PushFailed, match="FCM is unreachable") as failed:
            await client.send("device-1", PUSH)
    finally:
        await client.aclose()
    assert failed.value.retryable is True


def _without(account: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in account.items() if k not in keys}


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read the file"),
        ("{not json", "not a JSON file"),
        ("[]", "not a JSON object"),
        (lambda a: _without(a, "client_email", "token_uri"), "missing .*client_email, token_uri"),
        (lambda a: {**a, "project_id": 42}, "missing or not strings: project_id"),
        (lambda a: {**a, "type": "authorized_user"}, "not a service_account key"),
        (lambda a: {**a, "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA"}, "not an unen"),
        (
            lambda a: {**a, "private_key": pem(ec.generate_private_key(ec.SECP256R1()))},
            "not an RSA key",
        ),
    ],
)
def test_bad_credentials_files_are_refused_with_the_reason(
    tmp_path: Path, key: rsa.RSAPrivateKey, content: Any, reason: str
) -> None:
    path = tmp_path / "service-account.json"
    if callable(content):
        content = content(service_account(key, "https://oauth2.googleapis.com/token"))
    if content is not None:
        write(path, content)
    with pytest.raises(ValueError, match=reason):
        FcmV1.from_file(str(path))


async def test_create_push_sender_is_none_without_credentials(
    credentials: str, google: FakeGoogle
) -> None:
    assert create_push_sender(None, google.url) is None
    assert create_push_sender("", google.url) is None
    sender = create_push_sender(credentials, google.url)
    assert sender is not None
    try:
        assert await sender.send("device-1", PUSH) is True
    finally:
        await sender.aclose()
