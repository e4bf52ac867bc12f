"""Seed 000's rules, observed through the App Command API as an integration would."""

from __future__ import annotations

import asyncio

from server.services import Services
from tests.conftest import Tenant


async def test_new_conversation_defaults(tenant: Tenant) -> None:
    body = await tenant.ok(
        "sendmessage", message="Hi", userInfo={"fname": "Jane", "phone": "+1 555"}
    )
    assert len(body["convoID"]) >= 16 and body["message"]["seq"] == 1
    convo = (await tenant.ok("gethistory", convoID=body["convoID"]))["conversation"]
    assert convo["sourceApp"] == "chatbot" and convo["status"] == "open"
    assert convo["mode"] == "bot" and convo["operatorID"] is None and convo["unread"] == 1
    assert convo["userInfo"] == {"fname": "Jane", "lname": "", "email": "", "phone": "+1 555"}


async def test_conversation_ids_are_unguessable(tenant: Tenant) -> None:
    ids = {await tenant.visitor_says("hi") for _ in range(20)}
    assert len(ids) == 20
    # 22 url-safe base64 characters carry 128 random bits.
    assert all(len(i) == 22 for i in ids)


async def test_first_operator_to_reply_owns_the_conversation_for_good(
    tenant: Tenant,
) -> None:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="On it")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.admin_id, message="Me too")
    await tenant.ok("setstatus", convoID=convo, status="resolved")
    await tenant.visitor_says("Again", convoID=convo)
    history = await tenant.ok("gethistory", convoID=convo)
    assert history["conversation"]["operatorID"] == tenant.operator_id
    names = [m["operatorName"] for m in history["messages"] if m["sender"] == "operator"]
    assert names == ["Alex", "Ada Admin"]


async def test_concurrent_first_replies_claim_exactly_one_owner(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Anyone?")
    replies = [
        tenant.ok("sendmessage", convoID=convo, operatorID=op, message="Me!")
        for op in (tenant.operator_id, tenant.admin_id) * 5
    ]
    bodies = await asyncio.gather(*replies)
    first = min(bodies, key=lambda b: b["message"]["seq"])["message"]["operatorID"]
    history = await tenant.ok("gethistory", convoID=convo)
    assert history["conversation"]["operatorID"] == first
    assert [m["seq"] for m in history["messages"]] == list(range(1, 12))


async def test_operator_reply_activates_an_open_conversation_only(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="?")
    assert (await tenant.ok("gethistory", convoID=convo))["conversation"]["status"] == "waiting"
    other = await tenant.visitor_says("Help")
    await tenant.ok("sendmessage", convoID=other, operatorID=tenant.operator_id, message="Hi")
    assert (await tenant.ok("gethistory", convoID=other))["conversation"]["status"] == "active"


async def test_the_customer_answering_a_waiting_conversation_opens_it(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Order?")
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Hi?")
    assert (await tenant.ok("gethistory", convoID=convo))["conversation"]["status"] == "waiting"
    await tenant.visitor_says("It is 1234", convoID=convo)
    answered = (await tenant.ok("gethistory", convoID=convo))["conversation"]
    assert answered["status"] == "open" and answered["operatorID"] == tenant.operator_id


async def test_resolve_records_resolved_at_and_a_customer_message_reopens(
    tenant: Tenant,
) -> None:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Done")
    resolved = (await tenant.ok("setstatus", convoID=convo, status="resolved"))["conversation"]
    assert resolved["status"] == "resolved" and resolved["resolvedAt"] >= resolved["created"]
    await tenant.visitor_says("One more thing", convoID=convo)
    reopened = (await tenant.ok("gethistory", convoID=convo))["conversation"]
    assert reopened["status"] == "open" and reopened["resolvedAt"] is None
    assert reopened["operatorID"] == tenant.operator_id


async def test_setting_the_same_status_twice_is_one_change(
    tenant: Tenant, services: Services
) -> None:
    convo = await tenant.visitor_says("Help")
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    seq = await tenant.event_seq(services)
    await tenant.ok("setstatus", convoID=convo, status="waiting")
    assert await tenant.event_seq(services) == seq


async def test_bot_stops_once_an_operator_speaks(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Hi bot")
    await tenant.ok("sendmessage", convoID=convo, sender="bot", message="Hello, I am the bot")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="Human")
    refused = await tenant.command("sendmessage", convoID=convo, sender="bot", message="Still me")
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "bot_stopped"
    history = await tenant.ok("gethistory", convoID=convo)
    assert history["conversation"]["mode"] == "operator"
    assert [m["sender"] for m in history["messages"]] == ["visitor", "bot", "operator"]


async def test_canned_macros_fill_from_the_conversation_and_the_operator(
    tenant: Tenant, services: Services
) -> None:
    canned = await services.directory.create_canned(
        tenant.account_id,
        name="Hi",
        tag="greet",
        message="Hi {fname} {lname} ({email}, {phone}), I'm {operator}. {unknown}",
    )
    info = {"fname": "Jane", "lname": "Doe", "email": "jane@x.test", "phone": "+15550100"}
    convo = await tenant.visitor_says("Hello", userInfo=info)
    body = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned.id, message=""
    )
    assert body["message"]["message"] == (
        "Hi Jane Doe (jane@x.test, +15550100), I'm Alex. {unknown}"
    )


async def test_macro_values_are_never_expanded_twice(tenant: Tenant, services: Services) -> None:
    canned = await services.directory.create_canned(
        tenant.account_id, name="Hi", tag="", message="Hello {fname}, from {operator}"
    )
    convo = await tenant.visitor_says("Hello", userInfo={"fname": "{operator}"})
    body = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned.id
    )
    assert body["message"]["message"] == "Hello {operator}, from Alex"


