"""SMS replies through Twilio's Messages API, or any provider that speaks it.

``POST {base}/2010-04-01/Accounts/{sid}/Messages.json`` with the form fields To, From (or
MessagingServiceSid) and Body, HTTP basic auth ``sid:token``. Success is 201 with the new
message's ``sid``; a refusal is a 4xx with ``{"code", "message"}``.

Twilio's API has no idempotency key: a message sent again after a worker died between the
provider's 201 and recording it is a second SMS (the at-least-once window of the worker).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
import orjson

from server.adapters.delivery import DeliveryFailed
from storage.outbound import OutboundJob

TWILIO_URL = "https://api.twilio.com"
API_VERSION = "2010-04-01"
# A request timeout and a rate limit may pass; so may anything the provider got wrong
# (5xx). Every other refusal is about this message or these credentials and will recur.
_RETRYABLE_STATUSES = frozenset({408, 429})
# What people type around a number: "+1 (555) 010-0100" is +15550100100 to the provider.
_PUNCTUATION = re.compile(r"[\s().\-]")
# Twilio's prefix for a Messaging Service, which picks the sending number itself.
_MESSAGING_SERVICE_PREFIX = "MG"


def phone_number(raw: str) -> str:
    return _PUNCTUATION.sub("", raw)


def _refusal(response: httpx.Response) -> tuple[str, str | None]:
    """The provider's own words, ``{code}: {message}`` when it sent them, else the status;
    and its error code."""
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    if isinstance(body, dict) and body.get("message"):
        code = body.get("code")
        if code is None:
            return str(body["message"]), None
        return f"{code}: {body['message']}", str(code)
    return f"HTTP {response.status_code} {response.reason_phrase}".strip(), None


class TwilioSms:
    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        sender: str,
        timeout_s: float,
        base_url: str = TWILIO_URL,
    ) -> None:
        self._url = (
            f"{base_url.rstrip('/')}/{API_VERSION}/Accounts/{quote(account_sid, safe='')}"
            "/Messages.json"
        )
        self._from_field = (
            "MessagingServiceSid" if sender.startswith(_MESSAGING_SERVICE_PREFIX) else "From"
        )
        self._sender = sender
        self._client = httpx.AsyncClient(auth=(account_sid, auth_token), timeout=timeout_s)

    async def send(self, job: OutboundJob) -> str:
        return await self.send_text(job.contact.phone, job.text)

    async def send_text(self, phone: str, text: str) -> str:
        """Sends ``text`` to ``phone``; what ``send`` does with a job's contact and text."""
        to = phone_number(phone)
        if not to:
            raise DeliveryFailed("the conversation has no phone number", retryable=False)
        form = {"To": to, self._from_field: self._sender, "Body": text}
        try:
            response = await self._client.post(self._url, data=form)
        except httpx.TimeoutException as exc:
            raise DeliveryFailed("the SMS provider did not answer in time", retryable=True) from exc
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"SMS provider unreachable: {exc}", retryable=True) from exc
        if response.is_success:
            return _sid(response)
        retryable = response.status_code in _RETRYABLE_STATUSES or response.status_code >= 500
        reason, code = _refusal(response)
        raise DeliveryFailed(f"SMS provider: {reason}", retryable=retryable, code=code)

    async def aclose(self) -> None:
        await self._client.aclose()


def _sid(response: httpx.Response) -> str:
    """The provider's id for the message; accepted is accepted, even with an odd body."""
    try:
        body: Any = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return ""
    return str(body.get("sid", "")) if isinstance(body, dict) else ""
