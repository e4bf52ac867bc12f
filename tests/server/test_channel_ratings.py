"""Issue 19's ratings by SMS and email: a resolved conversation whose channel asks gets the
question through the outbound worker (the local Twilio and SMTP servers receive it), and the
customer's lone digit answers it once, without reopening; on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from server.conversations import RATING_QUESTION, reply_score
from server.services import Services
from storage.models import Conversation
from tests.conftest import Tenant, assert_error, bearer
from tests.outbound.servers import SmsServer, SmtpServer, sms_server, smtp_server
from tests.server.realtime_clients import serve, sse
from tests.server.test_admin import operator_token
from tests.server.test_email_channel import ADDRESS, CUSTOMER, ROOT, Mailbox, _plain, email_channel
from tests.server.test_reports import around_today, get_report, token
from tests.server.test_webhooks_twilio import Line, _line, assert_twiml, inbound
from tests.storage.conftest import postgres_url  # noqa: F401 (a fixture used by name)
from tests.storage.conftest import settings_on_both_backends as settings  # noqa: F401 (the fixture)

OPERATOR = "/api/v1/operator"
DELIVERED_WITHIN_S = 10.0


@pytest.fixture
def provider() -> Iterator[SmsServer]:
    with sms_server() as server:
        yield server


@pytest.fixture
def sink() -> Iterator[SmtpServer]:
    with smtp_server(auth=True) as server:
        yield server


async def _patch(client: httpx.AsyncClient, tenant: Tenant, channel_id: int, **body: Any) -> None:
    response = await client.patch(
        f"{ROOT}/{channel_id}", json=body, headers={"X-Api-Key": tenant.api_key}
    )
    assert response.status_code == 200, response.text
    assert response.json()["channel"]["ask_rating"] is body.get("ask_rating", True)


@pytest.fixture
async def line(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, provider: SmsServer
) -> Line:
    """The tenant's SMS channel, asking for ratings."""
    found = await _line(client, services, tenant, api_url=provider.base)
    assert found.channel["ask_rating"] is False  # off until an admin turns it on
    await _patch(client, tenant, found.channel["id"], ask_rating=True)
    return found


async def _close(client: httpx.AsyncClient, tenant: Tenant, convo_id: str) -> None:
    headers = bearer(await operator_token(client, tenant))
    closed = await client.post(f"{OPERATOR}/close/{convo_id}", headers=headers)
    assert closed.status_code == 200, closed.text


async def _texted(provider: SmsServer, count: int) -> list[str]:
    """The provider's received bodies, once there are ``count`` of them."""
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while len(provider.twilio.bodies()) < count:
        assert asyncio.get_running_loop().time() < deadline, "the SMS never left"
        await asyncio.sleep(0.05)
    return provider.twilio.bodies()


async def _only(line: Line) -> Conversation:
    (convo,) = await line.conversations()
    return convo


