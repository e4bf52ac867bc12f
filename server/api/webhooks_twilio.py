"""Inbound SMS and status callbacks from Twilio, or any provider that speaks its webhook
contract (issue 14).

``POST /webhooks/twilio/{key}/sms``: the channel is the one whose key is in the path (404
otherwise). The signature is checked before anything is read into the store, over the URL the
provider was given: the channel's configured public URL, never the request's Host or
forwarding headers (403 otherwise, nothing written). A message then joins its thread: the
newest conversation of this channel with this number, reopened when resolved (the engine's
rule for a customer who writes again) unless the channel's ``after_resolved`` is "new", or a
new one. A lone score (1 to 5) answering the rating question the resolved conversation was
sent rates it instead and leaves it resolved (issue 19). A body that is one of the opt-out
words (STOP, ...), or ``OptOutType``, opts the number out of (or back into) replies from this
channel (server/sms_opt_outs.py), and is never a score.
``MessageSid`` is the message's client id, so a retried webhook makes no second message.
The answer is always TwiML: a provider texts a plain-text answer back to the customer.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl, urlsplit

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server import metrics, sms_opt_outs
from server.api.wire import parse_integer
from server.channels import after_resolved, public_url, settings_of
from server.conversations import Origin, rating_answer
from server.crypto import UnreadableSecret
from server.errors import Forbidden, Invalid, NotFound, UnsupportedMediaType
from server.event_catalogue import DELIVERY
from server.services import services
from server.sms_media import MAX_MEDIA, URL_MAX, media_rows
from server.sms_opt_outs import opt_out_change
from server.text import has_control_characters
from server.twilio_signature import valid_form, valid_json
from storage.models import Channel, Delivery, Identity, UserInfo

Endpoint = Callable[[Request], Awaitable[Response]]

ROOT = "/webhooks/twilio/{key}"
EMPTY_TWIML = b'<?xml version="1.0" encoding="UTF-8"?><Response/>'
# Twilio's message ids: SM (SMS) or MM (MMS) and 32 hex digits.
_MESSAGE_SID = re.compile(r"^(SM|MM)[0-9a-fA-F]{32}$")
_E164 = re.compile(r"^\+[1-9][0-9]{1,14}$")
# Twilio's message statuses as a reply's delivery; None: no change worth showing.
_STATUSES: dict[str, Delivery | None] = {
    "accepted": None, "scheduled": None, "queued": None, "sending": None, "sent": "sent",
    "delivered": "delivered", "read": "delivered", "partially_delivered": "delivered",
    "undelivered": "undelivered", "failed": "failed", "canceled": "failed",
}  # fmt: skip
# What each delivery may follow: forward only, whatever order callbacks arrive in.
_EARLIER: dict[Delivery, tuple[Delivery, ...]] = {
    "sent": ("queued",),
    "delivered": ("queued", "sent"),
    "undelivered": ("queued", "sent"),
    "failed": ("queued", "sent"),
    "queued": (),
}
# The provider's error code and message kept with the reply; its messages are a sentence.
ERROR_MAX = 300
# What a message of pictures alone says: the first picture shows once it is fetched.
MEDIA_NOTE = "[The customer sent {count} picture(s) or file(s).]"
# A MIME type: type/subtype, with parameters after a semicolon.
_CONTENT_TYPE = re.compile(r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+(;.*)?$")


def _twiml() -> Response:
    return Response(EMPTY_TWIML, media_type="text/xml")


def _signed_url(request: Request, base: str) -> str:
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{base}{request.url.path}" + (f"?{query}" if query else "")


async def _params(request: Request, base: str, auth_token: str) -> dict[str, str]:
    """The webhook's parameters, once its signature checks out; else 403."""
    body = await request.body()
    url = _signed_url(request, base)
    header = request.headers.get("x-twilio-signature")
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        if not valid_json(url, body, auth_token, header):
            raise Forbidden("invalid_signature", "X-Twilio-Signature does not sign this request")
        raise UnsupportedMediaType(
            "unsupported_media_type", "an inbound SMS webhook is a form POST"
        )
    if content_type not in ("application/x-www-form-urlencoded", ""):
        raise UnsupportedMediaType("unsupported_media_type", "send a form POST")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        raise Invalid("invalid_form", "the body is not UTF-8") from None
    if not valid_form(url, pairs, auth_token, header):
        raise Forbidden("invalid_signature", "X-Twilio-Signature does not sign this request")
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise Invalid("invalid_field", f"{name} is given more than once")
        params[name] = value
    return params


def _field(params: dict[str, str], name: str, pattern: re.Pattern[str], what: str) -> str:
    value = params.get(name, "")
    if not value:
        raise Invalid("missing_field", f"{name} is required")
    if not pattern.fullmatch(value):
        raise Invalid("invalid_field", f"{name} must be {what}")
    return value


async def _verified(request: Request) -> tuple[Channel, dict[str, str]]:
    """The channel in the path and the request's parameters, once it is proven to come from
    the channel's provider account; 404 or 403 otherwise."""
    channel = await services(request).channels.by_key(request.path_params["key"])
    try:
        credentials = services(request).channels.credentials(channel)
    except UnreadableSecret:
        # Nobody can check the signature: refuse, and let the provider retry and log it.
        raise Forbidden("invalid_signature", "the channel's credentials cannot be opened") from None
    params = await _params(request, public_url(channel), credentials.auth_token)
    if params.get("AccountSid") != credentials.account_sid:
        raise Forbidden("wrong_account", "AccountSid is not this channel's provider account")
    return channel, params


