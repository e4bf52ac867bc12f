"""Local stand-ins for outside providers, speaking their real wire protocols over HTTP.

Each is a Starlette app the tests serve under uvicorn on 127.0.0.1 (``running``); the
attributes steer its behaviour and record what it received.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Protocol

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from tests.server.realtime_clients import serve


class Provider(Protocol):
    url: str

    @property
    def app(self) -> Starlette: ...


@asynccontextmanager
async def running(provider: Provider) -> AsyncIterator[None]:
    """Serves ``provider`` on a free loopback port and tells it its own URL."""
    async with serve(provider.app) as host:
        provider.url = f"http://{host}"
        yield


# Word lists in the same order in every language, so that index i translates to index i.
VOCABULARY = {
    "en": ["hello", "world", "thanks", "help"],
    "de": ["hallo", "welt", "danke", "hilfe"],
    "fr": ["bonjour", "monde", "merci", "aide"],
    "pt-BR": ["olá", "mundo", "obrigado", "ajuda"],
}


class FakeLibreTranslate:
    """LibreTranslate's ``POST /translate``: JSON or form fields q, source (or "auto"),
    target, format, api_key; {"translatedText"} on success, {"error"} with 400/403/500.

    It translates word by word with VOCABULARY, leaving unknown words as they are."""

    def __init__(self, api_key: str | None = None) -> None:
        self.url = ""
        self.api_key = api_key  # when set, requests without exactly this key get 403
        self.delay_s = 0.0
        self.crash = False  # the translation engine fails: 500 {"error"}
        self.not_json = False  # something in front answers 200 with an HTML page
        self.received: list[dict[str, Any]] = []

    @property
    def app(self) -> Starlette:
        return Starlette(routes=[Route("/translate", self._translate, methods=["POST"])])

    async def _translate(self, request: Request) -> Response:
        if request.headers.get("content-type", "").startswith("application/json"):
            fields = dict(await request.json())
        else:
            fields = dict(await request.form())
        self.received.append(fields)
        await asyncio.sleep(self.delay_s)
        if self.not_json:
            return HTMLResponse("<html><body>Welcome to nginx!</body></html>")
        if self.api_key is not None and fields.get("api_key") != self.api_key:
            return _refuse(403, "Invalid API key")
        for name in ("q", "source", "target"):
            if not fields.get(name):
                return _refuse(400, f"Invalid request: missing {name} parameter")
        if fields.get("format", "text") not in ("text", "html"):
            return _refuse(400, "Invalid request: format must be text or html")
        source, target, words = fields["source"], fields["target"], fields["q"].split(" ")
        detected = _detect(words) if source == "auto" else source
        for language in (detected, target):
            if language not in VOCABULARY:
                return _refuse(400, f"{language} is not supported")
        if self.crash:
            return _refuse(500, "Cannot translate text: the model failed to load")
        translated = " ".join(_translate_word(w, detected, target) for w in words)
        answer: dict[str, Any] = {"translatedText": translated}
        if source == "auto":
            answer["detectedLanguage"] = {"confidence": 90.0, "language": detected}
        return JSONResponse(answer)


def _refuse(status: int, error: str) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status)


def _detect(words: list[str]) -> str:
    return max(VOCABULARY, key=lambda code: sum(w.lower() in VOCABULARY[code] for w in words))


def _translate_word(word: str, source: str, target: str) -> str:
    known = VOCABULARY[source]
    return VOCABULARY[target][known.index(word.lower())] if word.lower() in known else word


FCM_SCOPE = "https://www.googleapis.com/auth/firebase.messaging"
# FCM refuses these data keys: the platforms reserve them.
RESERVED_DATA_KEYS = {"from", "notification", "message_type"}
RESERVED_DATA_PREFIXES = ("google.", "gcm.")


class FakeGoogle:
    """Google's OAuth2 token endpoint (``POST /token``, the JWT bearer grant) and FCM HTTP v1
    (``POST /v1/projects/{project}/messages:send``), with Google's error bodies.

    The token endpoint verifies the assertion's RS256 signature against ``public_key`` and
    its claims; messages:send wants a token it issued and a well-formed message."""

    def __init__(self, public_key: RSAPublicKey, client_email: str, project_id: str) -> None:
        self.url = ""
        self._public_key = public_key
        self._client_email = client_email
        self._project_id = project_id
        self.expires_in = 3600
        self.issued: list[str] = []  # access tokens, oldest first
        self._revoked: set[str] = set()
        self.accept_tokens = True  # False: every send is 401, as with a disabled account
        self.dead: set[str] = set()  # device tokens of uninstalled apps: 404 UNREGISTERED
        self.flaky: set[str] = set()  # device tokens whose sends meet a 503
        self.send_attempts = 0
        self.received: list[dict[str, Any]] = []  # bodies of the messages accepted

    @property
    def token_uri(self) -> str:
        return f"{self.url}/token"

    @property
    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/token", self._token, methods=["POST"]),
                Route("/v1/projects/{project}/messages:send", self._send, methods=["POST"]),
            ]
        )

    def revoke_tokens(self) -> None:
        """Every access token issued so far stops working, as when Google rotates them."""
        self._revoked.update(self.issued)

    async def _token(self, request: Request) -> Response:
        form = await request.form()
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer":
            return _oauth_error("unsupported_grant_type", "Invalid grant_type")
        try:
            claims = jwt.decode(
                str(form.get("assertion")),
                self._public_key,
                algorithms=["RS256"],
                audience=self.token_uri,
                options={"require": ["iss", "aud", "iat", "exp", "scope"]},
            )
        except jwt.InvalidTokenError as exc:
            return _oauth_error("invalid_grant", f"Invalid JWT: {exc}")
        if claims["iss"] != self._client_email:
            return _oauth_error("invalid_grant", "Invalid issuer")
        if claims["scope"] != FCM_SCOPE:
            return _oauth_error("invalid_scope", "Invalid OAuth scope")
        if claims["exp"] - claims["iat"] > 3600:
            return _oauth_error("invalid_grant", "Invalid JWT: expiry more than an hour away")
        token = f"ya29.{secrets.token_urlsafe(24)}"
        self.issued.append(token)
        return JSONResponse(
            {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}
        )

    async def _send(self, request: Request) -> Response:
        self.send_attempts += 1
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if (
            scheme != "Bearer"
            or token not in self.issued
            or token in self._revoked
            or not self.accept_tokens
        ):
            return _google_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        if request.path_params["project"] != self._project_id:
            return _google_error(403, "PERMISSION_DENIED", "Permission denied on the project.")
        body = await request.json()
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            return _invalid("message", "The message is missing.")
        unknown = set(message) - {"token", "notification", "data"}
        if unknown:
            return _invalid("message", f"Unknown name {sorted(unknown)[0]!r} at 'message'.")
        device = message.get("token")
        if not isinstance(device, str) or not device or any(c.isspace() for c in device):
            return _invalid("message.token", "The registration token is not a valid FCM token")
        notification = message.get("notification", {})
        if not isinstance(notification, dict) or not all(
            key in ("title", "body") and isinstance(value, str)
            for key, value in notification.items()
        ):
            return _invalid("message.notification", "Invalid notification.")
        data = message.get("data", {})
        if not isinstance(data, dict) or not all(
            isinstance(key, str)
            and isinstance(value, str)
            and key not in RESERVED_DATA_KEYS
            and not key.startswith(RESERVED_DATA_PREFIXES)
            for key, value in data.items()
        ):
            return _invalid("message.data", "Invalid data payload key.")
        if device in self.dead:
            return _google_error(
                404, "NOT_FOUND", "Requested entity was not found.", "UNREGISTERED"
            )
        if device in self.flaky:
            return _google_error(503, "UNAVAILABLE", "The service is unavailable.", "UNAVAILABLE")
        self.received.append(body)
        name = f"projects/{self._project_id}/messages/{len(self.received)}"
        return JSONResponse({"name": name})


def _oauth_error(error: str, description: str) -> JSONResponse:
    return JSONResponse({"error": error, "error_description": description}, status_code=400)


def _google_error(
    code: int, status: str, message: str, fcm_code: str | None = None, field: str | None = None
) -> JSONResponse:
    """Google's error body; FCM adds its own error code and, for a bad request, the field."""
    details: list[dict[str, Any]] = []
    if fcm_code:
        details.append(
            {"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": fcm_code}
        )
    if field:
        violation = {"field": field, "description": message}
        details.append(
            {"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}
        )
    error = {"code": code, "message": message, "status": status, "details": details}
    return JSONResponse({"error": error}, status_code=code)


def _invalid(field: str, description: str) -> JSONResponse:
    """FCM's answer to a bad message: INVALID_ARGUMENT naming the offending field."""
    return _google_error(400, "INVALID_ARGUMENT", description, "INVALID_ARGUMENT", field)