async def test_missing_macro_values_become_empty(tenant: Tenant, services: Services) -> None:
    canned = await services.directory.create_canned(
        tenant.account_id, name="Hi", tag="", message="Hi {fname}!"
    )
    convo = await tenant.visitor_says("Hello")
    body = await tenant.ok(
        "sendmessage", convoID=convo, operatorID=tenant.operator_id, canned=canned.id
    )
    assert body["message"]["message"] == "Hi !"


async def test_user_info_is_kept_and_only_filled_in_later(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("Hi", userInfo={"fname": "Jane"})
    await tenant.visitor_says("Me again", convoID=convo, userInfo={"fname": "X", "email": "j@x.io"})
    info = (await tenant.ok("gethistory", convoID=convo))["userInfo"]
    assert info["fname"] == "Jane" and info["email"] == "j@x.io"


async def test_poll_returns_each_side_its_unread_and_marks_it_read(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("one")
    await tenant.visitor_says("two", convoID=convo)
    assert (await tenant.ok("gethistory", convoID=convo))["conversation"]["unread"] == 2
    admin_side = await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id)
    assert [m["message"] for m in admin_side["messages"]] == ["one", "two"]
    assert (await tenant.ok("gethistory", convoID=convo))["conversation"]["unread"] == 0
    again = await tenant.ok("poll", convoID=convo, operatorID=tenant.admin_id)
    assert again["messages"] == []
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="hey")
    visitor_side = await tenant.ok("poll", convoID=convo)
    assert [m["message"] for m in visitor_side["messages"]] == ["hey"]
    assert (await tenant.ok("poll", convoID=convo))["messages"] == []


async def test_poll_since_filters_by_creation_time(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("old")
    created = (await tenant.ok("gethistory", convoID=convo))["messages"][0]["created"]
    await tenant.visitor_says("new", convoID=convo)
    polled = await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id, since=created)
    assert [m["message"] for m in polled["messages"]] == ["new"]


async def test_unread_counts_only_visitor_messages_after_the_read_cursor(
    tenant: Tenant,
) -> None:
    convo = await tenant.visitor_says("one")
    await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id)
    await tenant.ok("sendmessage", convoID=convo, sender="bot", message="bot says")
    await tenant.visitor_says("two", convoID=convo)
    await tenant.visitor_says("three", convoID=convo)
    assert (await tenant.ok("gethistory", convoID=convo))["conversation"]["unread"] == 2