async def _resolved_and_asked(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> Conversation:
    assert_twiml(await line.post(inbound(1, "Where is my parcel?")))
    await _close(client, tenant, (await _only(line)).id)
    assert await _texted(provider, 1) == [RATING_QUESTION]
    return await _only(line)


# the digit


@pytest.mark.parametrize(
    ("text", "score"),
    [
        ("5", 5), ("5!", 5), (" 4 ", 4), ("\n3.\n", 3), ("(2)", 2), ("1 !!", 1),
        ("\uff15", 5),  # fullwidth five, as East Asian keyboards type it
        ("5\ufe0f\u20e3", 5),  # the keycap emoji
        ("5\n\nSent from my iPhone", 5), ("4\n\nGet Outlook for Android", 4),
        ("3\n-- \nVera Lane\nAcme Ltd, +1 555 0100", 3),
        ("5\nSent from my phone, but the parcel never came", None), ("5\n--\n6", 5),
        ("Sent from my iPhone", None), ("2\nmy iPhone broke", None),
        ("0", None), ("6", None), ("45", None), ("4.5", None), ("5 stars", None), ("-1", None),
        ("+5", None), ("\u0665", None), ("five", None), ("", None), ("5\x00", None),
    ],
)  # fmt: skip
def test_only_a_lone_digit_from_1_to_5_is_a_score(text: str, score: int | None) -> None:
    assert reply_score(text) == score


# SMS


async def test_a_resolved_sms_conversation_is_asked_and_a_digit_rates_it_without_reopening(
    app: Starlette,
    client: httpx.AsyncClient,
    tenant: Tenant,
    line: Line,
    provider: SmsServer,
) -> None:
    asked = await _resolved_and_asked(client, tenant, line, provider)
    assert asked.status == "resolved"
    assert asked.rating_asked_resolved_at == asked.resolved_at
    alex = await token(tenant, "alex")
    async with serve(app) as base, sse(base, alex["Authorization"].removeprefix("Bearer ")) as s:
        assert_twiml(await line.post(inbound(2, " 4! ")))
        first, second = await s.next(), await s.next()
    assert (first.event, first.data["message"]["content"]) == ("message:new", " 4! ")
    assert second.event == "conversation:updated"
    assert second.data["status"] == "resolved"
    assert second.data["rating"] == {"score": 4, "comment": "", "resolved_at": asked.resolved_at}
    rated = await _only(line)
    assert (rated.status, rated.resolved_at, rated.control) == ("resolved", asked.resolved_at,
                                                                asked.control)  # fmt: skip
    assert (rated.rating, rated.unread) == (4, asked.unread)
    # A retried webhook of the answer is the same message, not a second digit.
    assert_twiml(await line.post(inbound(2, " 4! ")))
    assert await line.texts(await _only(line)) == ["Where is my parcel?", RATING_QUESTION, " 4! "]
    assert (await _only(line)).status == "resolved"
    # One rating per question: a later digit is a message like any other, and reopens.
    assert_twiml(await line.post(inbound(3, "5")))
    again = await _only(line)
    assert (again.status, again.rating) == ("open", 4)


async def test_text_that_is_no_score_reopens_as_before(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    await _resolved_and_asked(client, tenant, line, provider)
    assert_twiml(await line.post(inbound(2, "thanks")))
    reopened = await _only(line)
    assert (reopened.status, reopened.rating) == ("open", None)


async def test_a_channel_set_to_new_takes_the_digit_into_the_resolved_one_and_text_into_a_new(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    await _patch(client, tenant, line.channel["id"], after_resolved="new")
    asked = await _resolved_and_asked(client, tenant, line, provider)
    assert_twiml(await line.post(inbound(2, "3")))
    rated = await _only(line)
    assert (rated.id, rated.status, rated.rating) == (asked.id, "resolved", 3)
    assert_twiml(await line.post(inbound(3, "thanks")))
    by_id = {c.id: c for c in await line.conversations()}
    assert len(by_id) == 2
    (fresh,) = [c for c in by_id.values() if c.id != asked.id]
    assert (by_id[asked.id].status, fresh.status) == ("resolved", "open")
    assert await line.texts(fresh) == ["thanks"]


async def test_a_reopened_and_re_resolved_conversation_is_asked_and_rated_again(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    convo = await _resolved_and_asked(client, tenant, line, provider)
    assert_twiml(await line.post(inbound(2, "2")))
    assert_twiml(await line.post(inbound(3, "One more question")))
    await _close(client, tenant, convo.id)
    assert await _texted(provider, 2) == [RATING_QUESTION, RATING_QUESTION]
    assert_twiml(await line.post(inbound(4, "5")))
    rated = await _only(line)
    assert (rated.status, rated.rating, rated.rated_resolved_at) == (
        "resolved", 5, rated.resolved_at,
    )  # fmt: skip


async def test_no_question_and_no_score_when_the_channel_does_not_ask(
    client: httpx.AsyncClient, tenant: Tenant, line: Line
) -> None:
    await _patch(client, tenant, line.channel["id"], ask_rating=False)
    assert_twiml(await line.post(inbound(1, "Hello")))
    await _close(client, tenant, (await _only(line)).id)
    closed = await _only(line)
    assert closed.rating_asked_resolved_at is None
    assert await line.texts(closed) == ["Hello"]  # nothing queued for the provider
    assert_twiml(await line.post(inbound(2, "5")))
    reopened = await _only(line)
    assert (reopened.status, reopened.rating) == ("open", None)


async def test_a_phone_that_opted_out_is_not_asked_and_stop_is_never_a_score(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    assert_twiml(await line.post(inbound(1, "STOP")))
    await _close(client, tenant, (await _only(line)).id)
    closed = await _only(line)
    assert closed.rating_asked_resolved_at is None
    assert await line.texts(closed) == ["STOP"]
    # Opted back in and asked, the provider's own STOP (OptOutType) is an opt-out, not a 5.
    assert_twiml(await line.post(inbound(2, "START")))
    await _close(client, tenant, closed.id)
    assert await _texted(provider, 1) == [RATING_QUESTION]
    assert_twiml(await line.post(inbound(3, "5", OptOutType="STOP")))
    assert ((await _only(line)).status, (await _only(line)).rating) == ("open", None)


async def test_a_digit_with_a_picture_is_a_message(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    await _resolved_and_asked(client, tenant, line, provider)
    picture = {"NumMedia": "1", "MediaUrl0": provider.twilio.media_url(provider.base, "ME1"),
               "MediaContentType0": "image/png"}  # fmt: skip
    assert_twiml(await line.post(inbound(2, "5", **picture)))
    assert ((await _only(line)).status, (await _only(line)).rating) == ("open", None)


async def test_bad_answers_are_refused_and_leave_the_question_open(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    await _resolved_and_asked(client, tenant, line, provider)
    assert_error(await line.post(inbound(2, "5\x00")), 400, "invalid_characters")
    assert_error(await line.post(inbound(3, "4" * 20_000)), 400, "message_too_long")
    unrated = await _only(line)
    assert (unrated.status, unrated.rating) == ("resolved", None)
    assert_twiml(await line.post(inbound(4, "1")))
    assert (await _only(line)).rating == 1


async def test_an_sms_rating_counts_in_the_ratings_report(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, provider: SmsServer
) -> None:
    await _resolved_and_asked(client, tenant, line, provider)
    assert_twiml(await line.post(inbound(2, "2")))
    ada = await token(tenant, "ada")
    report = (await get_report(tenant, ada, "ratings", around_today(channel="sms"))).json()
    assert (report["count"], report["average"]) == (1, 2.0)
    assert [r["count"] for r in report["rows"] if r["kind"] == "score"] == [0, 1, 0, 0, 0]


# the setting


@pytest.mark.parametrize("value", ["maybe", ["true"], 1, {"on": True}, "true\x00"], ids=repr)
async def test_a_bad_ask_rating_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, line: Line, value: Any
) -> None:
    response = await client.patch(
        f"{ROOT}/{line.channel['id']}",
        json={"ask_rating": value},
        headers={"X-Api-Key": tenant.api_key},
    )
    assert_error(response, 400, "invalid_field")


async def test_a_bot_channel_has_no_rating_question(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    body = {"kind": "bot", "name": "Bot", "public_url": "https://chat.example.test",
            "ask_rating": True}  # fmt: skip
    response = await client.post(ROOT, json=body, headers={"X-Api-Key": tenant.api_key})
    assert_error(response, 400, "invalid_field")


# email


async def _mail_question(sink: SmtpServer, count: int) -> EmailMessage:
    deadline = asyncio.get_running_loop().time() + DELIVERED_WITHIN_S
    while len(sink.mailbox.messages()) < count:
        assert asyncio.get_running_loop().time() < deadline, "the mail never left"
        await asyncio.sleep(0.05)
    return sink.mailbox.messages()[-1]


async def test_an_email_conversation_is_asked_in_its_thread_and_a_quoted_reply_rates_it(
    client: httpx.AsyncClient, services: Services, tenant: Tenant, sink: SmtpServer
) -> None:
    created = await client.post(
        ROOT, json=email_channel(sink, ask_rating=True), headers={"X-Api-Key": tenant.api_key}
    )
    assert created.status_code == 201, created.text
    mailbox = Mailbox(client, services, tenant, sink, created.json()["channel"])
    first = _plain(CUSTOMER, ADDRESS, "Broken kettle", "It leaks.", Message_ID="<k1@c.test>")
    convo_id = (await mailbox.mail(first))["conversation_id"]
    await _close(client, tenant, convo_id)
    question = await _mail_question(sink, 1)
    assert question.get_content().strip() == RATING_QUESTION
    assert (question["In-Reply-To"], question["References"]) == ("<k1@c.test>", "<k1@c.test>")
    assert str(question["Subject"]).startswith("Re: Broken kettle [#")
    quoted = "\n".join(f"> {line}" for line in RATING_QUESTION.splitlines())
    answer = _plain(
        CUSTOMER, str(question["Reply-To"]), f"Re: {question['Subject']}",
        f"5\n\nOn Mon, 7 Dec 2026 at 10:02, Acme <{ADDRESS}> wrote:\n\n{quoted}\n",
        Message_ID="<k2@c.test>", In_Reply_To=str(question["Message-ID"]),
    )  # fmt: skip
    assert (await mailbox.mail(answer))["conversation_id"] == convo_id
    (rated,) = await mailbox.conversations()
    assert (rated.status, rated.rating, rated.rated_resolved_at) == (
        "resolved", 5, rated.resolved_at,
    )  # fmt: skip
    assert (await mailbox.texts(convo_id))[-1] == "5"
    # The same mail again (a webhook retried) changes nothing; a new one is a message.
    assert (await mailbox.mail(answer))["duplicate"] is True
    later = _plain(CUSTOMER, ADDRESS, f"Re: {question['Subject']}", "4",
                   Message_ID="<k3@c.test>", In_Reply_To="<k2@c.test>")  # fmt: skip
    await mailbox.mail(later)
    (reopened,) = await mailbox.conversations()
    assert (reopened.status, reopened.rating) == ("open", 5)