def _media(params: dict[str, str]) -> list[tuple[str, str]]:
    """Each ``(MediaUrl{N}, MediaContentType{N})`` of the message, checked for shape only:
    whose host it is on is for server/sms_media.py to judge (and record)."""
    count = parse_integer(params.get("NumMedia", "0"))
    if count is None or not 0 <= count <= MAX_MEDIA:
        raise Invalid("invalid_field", f"NumMedia must be a whole number from 0 to {MAX_MEDIA}")
    found = []
    for n in range(count):
        url = params.get(f"MediaUrl{n}", "")
        content_type = params.get(f"MediaContentType{n}", "").strip().lower()
        if not url:
            raise Invalid("missing_field", f"MediaUrl{n} is required")
        parts = urlsplit(url)
        if (
            len(url) > URL_MAX
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or has_control_characters(url)
            or " " in url
        ):
            raise Invalid("invalid_field", f"MediaUrl{n} must be an http:// or https:// URL")
        if not content_type:
            raise Invalid("missing_field", f"MediaContentType{n} is required")
        if len(content_type) > 100 or not _CONTENT_TYPE.fullmatch(content_type):
            raise Invalid("invalid_field", f"MediaContentType{n} must be a MIME type")
        found.append((url, content_type.split(";")[0].strip()))
    return found


async def sms(request: Request) -> Response:
    found = services(request)
    channel, params = await _verified(request)
    message_sid = _field(params, "MessageSid", _MESSAGE_SID, "a Twilio message SID")
    phone = _field(params, "From", _E164, "a phone number in E.164")
    text = params.get("Body", "")
    media = _media(params)
    if not text.strip() and media:
        text = MEDIA_NOTE.format(count=len(media))
    opt_out = opt_out_change(text, params.get("OptOutType"))
    # An opt-out word wins over everything; pictures are something to look at, not a score.
    may_answer_rating = opt_out is None and not media
    thread = await found.store.latest_channel_conversation(channel.account_id, channel.id, phone)
    if (
        thread is not None
        and thread.status == "resolved"
        and after_resolved(channel) == "new"
        and not (may_answer_rating and rating_answer(thread, text) is not None)
    ):
        thread = None
    committed = await found.engine.send(
        channel.account_id,
        convo_id=thread.id if thread is not None else None,
        text=text,
        user_info=UserInfo(phone=phone),
        origin=Origin(
            source_app="smsbroadcast", channel_id=channel.id, identity=Identity("phone", phone)
        ),
        client_msg_id=f"twilio:{message_sid}",
        account_key=True,
        may_answer_rating=may_answer_rating,
    )
    now = time.time()
    # After the message, which they belong to; a retry after a crash right here adds them.
    (message,) = committed.messages
    await found.store.add_sms_media(
        media_rows(
            channel.account_id, channel.id, message.convo_id, message.seq, media,
            settings_of(channel)["api_url"], now,
        )
    )  # fmt: skip
    if opt_out is not None:
        # After the message: a retried webhook whose message was kept records it then.
        await sms_opt_outs.record(
            found.store, found.feed, channel.account_id, channel.id, phone, opt_out, now
        )
    await found.store.record_channel_inbound(channel.account_id, channel.id, now)
    request.state.webhook_result = "duplicate" if committed.duplicate else "ok"
    return _twiml()


async def status(request: Request) -> Response:
    """A status callback: the reply's delivery moves forward only (queued, sent, then
    delivered, undelivered or failed with the provider's error code), and the account's
    operators hear of it on their stream."""
    found = services(request)
    channel, params = await _verified(request)
    message_sid = _field(params, "MessageSid", _MESSAGE_SID, "a Twilio message SID")
    reported = params.get("MessageStatus", "")
    if not reported:
        raise Invalid("missing_field", "MessageStatus is required")
    if reported not in _STATUSES:
        raise Invalid("invalid_field", f"MessageStatus {reported[:40]!r} is not a Twilio status")
    delivery = _STATUSES[reported]
    if delivery is None:
        return _twiml()  # still on its way: nothing a reply's delivery shows changes
    error = None
    if delivery in ("undelivered", "failed") and params.get("ErrorCode"):
        error = f"{params['ErrorCode']}: {params.get('ErrorMessage') or reported}"[:ERROR_MAX]
    moved = await found.store.advance_delivery(
        channel.account_id, channel.id, message_sid, delivery, _EARLIER[delivery], error
    )
    if moved is None:
        raise NotFound("message_not_found", "this channel sent no message with this MessageSid")
    convo_id, seq, advanced = moved
    if advanced:
        data = {"conversation_id": convo_id, "seq": seq, "delivery": delivery, "error": error}
        await found.feed.ephemeral(channel.account_id, DELIVERY, orjson.dumps(data))
    return _twiml()


def _counted(kind: str, handler: Endpoint) -> Endpoint:
    """The handler, counted in liveop_inbound_webhooks_total by what became of the request:
    ok, duplicate (a retried delivery), bad_signature, or error (refused or failed)."""
    results = {
        result: metrics.inbound_webhooks.labels("twilio", kind, result)
        for result in ("ok", "duplicate", "bad_signature", "error")
    }

    async def counted(request: Request) -> Response:
        try:
            response = await handler(request)
        except Forbidden as exc:
            results["bad_signature" if exc.code == "invalid_signature" else "error"].inc()
            raise
        except Exception:
            results["error"].inc()
            raise
        results[getattr(request.state, "webhook_result", "ok")].inc()
        return response

    return counted


routes = [
    Route(f"{ROOT}/sms", _counted("sms", sms), methods=["POST"]),
    Route(f"{ROOT}/status", _counted("status", status), methods=["POST"]),
]
