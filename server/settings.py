"""Every knob, read once from the environment (``LIVEOP_*``), with units in the names."""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from server.adapters.email import parse_sender, parse_smtp_url
from server.adapters.fcm import load_service_account
from server.adapters.sms import TWILIO_URL
from server.crypto import check_key, derived_key
from server.logs import LOG_FORMATS, TEXT

DEFAULT_DATA_DIR = "liveop-data"
SECRET_KEY_FILE = "secret_key"
# 32 characters of url-safe base64 carry 192 bits; anything shorter is a mistake, not a key.
MIN_SECRET_KEY_CHARS = 32
# A generated key: 384 random bits, beyond HS256's 256-bit hash output.
SECRET_KEY_BYTES = 48
# Operator sessions last a working day; the dashboard logs in again after.
DEFAULT_JWT_TTL_S = 12 * 3600
# Largest request body a JSON/form endpoint reads; messages are capped far below this.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
# A minute, as the helpdesks poll; IDLE brings mail sooner where the server has it.
DEFAULT_IMAP_POLL_S = 60
DEFAULT_MAX_MESSAGE_CHARS = 5000
DEFAULT_FCM_URL = "https://fcm.googleapis.com"
# Largest image an operator uploads; a phone photo is 2-5 MB.
DEFAULT_MAX_IMAGE_BYTES = 5 * 1024 * 1024
# How long an outbound worker holds a claimed message; a delivery may take a third of it.
DEFAULT_OUTBOUND_LEASE_S = 90
# How long a process keeps serving after SIGTERM with /readyz already 503, so that the load
# balancer's health checks take it out of rotation before it stops accepting connections.
DEFAULT_SHUTDOWN_DRAIN_S = 0
# A chat model's answer takes seconds; past this the visitor is better served by a person.
DEFAULT_ASSISTANT_TIMEOUT_S = 30
# A bearer token shorter than this is guessable; metrics tell an outsider how busy you are.
MIN_METRICS_TOKEN_CHARS = 16
_SMS_SETTINGS = ("LIVEOP_SMS_ACCOUNT_SID", "LIVEOP_SMS_AUTH_TOKEN", "LIVEOP_SMS_FROM")


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: Path
    database_url: str
    broker_url: str
    secret_key: str
    jwt_ttl_s: int = DEFAULT_JWT_TTL_S
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_message_chars: int = DEFAULT_MAX_MESSAGE_CHARS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    # Public base URL for links the server prints (demo); empty means http://host:port.
    public_url: str = ""
    # One line per request; a busy install behind a proxy that logs may turn it off (it costs
    # 9-15% of chatpoll throughput in bench/http_bench.py).
    access_log: bool = True
    # The public surfaces' rate limits (docs/api.md); off only for load tests, which send
    # faster than any visitor.
    rate_limits: bool = True
    # Live translation through a LibreTranslate server; off when the URL is unset.
    translate_url: str | None = None
    translate_api_key: str | None = None
    # How long the widget chat waits for an assistant's model before the conversation goes to
    # the operators (issue 17): a visitor is watching the typing dots.
    assistant_timeout_s: float = DEFAULT_ASSISTANT_TIMEOUT_S
    # A Google service-account JSON key file; push notifications are off without one.
    fcm_credentials: str | None = None
    fcm_url: str = DEFAULT_FCM_URL
    # Outbound replies (server/outbound.py): email through SMTP, SMS through Twilio's API. A
    # channel left unset keeps its replies queued until a process that has it starts.
    smtp_url: str | None = None
    email_from: str | None = None
    sms_url: str = TWILIO_URL
    sms_account_sid: str | None = None
    sms_auth_token: str | None = None
    sms_from: str | None = None
    outbound_worker: bool = True
    outbound_lease_s: int = DEFAULT_OUTBOUND_LEASE_S
    # Whether this process follows email channels' IMAP mailboxes (server/email_imap.py), and
    # how often it looks for new ones (and polls a server without IDLE).
    imap_sources: bool = True
    imap_poll_s: int = DEFAULT_IMAP_POLL_S
    # GET /metrics answers only with this bearer token; without it there is no /metrics.
    metrics_token: str | None = None
    # "text" (uvicorn's lines) or "json" (one object per line; server/logs.py).
    log_format: str = TEXT
    shutdown_drain_s: int = DEFAULT_SHUTDOWN_DRAIN_S
    # Seal channel credentials at rest (server/crypto.py): the first seals, all open.
    encryption_keys: tuple[str, ...] = ()


