"""Push notifications through the Firebase Cloud Messaging HTTP v1 API.

A Google service account signs a JWT, trades it at its token endpoint for an OAuth2 access
token (cached until shortly before it expires), and sends each message with it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

FCM_URL = "https://fcm.googleapis.com"
SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google accepts assertions valid for at most an hour.
ASSERTION_TTL_S = 3600
# A token this close to expiry is replaced, so none expires between our check and FCM's.
TOKEN_MARGIN_S = 60
REQUIRED_KEYS = ("type", "project_id", "private_key", "client_email", "token_uri")
# Statuses after which the same request may succeed later; anything else will fail again.
_RETRYABLE = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class Push:
    title: str
    body: str
    data: Mapping[str, str]


class PushFailed(Exception):
    """Not delivered, for a reason other than a dead device token. ``retryable`` says whether
    sending the same push later may work (an outage) or not (refused credentials, bad data)."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


class PushSender(Protocol):
    async def send(self, token: str, push: Push) -> bool:
        """True when delivered, False when the device token is dead and should be forgotten;
        raises PushFailed otherwise."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class ServiceAccount:
    project_id: str
    client_email: str
    token_uri: str
    private_key: RSAPrivateKey


class FcmV1:
    """One project's sender: one connection pool, one cached access token; every HTTP
    exchange ends within ``timeout_s``."""

    def __init__(
        self,
        account: ServiceAccount,
        *,
        fcm_url: str = FCM_URL,
        timeout_s: float = 5.0,
    ) -> None:
        self._account = account
        self._send_url = f"{fcm_url.rstrip('/')}/v1/projects/{account.project_id}/messages:send"
        self._timeout_s = timeout_s
        self._client = httpx.AsyncClient(timeout=timeout_s)
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._token_until = 0.0  # time.monotonic() after which the token is not used

    @classmethod
    def from_file(cls, path: str, *, fcm_url: str = FCM_URL, timeout_s: float = 5.0) -> FcmV1:
        return cls(load_service_account(path), fcm_url=fcm_url, timeout_s=timeout_s)

    async def send(self, token: str, push: Push) -> bool:
        message = {
            "message": {
                "token": token,
                "notification": {"title": push.title, "body": push.body},
                "data": dict(push.data),
            }
        }
        access = await self._access_token()
        response = await self._post("FCM", self._send_url, json=message, headers=_bearer(access))
        if response.status_code == 401:
            # Revoked or expired early: one fresh token, then FCM's answer stands.
            access = await self._access_token(rejected=access)
            response = await self._post(
                "FCM", self._send_url, json=message, headers=_bearer(access)
            )
        if response.status_code == 200:
            return True
        if _is_dead_token(response):
            return False
        raise _failure("FCM", response)

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _access_token(self, rejected: str | None = None) -> str:
        """The cached token unless it is near expiry or FCM just ``rejected`` it. One refresh
        at a time: callers that queued behind a refresh use its token."""
        async with self._lock:
            if self._token and self._token != rejected and time.monotonic() < self._token_until:
                return self._token
            started = time.monotonic()
            response = await self._post(
                "the token endpoint",
                self._account.token_uri,
                data={"grant_type": GRANT_TYPE, "assertion": self._assertion()},
            )
            if response.status_code != 200:
                raise _failure("the token endpoint", response)
            answer = _json_object(response) or {}
            token, expires_in = answer.get("access_token"), answer.get("expires_in")
            if not isinstance(token, str) or not token or not isinstance(expires_in, int):
                raise PushFailed(
                    "the token endpoint answered without access_token and expires_in",
                    retryable=True,
                )
            self._token = token
            self._token_until = started + expires_in - TOKEN_MARGIN_S
            return token

    def _assertion(self) -> str:
        now = int(time.time())
        claims = {
            "iss": self._account.client_email,
            "scope": SCOPE,
            "aud": self._account.token_uri,
            "iat": now,
            "exp": now + ASSERTION_TTL_S,
        }
        return jwt.encode(claims, self._account.private_key, algorithm="RS256")

    async def _post(self, who: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            # httpx bounds each phase; this bounds the whole exchange, e.g. a trickling answer.
            async with asyncio.timeout(self._timeout_s):
                return await self._client.post(url, **kwargs)
        except (TimeoutError, httpx.TimeoutException):
            raise PushFailed(
                f"{who} did not answer within {self._timeout_s} s", retryable=True
            ) from None
        except httpx.HTTPError as exc:
            raise PushFailed(f"{who} is unreachable: {exc!r}", retryable=True) from None


def load_service_account(path: str) -> ServiceAccount:
    """The service account in a Google JSON key file; ValueError says what is wrong with it."""
    where = f"FCM credentials {path}"
    try:
        parsed = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{where}: cannot read the file ({exc.strerror})") from None
    except ValueError:
        raise ValueError(f"{where}: not a JSON file") from None
    if not isinstance(parsed, dict):
        raise ValueError(f"{where}: not a JSON object")
    missing = [key for key in REQUIRED_KEYS if not isinstance(parsed.get(key), str)]
    if missing:
        raise ValueError(f"{where}: missing or not strings: {', '.join(missing)}")
    if parsed["type"] != "service_account":
        raise ValueError(f"{where}: type is {parsed['type']!r}, not a service_account key")
    try:
        key = load_pem_private_key(parsed["private_key"].encode(), password=None)
    except ValueError:
        raise ValueError(f"{where}: private_key is not an unencrypted PEM private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise ValueError(f"{where}: private_key is not an RSA key")
    return ServiceAccount(
        project_id=parsed["project_id"],
        client_email=parsed["client_email"],
        token_uri=parsed["token_uri"],
        private_key=key,
    )


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        parsed = response.json()
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _error(response: httpx.Response) -> dict[str, Any]:
    """Google's error object ({"code", "message", "status", "details"}), or empty."""
    error = (_json_object(response) or {}).get("error")
    return error if isinstance(error, dict) else {}


def _is_dead_token(response: httpx.Response) -> bool:
    """UNREGISTERED (the app was uninstalled), or INVALID_ARGUMENT aimed at the token itself:
    a 400 about anything else (a reserved data key) is our mistake, not the device's."""
    details = [d for d in _error(response).get("details") or [] if isinstance(d, dict)]
    codes = {d.get("errorCode") for d in details}
    if response.status_code == 404 and "UNREGISTERED" in codes:
        return True
    fields = {
        violation.get("field")
        for d in details
        for violation in d.get("fieldViolations") or []
        if isinstance(violation, dict)
    }
    return response.status_code == 400 and "message.token" in fields


def _failure(who: str, response: httpx.Response) -> PushFailed:
    body = _json_object(response) or {}
    error = body.get("error")
    if isinstance(error, dict):  # Google APIs: {"error": {"code", "message", "status", ...}}
        reason = error.get("message")
    else:  # OAuth2 token endpoints: {"error": "invalid_grant", "error_description": "..."}
        reason = body.get("error_description") or error
    return PushFailed(
        f"{who} answered HTTP {response.status_code}: {reason or response.reason_phrase}",
        retryable=response.status_code in _RETRYABLE,
    )


def create_push_sender(credentials_path: str | None, fcm_url: str) -> PushSender | None:
    """The configured sender, or None when the installation has no FCM credentials."""
    return FcmV1.from_file(credentials_path, fcm_url=fcm_url) if credentials_path else None
