"""The channel adapters against real local providers: what arrives, and how each refusal is
classified (retryable or not)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from server.adapters.delivery import DeliveryFailed
from server.adapters.email import SmtpEmail, parse_smtp_url
from server.adapters.sms import TwilioSms
from storage.models import UserInfo
from tests.outbound.conftest import CUSTOMER, make_job
from tests.outbound.servers import (
    SMS_FROM,
    SMS_SID,
    SMS_TOKEN,
    SMTP_PASSWORD,
    SMTP_USER,
    Certificate,
    SmsServer,
    SmtpServer,
    smtp_server,
)
from tests.server.realtime_clients import free_port

TIMEOUT_S = 5.0
FROM = "support@acme.test"


def _email(url: str, **kwargs: object) -> SmtpEmail:
    return SmtpEmail(url, FROM, timeout_s=TIMEOUT_S, **kwargs)  # type: ignore[arg-type]


async def _refused(adapter: SmtpEmail | TwilioSms, **job_fields: object) -> DeliveryFailed:
    channel = "sms" if isinstance(adapter, TwilioSms) else "email"
    with pytest.raises(DeliveryFailed) as caught:
        await adapter.send(make_job(channel, **job_fields))  # type: ignore[arg-type]
    return caught.value


# email


async def test_an_email_arrives_with_its_headers_and_a_message_id_made_from_the_message(
    smtp: SmtpServer,
) -> None:
    adapter = _email(f"smtp://127.0.0.1:{smtp.port}")
    job = make_job(text="Your order shipped today.\nTracking: 42")
    message_id = await adapter.send(job)
    again = await adapter.send(job)  # a worker that died after sending sends it again
    first, second = smtp.mailbox.messages()
    assert message_id == again == first["Message-ID"] == second["Message-ID"]
    assert message_id == "<Wd_OZv52XStHZyPR.liveop@acme.test>"
    assert first["From"] == '"Alex (Acme)" <support@acme.test>'
    assert first["To"] == "Vera Visitor <vera@customer.test>"
    assert first["Subject"] == "Your conversation with Acme"
    assert first["Date"] == "Sat, 21 Nov 2026 15:35:42 +0000"
    assert first.get_content().splitlines() == ["Your order shipped today.", "Tracking: 42"]
    assert smtp.mailbox.tls_seen == [False, False]
    other = await adapter.send(make_job(message_id="another-id"))
    assert other != message_id


async def test_a_configured_sender_name_is_kept_and_unicode_survives(smtp: SmtpServer) -> None:
    adapter = SmtpEmail(
        f"smtp://127.0.0.1:{smtp.port}", "Acme Support <help@acme.test>", timeout_s=TIMEOUT_S
    )
    contact = dataclasses.replace(CUSTOMER, fname="Zoë", lname="Łukasz")
    await adapter.send(make_job(text="Grüße, 你好", contact=contact))
    (message,) = smtp.mailbox.messages()
    assert message["From"] == "Acme Support <help@acme.test>"
    assert message["To"] == "Zoë Łukasz <vera@customer.test>"
    assert message.get_content().splitlines() == ["Grüße, 你好"]


async def test_smtp_auth_from_the_url_userinfo() -> None:
    with smtp_server(auth=True) as server:
        good = _email(f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}")
        await good.send(make_job())
        bad = _email(f"smtp://{SMTP_USER}:wrong@127.0.0.1:{server.port}")
        failure = await _refused(bad)
        assert len(server.mailbox.messages()) == 1
    assert failure.reason.startswith("SMTP 535")
    assert failure.retryable is False


async def test_starttls_is_required_and_verified(certificate: Certificate) -> None:
    with smtp_server(auth=True, starttls=certificate) as server:
        url = f"smtp://{SMTP_USER}:{SMTP_PASSWORD}@127.0.0.1:{server.port}?starttls=1"
        await _email(url, tls_context=certificate.client_context).send(make_job())
        assert server.mailbox.tls_seen == [True]
        # The system's CAs do not know the test certificate: no message goes out unverified.
        untrusted = await _refused(_email(url))
        assert untrusted.retryable is True
        # Plain text to a server that demands STARTTLS is refused before any mail is sent.
        plain = await _refused(_email(f"smtp://127.0.0.1:{server.port}"))
        assert plain.reason.startswith("SMTP 530")
    assert len(server.mailbox.messages()) == 1


async def test_implicit_tls(certificate: Certificate) -> None:
    with smtp_server(implicit_tls=certificate) as server:
        adapter = _email(f"smtps://127.0.0.1:{server.port}", tls_context=certificate.client_context)
        await adapter.send(make_job())
        assert server.mailbox.tls_seen == [True]


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("550 5.1.1 <vera@customer.test>: no such user", False), ("450 4.2.0 mailbox busy", True)],
)
async def test_a_refused_recipient_is_final_for_5xx_and_retried_for_4xx(
    smtp: SmtpServer, reply: str, retryable: bool
) -> None:
    smtp.mailbox.refuse_rcpt = reply
    failure = await _refused(_email(f"smtp://127.0.0.1:{smtp.port}"))
    assert failure.retryable is retryable
    assert reply in failure.reason


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("554 5.7.1 rejected as spam", False), ("451 4.7.1 greylisted, try later", True)],
)
async def test_a_refused_message_is_final_for_5xx_and_retried_for_4xx(
    smtp: SmtpServer, reply: str, retryable: bool
) -> None:
    smtp.mailbox.refuse_data = reply
    failure = await _refused(_email(f"smtp://127.0.0.1:{smtp.port}"))
    assert (failure.reason, failure.retryable) == (f"SMTP {reply}", retryable)


async def test_an_unreachable_smtp_server_is_retried() -> None:
    failure = await _refused(_email(f"smtp://127.0.0.1:{free_port()}"))
    assert failure.retryable is True
    assert failure.reason.startswith("SMTP server unreachable")


async def test_an_email_conversation_without_an_address_fails_for_good(smtp: SmtpServer) -> None:
    adapter = _email(f"smtp://127.0.0.1:{smtp.port}")
    failure = await _refused(adapter, contact=UserInfo(fname="Vera", phone="+15550100"))
    assert (failure.reason, failure.retryable) == ("the conversation has no email address", False)
    assert smtp.mailbox.messages() == []


def test_smtp_urls() -> None:
    plain = parse_smtp_url("smtp://relay.internal")
    assert (plain.host, plain.port, plain.implicit_tls, plain.starttls) == (
        "relay.internal", 25, False, False,
    )  # fmt: skip
    assert (plain.username, plain.password) == (None, None)
    submission = parse_smtp_url("smtp://me%40acme.test:p%3Ass@mail.acme.test?starttls=1")
    assert (submission.port, submission.starttls) == (587, True)
    assert (submission.username, submission.password) == ("me@acme.test", "p:ss")
    tls = parse_smtp_url("smtps://mail.acme.test:2465")
    assert (tls.port, tls.implicit_tls, tls.starttls) == (2465, True, False)


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.acme.test", "starts with smtp:// or smtps://"),
        ("smtp://", "names no host"),
        ("smtp://mail.acme.test?tls=1", "takes only ?starttls=1 or 0"),
        ("smtp://mail.acme.test?starttls=maybe", "takes only ?starttls=1 or 0"),
        ("smtps://mail.acme.test?starttls=1", "already TLS"),
        ("smtp://mail.acme.test:99999", "port is not a number"),
    ],
)
def test_bad_smtp_urls_are_refused_with_the_reason(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=re.escape(complaint)):
        parse_smtp_url(url)


# SMS


def _sms(server: SmsServer, *, token: str = SMS_TOKEN, sender: str = SMS_FROM) -> TwilioSms:
    return TwilioSms(
        account_sid=SMS_SID, auth_token=token, sender=sender, timeout_s=TIMEOUT_S,
        base_url=server.base,
    )  # fmt: skip


async def test_an_sms_is_posted_as_twilio_expects(sms: SmsServer) -> None:
    adapter = _sms(sms)
    contact = dataclasses.replace(CUSTOMER, phone="+1 (555) 765-4321")
    sid = await adapter.send(make_job("sms", text="On its way!", contact=contact))
    await adapter.aclose()
    assert sid == f"SM{1:032x}"
    (received,) = sms.twilio.received
    assert received.form == {"To": "+15557654321", "From": SMS_FROM, "Body": "On its way!"}


async def test_a_messaging_service_sends_in_place_of_a_number(sms: SmsServer) -> None:
    adapter = _sms(sms, sender="MG0123456789abcdef0123456789abcdef")
    await adapter.send(make_job("sms"))
    await adapter.aclose()
    form = sms.twilio.received[0].form
    assert form["MessagingServiceSid"] == "MG0123456789abcdef0123456789abcdef"
    assert "From" not in form


async def test_an_invalid_number_fails_for_good_with_the_providers_reason(sms: SmsServer) -> None:
    adapter = _sms(sms)
    failure = await _refused(adapter, contact=dataclasses.replace(CUSTOMER, phone="555 0100"))
    await adapter.aclose()
    assert failure.retryable is False
    assert failure.reason == (
        "SMS provider: 21211: The 'To' number 5550100 is not a valid phone number."
    )


async def test_wrong_credentials_fail_for_good(sms: SmsServer) -> None:
    adapter = _sms(sms, token="wrong")
    failure = await _refused(adapter)
    await adapter.aclose()
    assert (failure.reason, failure.retryable) == ("SMS provider: 20003: Authenticate", False)


@pytest.mark.parametrize(
    ("status", "body", "reason", "retryable"),
    [
        (429, {"code": 20429, "message": "Too Many Requests"}, "20429: Too Many Requests", True),
        (503, b"<html>Service Unavailable</html>", "HTTP 503 Service Unavailable", True),
        (500, {"message": "Internal"}, "Internal", True),
        (408, b"", "HTTP 408 Request Timeout", True),
        (400, {"code": 21617, "message": "Body too long"}, "21617: Body too long", False),
        (404, b"not json", "HTTP 404 Not Found", False),
        (301, b"", "HTTP 301 Moved Permanently", False),
    ],
)
async def test_provider_errors_are_classified(
    sms: SmsServer, status: int, body: object, reason: str, retryable: bool
) -> None:
    sms.twilio.scripted.append((status, body))
    adapter = _sms(sms)
    failure = await _refused(adapter)
    await adapter.aclose()
    assert (failure.reason, failure.retryable) == (f"SMS provider: {reason}", retryable)
    assert sms.twilio.received == []


async def test_an_accepted_message_with_an_odd_body_still_counts_as_sent(sms: SmsServer) -> None:
    sms.twilio.scripted.append((201, b"accepted"))
    adapter = _sms(sms)
    assert await adapter.send(make_job("sms")) == ""
    await adapter.aclose()


async def test_an_unreachable_or_silent_provider_is_retried(sms: SmsServer) -> None:
    gone = TwilioSms(
        account_sid=SMS_SID, auth_token=SMS_TOKEN, sender=SMS_FROM, timeout_s=TIMEOUT_S,
        base_url=f"http://127.0.0.1:{free_port()}",
    )  # fmt: skip
    unreachable = await _refused(gone)
    await gone.aclose()
    assert unreachable.retryable is True
    assert unreachable.reason.startswith("SMS provider unreachable")

    sms.twilio.delay_s = 1.0
    impatient = TwilioSms(
        account_sid=SMS_SID, auth_token=SMS_TOKEN, sender=SMS_FROM, timeout_s=0.2,
        base_url=sms.base,
    )  # fmt: skip
    silent = await _refused(impatient)
    await impatient.aclose()
    assert (silent.reason, silent.retryable) == ("the SMS provider did not answer in time", True)


async def test_an_sms_conversation_without_a_number_fails_for_good(sms: SmsServer) -> None:
    adapter = _sms(sms)
    failure = await _refused(adapter, contact=UserInfo(email="vera@customer.test"))
    await adapter.aclose()
    assert (failure.reason, failure.retryable) == ("the conversation has no phone number", False)
    assert sms.twilio.received == []
