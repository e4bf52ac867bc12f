"""A Google service account and a fake Google (OAuth token endpoint + FCM HTTP v1) for every
suite that sends pushes: the adapter's tests and the app's push notifications."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from tests.adapters.providers import FakeGoogle, running

PROJECT = "liveop-test"
CLIENT_EMAIL = f"push@{PROJECT}.iam.gserviceaccount.com"


def pem(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()).decode()


def service_account(key: rsa.RSAPrivateKey, token_uri: str) -> dict[str, Any]:
    """A service-account key file as the Google Cloud console downloads it."""
    return {
        "type": "service_account",
        "project_id": PROJECT,
        "private_key_id": "0123456789abcdef",
        "private_key": pem(key),
        "client_email": CLIENT_EMAIL,
        "client_id": "123456789",
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": token_uri,
    }


def write(path: Path, content: Any) -> str:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
async def google(key: rsa.RSAPrivateKey) -> AsyncIterator[FakeGoogle]:
    provider = FakeGoogle(key.public_key(), CLIENT_EMAIL, PROJECT)
    async with running(provider):
        yield provider


@pytest.fixture
def credentials(tmp_path: Path, key: rsa.RSAPrivateKey, google: FakeGoogle) -> str:
    return write(tmp_path / "service-account.json", service_account(key, google.token_uri))