async def test_typing_is_seen_by_the_other_side_only(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("hi")
    await tenant.ok("settyping", convoID=convo)
    assert (await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id))["typing"]
    assert not (await tenant.ok("poll", convoID=convo))["typing"]
    await tenant.ok("settyping", convoID=convo, operatorID=tenant.operator_id)
    assert (await tenant.ok("poll", convoID=convo))["typing"]


async def test_history_returns_the_latest_messages_oldest_first(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("m1")
    for i in range(2, 61):
        await tenant.visitor_says(f"m{i}", convoID=convo)
    default = await tenant.ok("gethistory", convoID=convo)
    assert [m["seq"] for m in default["messages"]] == list(range(11, 61))
    three = await tenant.ok("gethistory", convoID=convo, numMessages=3)
    assert [m["message"] for m in three["messages"]] == ["m58", "m59", "m60"]


async def test_replies_on_sms_and_email_are_queued_for_delivery(tenant: Tenant) -> None:
    for app in ("smsbroadcast", "emailbroadcast"):
        convo = await tenant.visitor_says("text", sourceApp=app)
        reply = await tenant.ok(
            "sendmessage", convoID=convo, operatorID=tenant.operator_id, message="reply"
        )
        assert reply["message"]["delivery"] == "queued"
    web = await tenant.visitor_says("web", sourceApp="liveoperator")
    reply = await tenant.ok("sendmessage", convoID=web, operatorID=tenant.operator_id, message="r")
    assert reply["message"]["delivery"] is None


async def test_a_retried_send_with_one_client_msg_id_creates_one_message(
    tenant: Tenant, services: Services
) -> None:
    first = await tenant.ok("sendmessage", message="hi", clientMsgID="abc-1")
    seq = await tenant.event_seq(services)
    again = await tenant.ok("sendmessage", message="hi", clientMsgID="abc-1")
    assert again["duplicate"] is True and again["convoID"] == first["convoID"]
    assert again["message"] == first["message"]
    assert await tenant.event_seq(services) == seq
    reused = await tenant.command(
        "sendmessage", convoID=await tenant.visitor_says("x"), message="hi", clientMsgID="abc-1"
    )
    assert reused.status_code == 409
    assert reused.json()["error"]["code"] == "client_msg_id_reused"


async def test_every_change_appends_gapless_account_events(
    tenant: Tenant, services: Services
) -> None:
    convo = await tenant.visitor_says("hi")
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="yo")
    await tenant.ok("setstatus", convoID=convo, status="resolved")
    events = await services.store.list_events(tenant.account_id, after_seq=0, limit=100)
    assert [(e.seq, e.kind) for e in events] == [
        (1, "conversation:new"),
        (2, "message:new"),
        (3, "message:new"),
        (4, "conversation:updated"),
        (5, "conversation:control_changed"),
        (6, "conversation:updated"),
        (7, "conversation:control_changed"),
    ]


async def test_json_body_and_json_data_and_api_key_aliases(tenant: Tenant) -> None:
    response = await tenant.client.post(
        "/",
        json={
            "accountID": tenant.account_id,
            "apiKey": tenant.api_key,
            "app": "liveoperator",
            "command": "sendmessage",
            "jsonData": {"message": "from json"},
        },
    )
    assert response.status_code == 200 and response.json()["success"] is True
    flat = await tenant.client.post("/", data=tenant.envelope("sendmessage", message="flat fields"))
    assert flat.json()["message"]["message"] == "flat fields"


async def test_typing_stops_when_the_typists_message_arrives(tenant: Tenant) -> None:
    convo = await tenant.visitor_says("hi")
    await tenant.ok("settyping", convoID=convo)
    await tenant.visitor_says("here it is", convoID=convo)
    assert not (await tenant.ok("poll", convoID=convo, operatorID=tenant.operator_id))["typing"]
    await tenant.ok("settyping", convoID=convo, operatorID=tenant.operator_id)
    await tenant.ok("sendmessage", convoID=convo, operatorID=tenant.operator_id, message="ok")
    assert not (await tenant.ok("poll", convoID=convo))["typing"]