class SettingsError(ValueError):
    pass


def _int(environ: Mapping[str, str], name: str, default: int) -> int:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, not {raw!r}") from None
    if value <= 0:
        raise SettingsError(f"{name} must be positive, not {value}")
    return value


def _seconds(environ: Mapping[str, str], name: str, default: int) -> int:
    """Like _int, but zero is allowed: "no wait"."""
    if environ.get(name) == "0":
        return 0
    try:
        return _int(environ, name, default)
    except SettingsError:
        raise SettingsError(f"{name} must be a whole number of seconds, 0 or more") from None


def _choice(environ: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    raw = (environ.get(name) or choices[0]).strip().lower()
    if raw not in choices:
        raise SettingsError(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def _metrics_token(environ: Mapping[str, str]) -> str | None:
    token = environ.get("LIVEOP_METRICS_TOKEN") or None
    if token is not None and len(token) < MIN_METRICS_TOKEN_CHARS:
        raise SettingsError(
            f"LIVEOP_METRICS_TOKEN must be at least {MIN_METRICS_TOKEN_CHARS} characters"
        )
    return token


def _flag(environ: Mapping[str, str], name: str, *, default: bool) -> bool:
    raw = (environ.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name} must be 1 or 0, not {raw!r}")


def _url(environ: Mapping[str, str], name: str) -> str | None:
    raw = (environ.get(name) or "").strip()
    if raw == "":
        return None
    parts = urlsplit(raw)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise SettingsError(f"{name} must be an http:// or https:// URL, not {raw!r}")
    return raw.rstrip("/")


def _smtp_url(environ: Mapping[str, str]) -> str | None:
    """LIVEOP_SMTP_URL, checked with the LIVEOP_EMAIL_FROM it needs beside it."""
    url = (environ.get("LIVEOP_SMTP_URL") or "").strip()
    if url == "":
        return None
    try:
        parse_smtp_url(url)
        parse_sender(environ.get("LIVEOP_EMAIL_FROM") or "")
    except ValueError as exc:
        raise SettingsError(f"LIVEOP_SMTP_URL: {exc}") from None
    return url


def _fcm_credentials(environ: Mapping[str, str]) -> str | None:
    """LIVEOP_FCM_CREDENTIALS, read now: a bad key file stops the start with the reason
    instead of failing every push later."""
    path = environ.get("LIVEOP_FCM_CREDENTIALS") or None
    if path is not None:
        try:
            load_service_account(path)
        except ValueError as exc:
            raise SettingsError(f"LIVEOP_FCM_CREDENTIALS: {exc}") from None
    return path


def _sms_account_sid(environ: Mapping[str, str]) -> str | None:
    """LIVEOP_SMS_ACCOUNT_SID, checked with the token and sender it needs beside it."""
    missing = [name for name in _SMS_SETTINGS if not environ.get(name)]
    if missing and len(missing) < len(_SMS_SETTINGS):
        raise SettingsError(f"SMS needs {', '.join(_SMS_SETTINGS)}; missing {', '.join(missing)}")
    return environ.get(_SMS_SETTINGS[0]) or None


def _secret_key(data_dir: Path) -> str:
    """The key from the data directory, created on first run with owner-only permissions.

    Written to a private temporary file and linked into place, so that processes starting
    together agree on one key and none ever reads a half-written file.
    """
    path = data_dir / SECRET_KEY_FILE
    try:
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=data_dir, prefix=".secret_key.")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(secrets.token_urlsafe(SECRET_KEY_BYTES))
                with contextlib.suppress(FileExistsError):  # another process won the race
                    os.link(temporary, path)
            finally:
                os.unlink(temporary)
        key = path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise SettingsError(
            f"cannot create or read the secret key in {data_dir} ({exc.strerror}): make "
            "LIVEOP_DATA_DIR a directory this user can write, or set LIVEOP_SECRET_KEY"
        ) from None
    if len(key) < MIN_SECRET_KEY_CHARS:
        raise SettingsError(f"{path} holds no usable key: delete it to generate a new one")
    return key


def _encryption_keys(environ: Mapping[str, str], secret_key: str) -> tuple[str, ...]:
    """LIVEOP_ENCRYPTION_KEYS (comma-separated, newest first), or one key derived from the
    secret key, so an installation that set neither still keeps credentials sealed."""
    raw = environ.get("LIVEOP_ENCRYPTION_KEYS") or ""
    keys = [k.strip() for k in raw.split(",") if k.strip()]
    for index, key in enumerate(keys, start=1):
        try:
            check_key(key)
        except ValueError as exc:
            raise SettingsError(f"LIVEOP_ENCRYPTION_KEYS key {index}: {exc}") from None
    return tuple(keys) or (derived_key(secret_key),)


def _given_key(key: str | None) -> str | None:
    if key and len(key) < MIN_SECRET_KEY_CHARS:
        raise SettingsError(f"LIVEOP_SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters")
    return key


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    data_dir = Path(environ.get("LIVEOP_DATA_DIR") or DEFAULT_DATA_DIR).resolve()
    database_url = environ.get("LIVEOP_DATABASE_URL") or f"sqlite:///{data_dir / 'liveop.db'}"
    secret_key = _given_key(environ.get("LIVEOP_SECRET_KEY")) or _secret_key(data_dir)
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        broker_url=environ.get("LIVEOP_BROKER_URL") or "memory://",
        secret_key=secret_key,
        jwt_ttl_s=_int(environ, "LIVEOP_JWT_TTL_S", DEFAULT_JWT_TTL_S),
        max_body_bytes=_int(environ, "LIVEOP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
        max_message_chars=_int(environ, "LIVEOP_MAX_MESSAGE_CHARS", DEFAULT_MAX_MESSAGE_CHARS),
        max_image_bytes=_int(environ, "LIVEOP_MAX_IMAGE_BYTES", DEFAULT_MAX_IMAGE_BYTES),
        public_url=(environ.get("LIVEOP_PUBLIC_URL") or "").rstrip("/"),
        access_log=_flag(environ, "LIVEOP_ACCESS_LOG", default=True),
        rate_limits=_flag(environ, "LIVEOP_RATE_LIMITS", default=True),
        translate_url=_url(environ, "LIVEOP_TRANSLATE_URL"),
        translate_api_key=environ.get("LIVEOP_TRANSLATE_API_KEY") or None,
        assistant_timeout_s=_int(
            environ, "LIVEOP_ASSISTANT_TIMEOUT_S", DEFAULT_ASSISTANT_TIMEOUT_S
        ),
        fcm_credentials=_fcm_credentials(environ),
        fcm_url=_url(environ, "LIVEOP_FCM_URL") or DEFAULT_FCM_URL,
        smtp_url=_smtp_url(environ),
        email_from=environ.get("LIVEOP_EMAIL_FROM") or None,
        sms_url=_url(environ, "LIVEOP_SMS_URL") or TWILIO_URL,
        sms_account_sid=_sms_account_sid(environ),
        sms_auth_token=environ.get("LIVEOP_SMS_AUTH_TOKEN") or None,
        sms_from=environ.get("LIVEOP_SMS_FROM") or None,
        outbound_worker=_flag(environ, "LIVEOP_OUTBOUND_WORKER", default=True),
        outbound_lease_s=_int(environ, "LIVEOP_OUTBOUND_LEASE_S", DEFAULT_OUTBOUND_LEASE_S),
        imap_sources=_flag(environ, "LIVEOP_IMAP_SOURCES", default=True),
        imap_poll_s=_int(environ, "LIVEOP_IMAP_POLL_S", DEFAULT_IMAP_POLL_S),
        metrics_token=_metrics_token(environ),
        log_format=_choice(environ, "LIVEOP_LOG_FORMAT", LOG_FORMATS),
        shutdown_drain_s=_seconds(environ, "LIVEOP_SHUTDOWN_DRAIN_S", DEFAULT_SHUTDOWN_DRAIN_S),
        encryption_keys=_encryption_keys(environ, secret_key),
    )
