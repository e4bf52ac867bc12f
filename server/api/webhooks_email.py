"""Inbound mail over HTTP (issue 15): raw RFC 5322 for a Postfix pipe or any provider that
forwards raw mail, and Mailgun's routes format.

``POST /webhooks/email/{key}``: the body is the message. ``POST /webhooks/email/{key}/mailgun``:
Mailgun's form (``body-mime`` when the route asked for raw MIME, else the parsed fields, which
are put back together into one message), signed with the channel's Mailgun signing key: the
hex HMAC-SHA256 of ``timestamp + token``, fresh within ``FRESHNESS_S``, each token once.
Unknown key ``404``; bad, stale or replayed signature ``403``; both before anything is kept.
Every mail goes through the one pipeline (server/email_ingest.py), idempotent per channel.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from email.message import EmailMessage

import orjson
from starlette.datastructures import FormData, UploadFile
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route

from server.api.wire import ok
from server.crypto import UnreadableSecret
from server.email_ingest import MAX_MAIL_BYTES
from server.errors import Forbidden, Invalid, NotFound, TooLarge, UnsupportedMediaType
from server.services import services
from storage.models import Channel

PREFIX = "/webhooks/email/"
ROOT = PREFIX + "{key}"
# How old a Mailgun signature may be (ActionMailbox's window): enough for a slow delivery,
# too short to replay a captured request later.
FRESHNESS_S = 120.0
# Headers that describe the parts Mailgun parsed away; the rebuilt message has its own.
_PART_HEADERS = frozenset({"content-type", "content-transfer-encoding", "mime-version"})
MAILGUN_FILES_MAX = 50


async def _channel(request: Request) -> Channel:
    channel = await services(request).channels.by_key(request.path_params["key"])
    if channel.kind != "email":
        raise NotFound("channel_not_found", "no such channel")
    return channel


async def _raw(request: Request) -> bytes:
    """The body, refused as soon as it grows past the limit (it is exempt from the app's)."""
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_MAIL_BYTES:
                raise TooLarge("mail_too_large", f"the mail is larger than {MAX_MAIL_BYTES} bytes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise Invalid("incomplete_body", "the client went away before the body ended") from None
    if not size:
        raise Invalid("empty_body", "the body must be the mail, as RFC 5322 text")
    return b"".join(chunks)


async def _answer(request: Request, channel: Channel, raw: bytes) -> Response:
    result = await services(request).email.ingest(channel, raw)
    return ok(
        outcome=result.outcome,
        conversation_id=result.convo_id,
        duplicate=result.duplicate,
        reason=result.reason,
    )


async def mime(request: Request) -> Response:
    channel = await _channel(request)
    return await _answer(request, channel, await _raw(request))


def _signed(key: str, form: FormData) -> tuple[str, float]:
    """The token of a fresh, valid signature; 403 otherwise."""
    fields = {name: form.get(name) for name in ("timestamp", "token", "signature")}
    values = {k: v for k, v in fields.items() if isinstance(v, str) and v}
    if len(values) != len(fields):
        raise Forbidden("invalid_signature", "timestamp, token and signature are required")
    expected = hmac.new(
        key.encode(), (values["timestamp"] + values["token"]).encode(), hashlib.sha256
    ).hexdigest()
    if not hmac.compare_digest(expected, values["signature"].lower()):
        raise Forbidden("invalid_signature", "the signature does not sign this request")
    try:
        stamp = float(values["timestamp"])
    except ValueError:
        raise Forbidden("invalid_signature", "timestamp is not a number") from None
    if not abs(time.time() - stamp) <= FRESHNESS_S:
        raise Forbidden("stale_signature", f"the signature is older than {FRESHNESS_S:.0f} s")
    return values["token"], stamp


async def _rebuilt(form: FormData) -> bytes:
    """The message Mailgun parsed: its raw MIME when given, else its headers and parts."""
    body_mime = form.get("body-mime")
    if isinstance(body_mime, str) and body_mime:
        return body_mime.encode("utf-8", "surrogateescape")
    raw_headers = form.get("message-headers")
    try:
        headers = orjson.loads(raw_headers) if isinstance(raw_headers, str) else None
    except orjson.JSONDecodeError:
        headers = None
    if not isinstance(headers, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(v, str) for v in h) for h in headers
    ):
        raise Invalid("invalid_field", "message-headers must be a JSON list of [name, value]")
    message = EmailMessage()
    try:
        for name, value in headers:
            if name.lower() not in _PART_HEADERS:
                message[name] = value.replace("\r", " ").replace("\n", " ")
        plain, html = form.get("body-plain"), form.get("body-html")
        message.set_content(plain if isinstance(plain, str) else "")
        if isinstance(html, str) and html:
            message.add_alternative(html, subtype="html")
        for name, value in form.multi_items():
            if name.startswith("attachment-") and isinstance(value, UploadFile):
                maintype, _, subtype = (value.content_type or "").partition("/")
                message.add_attachment(
                    await value.read(),
                    maintype=maintype or "application",
                    subtype=subtype or "octet-stream",
                    filename=value.filename or name,
                )
    except (ValueError, TypeError) as exc:
        raise Invalid("invalid_field", f"the message cannot be rebuilt: {exc}") from None
    return bytes(message)


async def mailgun(request: Request) -> Response:
    channel = await _channel(request)
    try:
        key = services(request).channels.email_credentials(channel).mailgun_signing_key
    except UnreadableSecret:
        raise Forbidden("invalid_signature", "the channel's credentials cannot be opened") from None
    if not key:
        raise Forbidden("invalid_signature", "this channel has no Mailgun signing key")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ("application/x-www-form-urlencoded", "multipart/form-data"):
        raise UnsupportedMediaType("unsupported_media_type", "Mailgun posts a form")
    declared = request.headers.get("content-length", "0")
    if not declared.isdigit() or int(declared) > MAX_MAIL_BYTES:
        raise TooLarge("mail_too_large", f"the mail is larger than {MAX_MAIL_BYTES} bytes")
    async with request.form(
        max_files=MAILGUN_FILES_MAX, max_fields=1000, max_part_size=MAX_MAIL_BYTES
    ) as form:
        token, stamp = _signed(key, form)
        raw = await _rebuilt(form)
        if not await services(request).store.spend_token(
            f"mailgun:{channel.key}:{token}", stamp + 2 * FRESHNESS_S
        ):
            raise Forbidden("replayed_signature", "this token was used already")
    return await _answer(request, channel, raw)


routes = [
    Route(ROOT, mime, methods=["POST"]),
    Route(f"{ROOT}/mailgun", mailgun, methods=["POST"]),
]
